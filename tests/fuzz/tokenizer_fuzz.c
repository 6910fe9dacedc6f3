/* libFuzzer target for the tokenizer: encode arbitrary bytes and check that
 * decoding gives them back (byte-level BPE covers every byte, so this holds
 * for any input, valid UTF-8 or not), that the plain-text mode does too,
 * that the streaming decoder reproduces valid UTF-8 input exactly, and that
 * both BPE paths agree on the input taken as one piece (when short).
 *
 * The tokenizer is the tiny model's by default; set TD_TOK_FUZZ_TOKENIZER to
 * another tokenizer.json (e.g. the official V4 one) to fuzz with it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

#ifndef TD_SOURCE_ROOT
#define TD_SOURCE_ROOT "."
#endif

static td_tok *tok; /* loaded once per fuzzing process */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *path = getenv("TD_TOK_FUZZ_TOKENIZER");
    if (!path)
        path = TD_SOURCE_ROOT "/models/tiny-v4/tokenizer.json";
    char err[512];
    if (td_tok_load(&tok, path, err, sizeof err)) {
        fprintf(stderr, "tokenizer_fuzz: %s\n", err);
        abort();
    }
    return 0;
}

static bool valid_utf8(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        int32_t cp;
        size_t len = tok_utf8_next(s + i, n - i, &cp);
        if (cp < 0)
            return false;
        i += len;
    }
    return true;
}

static void check_round_trip(const uint8_t *data, size_t size, unsigned flags)
{
    td_tok_ids ids = {0};
    td_tok_bytes back = {0};
    if (td_tok_encode(tok, (const char *)data, size, flags, &ids, NULL, 0) ||
        td_tok_decode(tok, ids.ids, ids.len, 0, &back, NULL, 0))
        abort();
    if (back.len != size || (size && memcmp(back.data, data, size)))
        abort();

    if (!flags && valid_utf8(data, size)) {
        td_tok_stream s;
        td_tok_stream_init(&s, tok, 0);
        size_t at = 0;
        for (size_t i = 0; i < ids.len; i++) {
            const char *text;
            size_t len;
            if (td_tok_stream_push(&s, ids.ids[i], &text, &len, NULL, 0) ||
                at + len > size || memcmp(data + at, text, len))
                abort();
            at += len;
        }
        const char *text;
        size_t len;
        td_tok_stream_flush(&s, &text, &len);
        if (len || at != size)
            abort();
        td_tok_stream_free(&s);
    }
    td_tok_ids_free(&ids);
    td_tok_bytes_free(&back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!tok)
        LLVMFuzzerInitialize(NULL, NULL);
    check_round_trip(data, size, 0);
    check_round_trip(data, size, TD_TOK_PLAIN_TEXT);

    /* The rescanning path is quadratic by design: keep its inputs short. */
    if (size > 512)
        return 0;
    tok_bpe_scratch sc = {0};
    td_tok_ids a = {0}, b = {0};
    if (tok_bpe(tok, data, size, TOK_BPE_SMALL, &sc, &a) ||
        tok_bpe(tok, data, size, TOK_BPE_HEAP, &sc, &b) || a.len != b.len ||
        (a.len && memcmp(a.ids, b.ids, a.len * sizeof *a.ids)))
        abort();
    td_tok_ids_free(&a);
    td_tok_ids_free(&b);
    tok_bpe_scratch_free(&sc);
    return 0;
}
