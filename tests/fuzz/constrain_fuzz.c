/* libFuzzer target for the grammar compilers (constrain/cons_schema.c,
 * cons_grammar.c).
 *
 * Byte 0 picks the input kind (bit 0: a tools array instead of a JSON
 * schema; bit 2: one call only) and seeds a walk; the rest is the schema
 * or tools JSON. A refusal must leave a message. A grammar that compiles
 * is driven through the tiny model's vocabulary by a random walk: the mask
 * may be empty only where the output is done, advance must take what the
 * mask allows and refuse (TD_EINVAL) what it does not.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "constrain/constrain.h"

static td_cons_vocab *vocab;
static int32_t nvocab;

/* The tiny model's vocabulary: bytes, merges, EOS and ｜DSML｜. */
static void make_vocab(void)
{
    char err[256];
    td_tok *tok;
    const char *path = TD_SOURCE_ROOT "/models/tiny-v4/tokenizer.json";
    if (td_tok_load(&tok, path, err, sizeof err) ||
        td_cons_vocab_create(&vocab, tok, err, sizeof err))
        abort();
    td_tok_destroy(tok);
    nvocab = td_cons_vocab_size(vocab);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (!vocab)
        make_vocab();
    char err[256];
    td_cons_grammar *g = NULL;
    const char *text = (const char *)data + 1;
    td_err e;
    if (data[0] & 1) {
        td_cons_tools_opts o = {.force_name = NULL, .single = (data[0] >> 2) & 1};
        e = td_cons_grammar_tools(&g, text, size - 1, &o, err, sizeof err);
    } else {
        e = td_cons_grammar_json(&g, text, size - 1, err, sizeof err);
    }
    if (e) {
        if (!memchr(err, '\0', sizeof err))
            abort();
        return 0;
    }
    td_cons_matcher *m;
    if (td_cons_matcher_create(&m, g, vocab, NULL, err, sizeof err))
        abort();
    uint64_t *mask = calloc(td_cons_mask_words(vocab), sizeof *mask);
    int32_t *ok = malloc((size_t)nvocab * sizeof *ok);
    uint32_t seed = data[0] * 2654435761u + (uint32_t)size;
    for (int step = 0; step < 64; step++) {
        td_cons_mask(m, mask);
        int32_t n = 0;
        for (int32_t i = 0; i < nvocab; i++)
            if ((mask[i / 64] >> (i % 64)) & 1)
                ok[n++] = i;
        if (n == 0) {
            if (!td_cons_done(m))
                abort();  /* a dead end */
            break;
        }
        seed = seed * 1103515245u + 12345u;
        int32_t bad = (int32_t)((seed >> 8) % (uint32_t)nvocab);
        if (!((mask[bad / 64] >> (bad % 64)) & 1) && td_cons_advance(m, bad) != TD_EINVAL)
            abort();
        seed = seed * 1103515245u + 12345u;
        if (td_cons_advance(m, ok[(seed >> 8) % (uint32_t)n]))
            abort();
    }
    free(ok);
    free(mask);
    td_cons_matcher_destroy(m);
    td_cons_grammar_destroy(g);
    return 0;
}
