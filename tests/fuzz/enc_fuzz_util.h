/* Shared by the API fuzz targets (anthropic_fuzz.c, responses_fuzz.c): the
 * checks on a decoded conversation and on an event encoder's output, with
 * the encoder driven through its td_gen_enc_ops as the server drives it.
 * Header-only, file-static: each target includes it once. Any violation
 * aborts. */
#ifndef TD_ENC_FUZZ_UTIL_H
#define TD_ENC_FUZZ_UTIL_H

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router/chat_encode.h"
#include "router/dsml.h"
#include "router/gen.h"

/* A decoded conversation must render (running out of memory aside). */
static void check_render(const td_conv *conv)
{
    td_tok_bytes text = {0};
    char err[256];
    td_err te = td_chat_render_text(conv, &text, err, sizeof err);
    if (te == TD_ENOMEM)
        abort();
    td_tok_bytes_free(&text);
}

static bool utf8_ok(const uint8_t *s, size_t n)
{
    json_t *v = json_stringn((const char *)s, n);  /* jansson validates UTF-8 */
    json_decref(v);
    return v != NULL;
}

/* Every event is `event: NAME` with a JSON data line of that type; with
 * numbered, sequence_number counts 0, 1, ... */
static void check_sse(const char *s, size_t n, bool numbered)
{
    const char *p = s, *end = s + n;
    json_int_t seq = 0;
    while (p < end) {
        const char *stop = memmem(p, (size_t)(end - p), "\n\n", 2);
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!stop || !nl || strncmp(p, "event: ", 7) || strncmp(nl, "\ndata: ", 7))
            abort();
        json_t *d = json_loadb(nl + 7, (size_t)(stop - nl - 7), JSON_ALLOW_NUL, NULL);
        const char *type = json_string_value(json_object_get(d, "type"));
        if (!type || strlen(type) != (size_t)(nl - p - 7) || strncmp(type, p + 7, strlen(type)))
            abort();
        if (numbered && json_integer_value(json_object_get(d, "sequence_number")) != seq++)
            abort();
        json_decref(d);
        p = stop + 2;
    }
}

static void forward(void *arg, const td_dsml_event *ev)
{
    td_gen_enc *enc = arg;
    enc->ops->event(enc, ev);
}

/* Runs data as model output through the DSML parser into enc (initialised;
 * finished here), in pieces of 7 bytes, and ends the answer with why. A
 * stream must pass check_sse; a body must be a JSON object whose field
 * list_key is an array. */
static void fuzz_encode(td_gen_enc *enc, const uint8_t *data, size_t size, bool thinking,
                        td_gen_end why, const char *list_key, bool numbered)
{
    td_dsml *p;
    td_dsml_opts dopts = {.thinking = thinking, .tools = true};
    if (td_dsml_create(&p, &dopts, forward, enc)) {
        enc->ops->fini(enc);
        return;
    }
    enc->ops->start(enc);
    for (size_t i = 0; i < size; i += 7)
        td_dsml_feed(p, (const char *)data + i, size - i < 7 ? size - i : 7);
    td_dsml_finish(p, NULL);
    enc->ops->finish(enc, why, "s", size);
    td_dsml_destroy(p);
    if (!enc->oom) {
        if (enc->stream) {
            check_sse(enc->out.data ? enc->out.data : "", enc->out.len, numbered);
        } else {
            json_t *m = json_loadb(enc->out.data, enc->out.len, JSON_ALLOW_NUL, NULL);
            if (!json_is_array(json_object_get(m, list_key)))
                abort();
            json_decref(m);
        }
    }
    enc->ops->fini(enc);
}

#endif
