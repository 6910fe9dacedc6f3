/* Per-sequence decode state: allocation, reset. The layout of what it holds
 * is docs/kv-layout.md; serialisation is in state.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/internal.h"

static int64_t max_entries(const td_v4_config *c, int ratio, int64_t cap)
{
    if (ratio == 0)
        return 0;
    if (td_v4_is_csa(ratio))
        return cap / 4 < c->index_topk ? cap / 4 : c->index_topk;
    return cap / ratio;
}

void td_v4_seq_reset(td_v4_seq *s)
{
    const td_v4_model *m = s->m;
    s->pos = 0;
    s->mtp_pos = 0;
    for (int l = 0; l < s->nlayers; l++) {
        td_v4_layer_state *st = &s->layer[l];
        /* Compressor tails start as kv 0, score -inf: the official code
         * never resets them between sequences, a fresh process does. */
        int R = st->ratio;
        if (R > 0) {
            int width = td_v4_is_csa(R) ? 2 * m->c.head_dim : m->c.head_dim;
            size_t n = (size_t)(td_v4_is_csa(R) ? 2 * R : R) * width;
            memset(st->ckv, 0, n * sizeof(float));
            for (size_t i = 0; i < n; i++)
                st->csc[i] = -INFINITY;
        }
        if (td_v4_is_csa(R)) {
            size_t n = (size_t)8 * 2 * m->c.index_head_dim;
            memset(st->ikv, 0, n * sizeof(float));
            for (size_t i = 0; i < n; i++)
                st->isc[i] = -INFINITY;
        }
    }
}

td_err td_v4_seq_create(td_v4_seq **out, const td_v4_model *m, int64_t capacity,
                        char *err, size_t errlen)
{
    *out = NULL;
    const td_v4_config *c = &m->c;
    if (capacity <= 0 || capacity > c->max_position)
        return td_errf(err, errlen, TD_ERANGE,
                       "sequence capacity %lld outside 1..%d (max_position_embeddings)",
                       (long long)capacity, c->max_position);
    td_v4_seq *s = calloc(1, sizeof *s);
    if (!s)
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    s->m = m;
    s->cap = capacity;
    s->nlayers = c->n_layers + c->n_mtp_layers;
    s->layer = calloc((size_t)s->nlayers, sizeof *s->layer);
    if (!s->layer)
        goto nomem;
    int64_t most = 0;
    for (int l = 0; l < s->nlayers; l++) {
        td_v4_layer_state *st = &s->layer[l];
        int R = c->compress_ratios[l];
        st->ratio = R;
        st->win = calloc((size_t)c->window, (size_t)m->rec);
        if (!st->win)
            goto nomem;
        if (R > 0) {
            int width = td_v4_is_csa(R) ? 2 * c->head_dim : c->head_dim;
            size_t slots = (size_t)(td_v4_is_csa(R) ? 2 * R : R);
            st->comp = calloc((size_t)(capacity / R) + 1, (size_t)m->rec);
            st->ckv = malloc(slots * width * sizeof(float));
            st->csc = malloc(slots * width * sizeof(float));
            if (!st->comp || !st->ckv || !st->csc)
                goto nomem;
        }
        if (td_v4_is_csa(R)) {
            size_t n = (size_t)8 * 2 * c->index_head_dim;
            st->ikey = calloc((size_t)(capacity / 4) + 1, (size_t)m->ikrec);
            st->ikv = malloc(n * sizeof(float));
            st->isc = malloc(n * sizeof(float));
            if (!st->ikey || !st->ikv || !st->isc)
                goto nomem;
        }
        int64_t e = max_entries(c, R, capacity);
        if (e > most)
            most = e;
    }
    size_t rows = (size_t)(c->window + most);
    s->att_kv = malloc(rows * c->head_dim * sizeof(float));
    s->att_s = malloc(rows * (size_t)c->n_heads * sizeof(float));
    s->att_idx = malloc(((size_t)c->index_topk + 1) * sizeof(int32_t));
    s->idx_score = malloc(((size_t)(capacity / 4) + 1) * sizeof(float));
    s->idx_order = malloc(((size_t)c->index_topk + 1) * sizeof(int32_t));
    s->idx_q8 = malloc((size_t)c->index_n_heads * c->index_head_dim);
    s->idx_qe = malloc(sizeof(int) * (size_t)c->index_n_heads * (c->index_head_dim / 32));
    if (!s->att_kv || !s->att_s || !s->att_idx || !s->idx_score || !s->idx_order ||
        !s->idx_q8 || !s->idx_qe)
        goto nomem;
    td_v4_seq_reset(s);
    *out = s;
    return TD_OK;
nomem:
    td_v4_seq_destroy(s);
    return td_errf(err, errlen, TD_ENOMEM,
                   "out of memory for a sequence of %lld tokens", (long long)capacity);
}

void td_v4_seq_destroy(td_v4_seq *s)
{
    if (!s)
        return;
    for (int l = 0; s->layer && l < s->nlayers; l++) {
        td_v4_layer_state *st = &s->layer[l];
        free(st->win);
        free(st->comp);
        free(st->ikey);
        free(st->ckv);
        free(st->csc);
        free(st->ikv);
        free(st->isc);
    }
    free(s->layer);
    free(s->att_kv);
    free(s->att_s);
    free(s->att_idx);
    free(s->idx_score);
    free(s->idx_order);
    free(s->idx_q8);
    free(s->idx_qe);
    free(s);
}

int64_t td_v4_seq_len(const td_v4_seq *s) { return s->pos; }
int64_t td_v4_seq_mtp_len(const td_v4_seq *s) { return s->mtp_pos; }
int64_t td_v4_seq_capacity(const td_v4_seq *s) { return s->cap; }
