/* The vocabulary trie and the per-request matcher.
 *
 * Ordinary tokens (not added tokens) sit in a byte trie laid out in
 * preorder: node i has its byte, its depth (the length of the prefix it
 * ends), the index just past its subtree, and the token whose bytes end
 * there. A mask walks the nodes in order keeping one matcher state per
 * depth: a node's state is its parent's stepped by its byte, and a node the
 * grammar refuses skips its whole subtree. The cost is the number of trie
 * nodes whose prefix the grammar accepts, not the vocabulary size.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "constrain/cons_int.h"

enum { T_NONE, T_ORDINARY, T_SYM };  /* what an id is to a grammar */

static const char *const SYM_TEXT[3] = {"<｜end▁of▁sentence｜>", "｜DSML｜", "</think>"};

/* A byte trie in preorder. */
typedef struct {
    int32_t n;
    uint8_t *byte;            /* (n) */
    uint16_t *depth;          /* 1 for a first byte */
    int32_t *end;             /* index past the subtree */
    int32_t *tok;             /* id ending here, or -1 */
} trie;

struct td_cons_vocab {
    int32_t size;
    size_t words;
    uint8_t *kind;            /* (size) T_* */
    uint32_t *off;            /* (size + 1) bytes of id i: blob[off[i]..off[i+1]) */
    uint8_t *blob;
    int32_t sym_id[3];        /* ids of SYM_EOS, SYM_DSML, SYM_THINK_END, or -1 */
    trie all;                 /* every ordinary id */
    trie quoted;              /* those with a '"' byte: the ones that can end a string */
    int32_t *same;            /* (size) next id with the same bytes, or -1 */
    int32_t max_len;
    uint64_t *ordinary;       /* (words) every ordinary id */
    /* (words) ids a string body takes whole (cons_text_inside), for each
     * kind of string and each UTF-8 slot */
    uint64_t *inside[3][CONS_UTF8_SLOTS];
    uint8_t kmp[10][256];
};

struct td_cons_matcher {
    const td_cons_grammar *g;
    const td_cons_vocab *v;
    bool thinking;
    cons_state st;            /* the current state */
    cons_state tmp;           /* scratch for advance and the symbol checks */
    cons_state *path;         /* (max_len + 1) states along the trie walk */
};

/* ---- vocabulary -------------------------------------------------------------- */

static int cmp_ids(const void *a, const void *b, void *arg)
{
    const td_cons_vocab *sort_v = arg;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint32_t lx = sort_v->off[x + 1] - sort_v->off[x], ly = sort_v->off[y + 1] - sort_v->off[y];
    int c = memcmp(sort_v->blob + sort_v->off[x], sort_v->blob + sort_v->off[y],
                   lx < ly ? lx : ly);
    if (c)
        return c;
    return lx < ly ? -1 : lx > ly ? 1 : (x < y ? -1 : 1);
}

/* The preorder trie of ids[0..n) (sorted, distinct bytes). */
static int build(const td_cons_vocab *v, trie *t, const int32_t *ids, int32_t n)
{
    int32_t *open = malloc(((size_t)v->max_len + 1) * sizeof *open);  /* node at depth d + 1 */
    if (!open)
        return -1;
    int32_t nopen = 0, prev = -1;
    t->n = 0;
    for (int32_t k = 0; k < n; k++) {
        int32_t id = ids[k], l = 0;
        const uint8_t *s = v->blob + v->off[id];
        int32_t len = (int32_t)(v->off[id + 1] - v->off[id]);
        if (prev >= 0) {
            const uint8_t *ps = v->blob + v->off[prev];
            int32_t pn = (int32_t)(v->off[prev + 1] - v->off[prev]);
            while (l < len && l < pn && ps[l] == s[l])
                l++;
        }
        while (nopen > l)
            t->end[open[--nopen]] = t->n;
        for (int32_t d = l; d < len; d++) {
            int32_t i = t->n++;
            t->byte[i] = s[d];
            t->depth[i] = (uint16_t)(d + 1);
            t->tok[i] = -1;
            open[nopen++] = i;
        }
        t->tok[open[len - 1]] = id;
        prev = id;
    }
    while (nopen > 0)
        t->end[open[--nopen]] = t->n;
    free(open);
    return 0;
}

void td_cons_vocab_destroy(td_cons_vocab *v)
{
    if (!v)
        return;
    free(v->kind);
    free(v->off);
    free(v->blob);
    for (int k = 0; k < 2; k++) {
        trie *t = k ? &v->quoted : &v->all;
        free(t->byte);
        free(t->depth);
        free(t->end);
        free(t->tok);
    }
    for (int k = 0; k < 3; k++)
        for (int u = 0; u < CONS_UTF8_SLOTS; u++)
            free(v->inside[k][u]);
    free(v->same);
    free(v->ordinary);
    free(v);
}

td_err td_cons_vocab_create(td_cons_vocab **out, const td_tok *tok, char *err, size_t errlen)
{
    td_cons_vocab *v = calloc(1, sizeof *v);
    int32_t *ids = NULL;
    if (!v)
        return TD_ENOMEM;
    v->size = td_tok_vocab_size(tok);
    v->words = ((size_t)v->size + 63) / 64;
    for (int k = 0; k < 3; k++)
        if (td_tok_token_to_id(tok, SYM_TEXT[k], strlen(SYM_TEXT[k]), &v->sym_id[k]))
            v->sym_id[k] = -1;
    size_t total = 0;
    for (int32_t i = 0; i < v->size; i++) {
        const char *p;
        size_t n;
        if (!td_tok_id_to_piece(tok, i, &p, &n) && !td_tok_is_added(tok, i))
            total += n;
    }
    v->kind = calloc((size_t)v->size, 1);
    v->off = calloc((size_t)v->size + 1, sizeof *v->off);
    v->blob = malloc(total + 1);
    v->same = malloc((size_t)v->size * sizeof *v->same);
    v->ordinary = calloc(v->words, sizeof *v->ordinary);
    ids = malloc((size_t)v->size * sizeof *ids);
    bool ok = v->kind && v->off && v->blob && v->same && v->ordinary && ids;
    for (int k = 0; k < 3; k++)
        for (int u = 0; u < CONS_UTF8_SLOTS; u++)
            ok = ok && (v->inside[k][u] = calloc(v->words, sizeof(uint64_t)));
    for (int k = 0; k < 2; k++) {
        trie *t = k ? &v->quoted : &v->all;
        t->byte = malloc(total + 1);
        t->depth = malloc((total + 1) * sizeof *t->depth);
        t->end = malloc((total + 1) * sizeof *t->end);
        t->tok = malloc((total + 1) * sizeof *t->tok);
        ok = ok && t->byte && t->depth && t->end && t->tok;
    }
    if (!ok)
        goto nomem;
    cons_kmp_init(v->kmp);
    int32_t nord = 0;
    size_t at = 0;
    for (int32_t i = 0; i < v->size; i++) {
        const char *p;
        size_t n;
        v->off[i] = (uint32_t)at;
        v->same[i] = -1;
        if (td_tok_id_to_piece(tok, i, &p, &n))
            continue;
        if (td_tok_is_added(tok, i)) {
            for (int k = 0; k < 3; k++)
                if (v->sym_id[k] == i)
                    v->kind[i] = T_SYM;
            continue;
        }
        if (n == 0)
            continue;
        if (n > 0xffff) {
            td_cons_vocab_destroy(v);
            free(ids);
            return td_errf(err, errlen, TD_EFORMAT, "constrain: token %d is %zu bytes long",
                           i, n);
        }
        memcpy(v->blob + at, p, n);
        at += n;
        v->kind[i] = T_ORDINARY;
        v->ordinary[i / 64] |= 1ull << (i % 64);
        for (int k = 0; k < 3; k++)
            for (int u = 0; u < CONS_UTF8_SLOTS; u++)
                if (cons_text_inside(v->kmp, k, u, (const uint8_t *)p, n))
                    v->inside[k][u][i / 64] |= 1ull << (i % 64);
        ids[nord++] = i;
        if ((int32_t)n > v->max_len)
            v->max_len = (int32_t)n;
    }
    v->off[v->size] = (uint32_t)at;
    qsort_r(ids, (size_t)nord, sizeof *ids, cmp_ids, v);
    /* Ids with the same bytes as the one before them chain off it. */
    int32_t nuniq = 0, nq = 0;
    for (int32_t k = 0; k < nord; k++) {
        int32_t id = ids[k], first = nuniq ? ids[nuniq - 1] : -1;
        uint32_t n = v->off[id + 1] - v->off[id];
        if (first >= 0 && v->off[first + 1] - v->off[first] == n &&
            !memcmp(v->blob + v->off[first], v->blob + v->off[id], n)) {
            v->same[id] = v->same[first];
            v->same[first] = id;
            continue;
        }
        ids[nuniq++] = id;
    }
    if (build(v, &v->all, ids, nuniq))
        goto nomem;
    for (int32_t k = 0; k < nuniq; k++)
        if (memchr(v->blob + v->off[ids[k]], '"', v->off[ids[k] + 1] - v->off[ids[k]]))
            ids[nq++] = ids[k];
    if (build(v, &v->quoted, ids, nq))
        goto nomem;
    free(ids);
    *out = v;
    return TD_OK;
nomem:
    free(ids);
    td_cons_vocab_destroy(v);
    return td_errf(err, errlen, TD_ENOMEM, "constrain: out of memory building the vocabulary");
}

int32_t td_cons_vocab_size(const td_cons_vocab *v) { return v->size; }
size_t td_cons_mask_words(const td_cons_vocab *v) { return v->words; }

/* ---- matcher ------------------------------------------------------------------- */

td_err td_cons_matcher_create(td_cons_matcher **out, const td_cons_grammar *g,
                              const td_cons_vocab *v, const td_cons_matcher_opts *opts,
                              char *err, size_t errlen)
{
    bool thinking = opts && opts->thinking;
    int need[3] = {1, g->tools_mode, thinking};
    for (int k = 0; k < 3; k++)
        if (need[k] && v->sym_id[k] < 0)
            return td_errf(err, errlen, TD_ENOENT, "constrain: the vocabulary has no %s token",
                           SYM_TEXT[k]);
    td_cons_matcher *m = calloc(1, sizeof *m);
    if (!m)
        return TD_ENOMEM;
    m->path = malloc(((size_t)v->max_len + 1) * sizeof *m->path);
    if (!m->path) {
        free(m);
        return TD_ENOMEM;
    }
    m->g = g;
    m->v = v;
    m->thinking = thinking;
    cons_state_init(g, &m->st, thinking);
    *out = m;
    return TD_OK;
}

void td_cons_matcher_destroy(td_cons_matcher *m)
{
    if (!m)
        return;
    free(m->path);
    free(m);
}

void td_cons_matcher_reset(td_cons_matcher *m) { cons_state_init(m->g, &m->st, m->thinking); }

static bool finished(const cons_state *s)
{
    return s->depth == 1 && s->f[0].c == RT_FIN;
}

/* Sets the ids of t the state takes: a node's state is its parent's
 * stepped by its byte; a refused node skips its subtree. */
static void walk(td_cons_matcher *m, const trie *t, uint64_t *mask)
{
    const td_cons_vocab *v = m->v;
    cons_state *path = m->path;
    cons_state_copy(&path[0], &m->st);
    for (int32_t i = 0; i < t->n;) {
        cons_state *p = &path[t->depth[i]];
        cons_state_copy(p, p - 1);
        if (!cons_step(m->g, p, t->byte[i])) {
            i = t->end[i];
            continue;
        }
        for (int32_t id = t->tok[i]; id >= 0; id = v->same[id])
            mask[id / 64] |= 1ull << (id % 64);
        i++;
    }
}

void td_cons_mask(td_cons_matcher *m, uint64_t *mask)
{
    const td_cons_vocab *v = m->v;
    const td_cons_grammar *g = m->g;
    memset(mask, 0, v->words * sizeof *mask);
    if (finished(&m->st))
        return;
    for (int k = 0; k < 3; k++) {
        int32_t id = v->sym_id[k];
        if (id < 0)
            continue;
        cons_state_copy(&m->tmp, &m->st);
        if (cons_step(g, &m->tmp, SYM_EOS + k))
            mask[id / 64] |= 1ull << (id % 64);
    }
    if (m->st.depth == 1 && m->st.f[0].c == RT_THINK) {
        for (size_t w = 0; w < v->words; w++)
            mask[w] |= v->ordinary[w];  /* reasoning: any ordinary token */
        return;
    }
    /* Inside a string every id without a '"' is decided by the string
     * alone (precomputed); only the rest need the walk. A raw value's `a`
     * (a "</" seen) matters only to the ｜DSML｜ token. */
    const cons_frame *top = &m->st.f[m->st.depth - 1];
    const cons_node *tn = &g->nodes[top->node];
    const trie *t = &v->all;
    int u = cons_utf8_slot(top->b);
    if (tn->kind == K_STRING && top->c == S_BODY && u >= 0) {
        for (size_t w = 0; w < v->words; w++)
            mask[w] |= v->inside[tn->dsml][u][w];
        t = &v->quoted;
    } else if (tn->kind == K_RAWSTR && u >= 0) {
        for (size_t w = 0; w < v->words; w++)
            mask[w] |= v->inside[2][u][w];  /* ordinary ids never end a raw value */
        return;
    }
    walk(m, t, mask);
}

void td_cons_mask_logits(const uint64_t *mask, const td_cons_vocab *v, float *logits, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        if (i >= v->size || !((mask[i / 64] >> (i % 64)) & 1))
            logits[i] = -INFINITY;
}

td_err td_cons_advance(td_cons_matcher *m, int32_t token)
{
    const td_cons_vocab *v = m->v;
    if (token < 0 || token >= v->size)
        return TD_ERANGE;
    cons_state_copy(&m->tmp, &m->st);
    if (v->kind[token] == T_SYM) {
        int k = 0;
        while (v->sym_id[k] != token)
            k++;
        if (!cons_step(m->g, &m->tmp, SYM_EOS + k))
            return TD_EINVAL;
    } else if (v->kind[token] == T_ORDINARY) {
        if (m->st.depth != 1 || m->st.f[0].c != RT_THINK) {
            for (uint32_t i = v->off[token]; i < v->off[token + 1]; i++)
                if (!cons_step(m->g, &m->tmp, v->blob[i]))
                    return TD_EINVAL;
        }
    } else {
        return TD_EINVAL;
    }
    cons_state_copy(&m->st, &m->tmp);
    return TD_OK;
}

bool td_cons_done(const td_cons_matcher *m)
{
    if (finished(&m->st))
        return true;
    cons_state s;
    cons_state_copy(&s, &m->st);
    return cons_step(m->g, &s, SYM_EOS);
}
