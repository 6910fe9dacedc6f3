/* Encoding: added tokens first, then pre-tokenisation and BPE of what lies
 * between them.
 *
 * Added tokens are found with a byte trie, leftmost then longest, in two
 * passes as HF's AddedVocabulary does: tokens with normalized=false over
 * the raw text, then tokens with normalized=true in the stretches left
 * (with V4's empty normaliser the passes differ only in which token wins
 * when two overlap).
 *
 * Each call keeps a cache of piece -> ids. Prose repeats its words, so most
 * pieces are looked up instead of merged; the cache belongs to the call,
 * which keeps a shared td_tok read-only. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

/* Only short pieces are cached; long ones are rare and seldom repeat. */
#define CACHE_MAX_PIECE 32
#define CACHE_MAX_ENTRIES (1 << 16)

static td_err trie_new_node(tok_trie *t, size_t *node)
{
    if (t->nnodes == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 256;
        int32_t *term = realloc(t->term, cap * sizeof *term);
        if (!term)
            return TD_ENOMEM;
        t->term = term;
        t->cap = cap;
    }
    *node = t->nnodes++;
    t->term[*node] = -1;
    return TD_OK;
}

td_err tok_trie_add(tok_trie *t, const uint8_t *s, size_t n, int32_t id)
{
    if (n == 0)
        return TD_OK; /* HF ignores empty added tokens */
    size_t node = 0;
    td_err err;
    if (t->nnodes == 0 && (err = trie_new_node(t, &node)))
        return err;
    for (size_t i = 0; i < n; i++) {
        uint64_t key = (uint64_t)node << 8 | s[i];
        const struct tok_pairent *e = tok_pairmap_get(&t->edges, key);
        if (e) {
            node = (size_t)e->a;
            continue;
        }
        size_t child;
        if ((err = trie_new_node(t, &child)))
            return err;
        if (tok_pairmap_put(&t->edges, key, (int32_t)child, 0) < 0)
            return TD_ENOMEM;
        node = child;
    }
    t->term[node] = id; /* a repeated string: the later entry wins */
    t->first[s[0]] = true;
    return TD_OK;
}

void tok_trie_free(tok_trie *t)
{
    tok_pairmap_free(&t->edges);
    free(t->term);
    memset(t, 0, sizeof *t);
}

/* Length of the longest token at the start of s[0..n), 0 if none. */
static size_t trie_longest(const tok_trie *t, const uint8_t *s, size_t n,
                           int32_t *id)
{
    size_t node = 0, best = 0;
    for (size_t i = 0; i < n; i++) {
        const struct tok_pairent *e =
            tok_pairmap_get(&t->edges, (uint64_t)node << 8 | s[i]);
        if (!e)
            break;
        node = (size_t)e->a;
        if (t->term[node] >= 0) {
            best = i + 1;
            *id = t->term[node];
        }
    }
    return best;
}

typedef struct {
    const td_tok *tok;
    td_tok_ids *out;
    tok_bpe_scratch scratch;
    tok_strmap cache;        /* piece -> offset in cache_ids */
    td_tok_ids cache_ids;    /* per entry: count, then the ids */
    td_err err;
} encoder;

static int fail(encoder *e, td_err err)
{
    e->err = err;
    return 1;
}

static void cache_store(encoder *e, const uint8_t *s, size_t n,
                        const int32_t *ids, size_t count)
{
    if (e->cache.n >= CACHE_MAX_ENTRIES || e->cache_ids.len > INT32_MAX / 2) {
        tok_strmap_clear(&e->cache);
        e->cache_ids.len = 0;
    }
    /* A failed store only costs speed. */
    if (tok_ids_reserve(&e->cache_ids, count + 1))
        return;
    int32_t at = (int32_t)e->cache_ids.len;
    e->cache_ids.ids[e->cache_ids.len++] = (int32_t)count;
    memcpy(e->cache_ids.ids + e->cache_ids.len, ids, count * sizeof *ids);
    if (tok_strmap_put(&e->cache, s, n, at, NULL) < 0) {
        e->cache_ids.len = (size_t)at;
        return;
    }
    e->cache_ids.len += count;
}

static int on_piece(void *ctx, const uint8_t *s, size_t n)
{
    encoder *e = ctx;
    td_tok_ids *out = e->out;
    int32_t at;
    if (n <= CACHE_MAX_PIECE && tok_strmap_get(&e->cache, s, n, &at)) {
        size_t count = (size_t)e->cache_ids.ids[at];
        td_err err = tok_ids_reserve(out, count);
        if (err)
            return fail(e, err);
        memcpy(out->ids + out->len, e->cache_ids.ids + at + 1,
               count * sizeof *out->ids);
        out->len += count;
        return 0;
    }
    size_t before = out->len;
    td_err err = tok_bpe(e->tok, s, n, TOK_BPE_AUTO, &e->scratch, out);
    if (err)
        return fail(e, err);
    if (n <= CACHE_MAX_PIECE)
        cache_store(e, s, n, out->ids + before, out->len - before);
    return 0;
}

/* pass 0 and 1: the two added-token tries; pass 2: ordinary text. */
static int encode_pass(encoder *e, const uint8_t *s, size_t n, int pass)
{
    if (pass == 2)
        return tok_pretokenize(e->tok, s, n, on_piece, e);
    const tok_trie *t = &e->tok->trie[pass];
    if (t->nnodes == 0)
        return encode_pass(e, s, n, pass + 1);
    size_t gap = 0;
    int rc;
    for (size_t p = 0; p < n; p++) {
        if (!t->first[s[p]])
            continue;
        int32_t id;
        size_t m = trie_longest(t, s + p, n - p, &id);
        if (!m)
            continue;
        if (gap < p && (rc = encode_pass(e, s + gap, p - gap, pass + 1)))
            return rc;
        td_err err = tok_ids_reserve(e->out, 1);
        if (err)
            return fail(e, err);
        e->out->ids[e->out->len++] = id;
        gap = p + m;
        p = gap - 1;
    }
    if (gap < n)
        return encode_pass(e, s + gap, n - gap, pass + 1);
    return 0;
}

td_err td_tok_encode(const td_tok *tok, const char *text, size_t len,
                     unsigned flags, td_tok_ids *out, char *err, size_t errlen)
{
    if (!tok || !out || (!text && len))
        return td_errf(err, errlen, TD_EINVAL,
                       "td_tok_encode: NULL tokenizer, text or output");
    size_t before = out->len;
    encoder e = {.tok = tok, .out = out};
    encode_pass(&e, (const uint8_t *)text, len,
                (flags & TD_TOK_PLAIN_TEXT) ? 2 : 0);
    tok_bpe_scratch_free(&e.scratch);
    tok_strmap_free(&e.cache);
    td_tok_ids_free(&e.cache_ids);
    if (e.err) {
        out->len = before;
        return td_errf(err, errlen, e.err, "tokenizer: encoding %zu bytes: %s",
                       len, td_strerror(e.err));
    }
    return TD_OK;
}

void td_tok_ids_free(td_tok_ids *v)
{
    if (!v)
        return;
    free(v->ids);
    *v = (td_tok_ids){0};
}
