/* BPE over one pre-tokenised piece: start from one symbol per byte and
 * repeatedly merge the adjacent pair with the lowest merge rank (the
 * leftmost one when a pair occurs twice) until no pair has a rank.
 *
 * Two implementations of the same order: short pieces (nearly all words)
 * rescan a small rank array, which beats a heap on a handful of symbols;
 * long ones (a 100 KB run of spaces is one piece) use a linked list and a
 * min-heap keyed on (rank, position) so they stay O(n log n). */
#include <stdlib.h>

#include "tokenizer/tok_internal.h"

/* Pieces up to this many symbols take the rescanning path. */
#define SMALL_MAX 48

#define NO_RANK INT32_MAX

td_err tok_ids_reserve(td_tok_ids *v, size_t extra)
{
    if (v->cap - v->len >= extra)
        return TD_OK;
    if (extra > SIZE_MAX / sizeof *v->ids / 2 - v->len)
        return TD_ENOMEM;
    size_t cap = v->cap ? v->cap : 64;
    while (cap - v->len < extra)
        cap *= 2;
    int32_t *ids = realloc(v->ids, cap * sizeof *ids);
    if (!ids)
        return TD_ENOMEM;
    v->ids = ids;
    v->cap = cap;
    return TD_OK;
}

static td_err scratch_reserve(tok_bpe_scratch *sc, size_t n, bool heap)
{
    if (n > sc->cap) {
        size_t cap = sc->cap ? sc->cap : 64;
        while (cap < n)
            cap *= 2;
        int32_t *arr[4] = {sc->sym, sc->rank, sc->prev, sc->next};
        for (int k = 0; k < 4; k++) {
            int32_t *p = realloc(arr[k], cap * sizeof *p);
            if (!p) {
                sc->sym = arr[0], sc->rank = arr[1];
                sc->prev = arr[2], sc->next = arr[3];
                return TD_ENOMEM;
            }
            arr[k] = p;
        }
        sc->sym = arr[0], sc->rank = arr[1];
        sc->prev = arr[2], sc->next = arr[3];
        sc->cap = cap;
    }
    /* Each merge pushes at most two pairs onto the initial n - 1. */
    if (heap && 3 * n > sc->heap_cap) {
        uint64_t *h = realloc(sc->heap, 3 * n * sizeof *h);
        if (!h)
            return TD_ENOMEM;
        sc->heap = h;
        sc->heap_cap = 3 * n;
    }
    return TD_OK;
}

void tok_bpe_scratch_free(tok_bpe_scratch *sc)
{
    free(sc->sym);
    free(sc->rank);
    free(sc->prev);
    free(sc->next);
    free(sc->heap);
    *sc = (tok_bpe_scratch){0};
}

static inline const struct tok_pairent *merge_of(const td_tok *tok,
                                                 int32_t a, int32_t b)
{
    return tok_pairmap_get(&tok->merges, (uint64_t)(uint32_t)a << 32 |
                                             (uint32_t)b);
}

/* Rank of the pair (sym[i], sym[i+1]) into rank[i], merged id into mid[i]. */
static inline void rank_pair(const td_tok *tok, const int32_t *sym,
                             int32_t *rank, int32_t *mid, size_t i)
{
    const struct tok_pairent *e = merge_of(tok, sym[i], sym[i + 1]);
    rank[i] = e ? e->a : NO_RANK;
    mid[i] = e ? e->b : -1;
}

static size_t bpe_small(const td_tok *tok, tok_bpe_scratch *sc, size_t n)
{
    int32_t *sym = sc->sym, *rank = sc->rank, *mid = sc->prev;
    for (size_t i = 0; i + 1 < n; i++)
        rank_pair(tok, sym, rank, mid, i);
    while (n > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < n; i++)
            if (rank[i] < rank[best])
                best = i;
        if (rank[best] == NO_RANK)
            break;
        sym[best] = mid[best];
        for (size_t i = best + 1; i + 1 < n; i++) {
            sym[i] = sym[i + 1];
            rank[i] = rank[i + 1];
            mid[i] = mid[i + 1];
        }
        n--;
        if (best > 0)
            rank_pair(tok, sym, rank, mid, best - 1);
        if (best + 1 < n)
            rank_pair(tok, sym, rank, mid, best);
    }
    return n;
}

static void heap_push(uint64_t *h, size_t *len, uint64_t v)
{
    size_t i = (*len)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h[parent] <= v)
            break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *len)
{
    uint64_t top = h[0], v = h[--*len];
    size_t i = 0, n = *len;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && h[c + 1] < h[c])
            c++;
        if (v <= h[c])
            break;
        h[i] = h[c];
        i = c;
    }
    if (n)
        h[i] = v;
    return top;
}

static void push_pair(const td_tok *tok, tok_bpe_scratch *sc, size_t *hlen,
                      int32_t pos)
{
    int32_t nx = sc->next[pos];
    if (nx < 0)
        return;
    const struct tok_pairent *e = merge_of(tok, sc->sym[pos], sc->sym[nx]);
    if (e)
        heap_push(sc->heap, hlen, (uint64_t)(uint32_t)e->a << 32 |
                                      (uint32_t)pos);
}

/* Leaves the result as a list from symbol 0 (dead symbols are -1). */
static void bpe_heap(const td_tok *tok, tok_bpe_scratch *sc, size_t n)
{
    int32_t *sym = sc->sym, *prev = sc->prev, *next = sc->next;
    size_t hlen = 0;
    for (size_t i = 0; i < n; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++)
        push_pair(tok, sc, &hlen, (int32_t)i);
    while (hlen) {
        uint64_t top = heap_pop(sc->heap, &hlen);
        int32_t rank = (int32_t)(top >> 32), pos = (int32_t)(uint32_t)top;
        int32_t nx = next[pos];
        /* Stale entries: the left symbol was merged away or changed. */
        if (sym[pos] < 0 || nx < 0)
            continue;
        const struct tok_pairent *e = merge_of(tok, sym[pos], sym[nx]);
        if (!e || e->a != rank)
            continue;
        sym[pos] = e->b;
        sym[nx] = -1;
        next[pos] = next[nx];
        if (next[nx] >= 0)
            prev[next[nx]] = pos;
        if (prev[pos] >= 0)
            push_pair(tok, sc, &hlen, prev[pos]);
        push_pair(tok, sc, &hlen, pos);
    }
}

td_err tok_bpe(const td_tok *tok, const uint8_t *s, size_t n, int mode,
               tok_bpe_scratch *sc, td_tok_ids *out)
{
    if (n > INT32_MAX / 4)
        return TD_ETOOLONG;
    if (tok->ignore_merges) {
        int32_t id;
        if (tok_strmap_get(&tok->raw_vocab, s, n, &id)) {
            td_err err = tok_ids_reserve(out, 1);
            if (!err)
                out->ids[out->len++] = id;
            return err;
        }
    }
    if (mode == TOK_BPE_AUTO)
        mode = n <= SMALL_MAX ? TOK_BPE_SMALL : TOK_BPE_HEAP;
    td_err err = scratch_reserve(sc, n, mode == TOK_BPE_HEAP);
    if (err)
        return err;
    /* Bytes without a symbol are dropped, as HF's BPE does when there is
     * neither an unk token nor byte fallback. */
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (tok->byte_id[s[i]] >= 0)
            sc->sym[m++] = tok->byte_id[s[i]];
    if ((err = tok_ids_reserve(out, m)))
        return err;
    if (mode == TOK_BPE_SMALL) {
        m = bpe_small(tok, sc, m);
        for (size_t i = 0; i < m; i++)
            out->ids[out->len++] = sc->sym[i];
        return TD_OK;
    }
    if (m == 0)
        return TD_OK;
    bpe_heap(tok, sc, m);
    for (int32_t i = 0; i >= 0; i = sc->next[i])
        out->ids[out->len++] = sc->sym[i];
    return TD_OK;
}
