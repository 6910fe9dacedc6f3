/* libFuzzer target for chat requests → V4 prompt (router/conv.c,
 * router/chat_encode.c).
 *
 * The input is a JSON document: an OpenAI chat-completions body, or a bare
 * message array in the official encoder's shape. It is rendered as text and
 * as token ids (the tiny model's tokenizer); with no marker string in the
 * input, the ids must equal encoding the text with markers recognised.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router/chat_encode.h"
#include "router/conv.h"

static td_tok *tok;
static td_chat_markers mk;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    if (!tok) {
        if (td_tok_load(&tok, TD_SOURCE_ROOT "/models/tiny-v4/tokenizer.json", err, sizeof err) ||
            td_chat_markers_load(tok, &mk, err, sizeof err))
            abort();
    }
    json_t *root = json_loadb((const char *)data, size, 0, NULL);
    if (!root)
        return 0;
    td_conv *c = NULL;
    td_err e;
    if (json_is_array(root)) {
        e = td_conv_create(&c);
        if (!e)
            e = td_conv_add_messages(c, root, TD_CONV_NATIVE, err, sizeof err);
    } else {
        e = td_conv_from_request(&c, root, NULL, err, sizeof err);
    }
    json_decref(root);
    if (!e) {
        td_conv_set_think(c, (td_conv_think)(size % 3));
        td_tok_bytes text = {0};
        td_tok_ids ids = {0}, ref = {0};
        if (td_chat_render_text(c, &text, err, sizeof err) == TD_OK &&
            td_chat_render_ids(c, tok, &mk, &ids, err, sizeof err) == TD_OK &&
            !memmem(data, size, "\xef\xbd\x9c", 3) && !memmem(data, size, "think>", 6) &&
            !memmem(data, size, "\\u", 2) &&
            td_tok_encode(tok, text.data, text.len, 0, &ref, err, sizeof err) == TD_OK &&
            (ids.len != ref.len || memcmp(ids.ids, ref.ids, ids.len * sizeof *ids.ids)))
            abort();
        td_tok_bytes_free(&text);
        td_tok_ids_free(&ids);
        td_tok_ids_free(&ref);
    }
    td_conv_destroy(c);
    return 0;
}
