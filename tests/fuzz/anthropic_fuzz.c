/* libFuzzer target for the Anthropic Messages API (router/api_anthropic.c,
 * api_anthropic_enc.c).
 *
 * The input is a Messages request body. It is decoded (as /v1/messages and
 * as count_tokens); a decoded conversation must render. Then the same
 * bytes are taken as model output and run through the DSML parser into the
 * event encoder, both ways: the message must be valid JSON and every SSE
 * event must be `event: NAME` with a JSON data line of that type (for
 * valid UTF-8 output, which the server's token stream guarantees). Any
 * violation aborts.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router/api_anthropic.h"
#include "router/chat_encode.h"

static void decode(const uint8_t *data, size_t size, unsigned flags)
{
    td_anth_req r;
    td_anth_err e;
    if (td_anth_decode((const char *)data, size, flags, &r, &e)) {
        if (r.conv || e.status < 400 || !e.message[0])
            abort();
        return;
    }
    td_tok_bytes text = {0};
    char err[256];
    td_err te = td_chat_render_text(r.conv, &text, err, sizeof err);
    if (te == TD_ENOMEM)
        abort();
    td_tok_bytes_free(&text);
    td_anth_req_free(&r);
}

static bool utf8_ok(const uint8_t *s, size_t n)
{
    json_t *v = json_stringn((const char *)s, n);  /* jansson validates UTF-8 */
    json_decref(v);
    return v != NULL;
}

static void forward(void *arg, const td_dsml_event *ev) { td_anth_enc_event(arg, ev); }

static void check_sse(const char *s, size_t n)
{
    const char *p = s, *end = s + n;
    while (p < end) {
        const char *stop = memmem(p, (size_t)(end - p), "\n\n", 2);
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!stop || !nl || strncmp(p, "event: ", 7) || strncmp(nl, "\ndata: ", 7))
            abort();
        json_t *d = json_loadb(nl + 7, (size_t)(stop - nl - 7), JSON_ALLOW_NUL, NULL);
        const char *type = json_string_value(json_object_get(d, "type"));
        if (!type || strlen(type) != (size_t)(nl - p - 7) || strncmp(type, p + 7, strlen(type)))
            abort();
        json_decref(d);
        p = stop + 2;
    }
}

static void encode(const uint8_t *data, size_t size, bool stream)
{
    td_anth_enc enc;
    td_anth_enc_opts o = {.stream = stream, .parallel = size & 1, .msg_id = "msg_f",
                          .model = "m", .tool_id_prefix = "toolu_f", .input_tokens = size};
    if (td_anth_enc_init(&enc, &o))
        return;
    td_dsml *p;
    td_dsml_opts dopts = {.thinking = size & 2, .tools = true};
    if (td_dsml_create(&p, &dopts, forward, &enc)) {
        td_anth_enc_free(&enc);
        return;
    }
    td_anth_enc_start(&enc);
    for (size_t i = 0; i < size; i += 7)
        td_dsml_feed(p, (const char *)data + i, size - i < 7 ? size - i : 7);
    td_dsml_finish(p, NULL);
    td_anth_enc_finish(&enc, (td_anth_stop)(size % 3), "s", size);
    td_dsml_destroy(p);
    if (!enc.base.oom) {
        if (stream) {
            check_sse(enc.base.out.data ? enc.base.out.data : "", enc.base.out.len);
        } else {
            json_t *m = json_loadb(enc.base.out.data, enc.base.out.len, JSON_ALLOW_NUL, NULL);
            if (!json_is_array(json_object_get(m, "content")))
                abort();
            json_decref(m);
        }
    }
    td_anth_enc_free(&enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    decode(data, size, 0);
    decode(data, size, TD_ANTH_COUNT_ONLY);
    if (utf8_ok(data, size)) {
        encode(data, size, false);
        encode(data, size, true);
    }
    return 0;
}
