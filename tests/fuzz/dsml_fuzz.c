/* libFuzzer target for the model-output parser (router/dsml.c).
 *
 * Byte 0 picks the options (bit 0 thinking, bit 1 tools) and seeds the
 * piece sizes; the rest is the output text, fed in pieces of 1..16 bytes.
 * Checks: the split feed reports the same text, calls and order as the
 * whole feed (text pieces may be cut differently), and
 * when the text is valid UTF-8 every completed call's arguments are a valid
 * JSON object. Any violation aborts.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router/conv.h"
#include "router/dsml.h"

typedef struct {
    td_tok_bytes log;            /* every event, serialised */
    td_tok_bytes args;           /* the current call's arguments */
    bool check_json;
    char last[2];                /* tag of the last event */
} sink;

static void on_event(void *arg, const td_dsml_event *ev)
{
    sink *s = arg;
    /* Pieces of text may be cut differently; what they add up to may not
     * differ. So a tag starts only where the kind or call changes. */
    char tag[2] = {(char)('A' + ev->kind), (char)('0' + (ev->index & 15))};
    bool text = ev->kind == TD_DSML_REASONING || ev->kind == TD_DSML_CONTENT ||
                ev->kind == TD_DSML_CALL_ARGS;
    if (!text || s->last[0] != tag[0] || s->last[1] != tag[1]) {
        td_conv_bytes_append(&s->log, "\x01", 1);
        td_conv_bytes_append(&s->log, tag, 2);
    }
    memcpy(s->last, tag, 2);
    td_conv_bytes_append(&s->log, ev->text, ev->len);
    if (ev->kind == TD_DSML_CALL_BEGIN)
        s->args.len = 0;
    if (ev->kind == TD_DSML_CALL_ARGS)
        td_conv_bytes_append(&s->args, ev->text, ev->len);
    if (ev->kind == TD_DSML_CALL_END && s->check_json) {
        json_t *v = json_loadb(s->args.data ? s->args.data : "", s->args.len, JSON_ALLOW_NUL, NULL);
        if (!json_is_object(v))
            abort();
        json_decref(v);
    }
}

static bool valid_utf8(const uint8_t *s, size_t n)
{
    json_t *v = json_stringn((const char *)s, n);  /* jansson checks UTF-8 */
    bool ok = v != NULL || n == 0;
    json_decref(v);
    return ok;
}

static void parse(const uint8_t *d, size_t n, td_dsml_opts *o, uint32_t seed, sink *s)
{
    td_dsml *p;
    if (td_dsml_create(&p, o, on_event, s))
        return;
    for (size_t at = 0; at < n;) {
        seed = seed * 1103515245u + 12345u;
        size_t k = seed ? 1 + (seed >> 16) % 16 : n;
        if (k > n - at)
            k = n - at;
        td_dsml_feed(p, (const char *)d + at, k);
        at += k;
    }
    td_dsml_finish(p, NULL);
    td_dsml_destroy(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    td_dsml_opts o = {.thinking = data[0] & 1, .tools = (data[0] >> 1) & 1};
    bool utf8 = valid_utf8(data + 1, size - 1);
    sink whole = {.check_json = utf8}, split = {.check_json = utf8};
    parse(data + 1, size - 1, &o, 0, &whole);
    parse(data + 1, size - 1, &o, data[0] | 1u, &split);
    if (whole.log.len != split.log.len ||
        (whole.log.len && memcmp(whole.log.data, split.log.data, whole.log.len)))
        abort();
    td_tok_bytes_free(&whole.log);
    td_tok_bytes_free(&whole.args);
    td_tok_bytes_free(&split.log);
    td_tok_bytes_free(&split.args);
    return 0;
}
