/* The model: scratch for a step of up to max_rows tokens, and the forward
 * driver that reads top to bottom like the paper: embed, then per block
 * mHC-pre, attention, mHC-post, mHC-pre, MoE, mHC-post; then the head. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/internal.h"

#define NEW(ptr, count)                                                   \
    do {                                                                  \
        size_t n_ = (size_t)(count);                                      \
        (ptr) = calloc(n_ > 0 ? n_ : 1, sizeof *(ptr));                   \
        if (!(ptr))                                                       \
            goto nomem;                                                   \
    } while (0)

static int maxi(int a, int b) { return a > b ? a : b; }

/* Limits of the fixed-size buffers in the kernels of this folder. */
static td_err check_limits(const td_v4_config *c, char *err, size_t errlen)
{
    if (c->hc_mult > 16)
        return td_errf(err, errlen, TD_ENOTSUP, "hc_mult %d > 16", c->hc_mult);
    if (c->head_dim > 1024 || c->index_head_dim > 1024 || c->index_n_heads > 64)
        return td_errf(err, errlen, TD_ENOTSUP,
                       "head_dim or index_head_dim > 1024, or index_n_heads > 64");
    if (c->n_routed_experts > 512 || c->n_activated_experts > 64)
        return td_errf(err, errlen, TD_ENOTSUP, "more than 512 experts or 64 active");
    if (c->n_heads % c->o_groups)
        return td_errf(err, errlen, TD_ENOTSUP, "n_heads not a multiple of o_groups");
    for (int i = 0; i < c->n_ratios; i++)
        if (c->compress_ratios[i] > 128 && c->compress_ratios[i] != 0)
            return td_errf(err, errlen, TD_ENOTSUP, "compress ratio %d > 128",
                           c->compress_ratios[i]);
    return TD_OK;
}

td_err td_v4_model_create(td_v4_model **out, const td_v4_weights *w,
                          const td_v4_model_opts *opts, char *err, size_t errlen)
{
    *out = NULL;
    const td_v4_config *c = &w->cfg;
    td_err e = check_limits(c, err, errlen);
    if (e)
        return e;
    td_v4_model *m = calloc(1, sizeof *m);
    if (!m)
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    m->w = w;
    m->c = *c;
    m->max_rows = opts && opts->max_rows > 0 ? opts->max_rows : 256;
    e = td_pool_create(&m->pool, opts ? opts->nthreads : 0);
    if (e) {
        free(m);
        return td_errf(err, errlen, e, "thread pool: %s", td_strerror(e));
    }
    m->nope = c->head_dim - c->rope_dim;
    m->rec = (m->nope + 2 * c->rope_dim + m->nope / 64 + 7) / 8 * 8;
    m->ikrec = c->index_head_dim / 2 + c->index_head_dim / 32;
    m->mix = (2 + c->hc_mult) * c->hc_mult;
    for (int i = 0; i < 256; i++)
        m->e4m3_lut[i] = td_e4m3_to_f32((uint8_t)i);

    int R = m->max_rows, D = c->dim, H = c->n_heads, hd = c->head_dim;
    int K = c->n_activated_experts, I = c->moe_inter_dim;
    int nI = c->index_n_heads, dI = c->index_head_dim;
    int RK = R * K;
    m->max_k = maxi(maxi(D, c->q_lora_rank), maxi(c->o_groups * c->o_lora_rank, I));

    NEW(m->freq_plain, c->rope_dim / 2);
    NEW(m->freq_yarn, c->rope_dim / 2);
    td_v4_rope_freqs(c, 0, m->freq_plain);
    td_v4_rope_freqs(c, 1, m->freq_yarn);
    NEW(m->row_tok, R);
    NEW(m->row_pos, R);
    NEW(m->row_seq, R);
    NEW(m->X, (size_t)R * c->hc_mult * D);
    NEW(m->y, (size_t)R * D);
    NEW(m->xn, (size_t)R * D);
    NEW(m->out, (size_t)R * D);
    NEW(m->hc_m, (size_t)R * m->mix);
    NEW(m->hc_pre, (size_t)R * c->hc_mult);
    NEW(m->hc_post, (size_t)R * c->hc_mult);
    NEW(m->hc_comb, (size_t)R * c->hc_mult * c->hc_mult);
    NEW(m->xq, (size_t)RK * m->max_k);
    NEW(m->xe, (size_t)RK * m->max_k / 128 + 1);
    NEW(m->qr, (size_t)R * c->q_lora_rank);
    NEW(m->q, (size_t)R * H * hd);
    NEW(m->kv, (size_t)R * hd);
    NEW(m->ca, (size_t)R * 2 * hd);
    NEW(m->cz, (size_t)R * 2 * hd);
    NEW(m->iq, (size_t)R * nI * dI);
    NEW(m->iw, (size_t)R * nI);
    NEW(m->iqrec, (size_t)R * nI * m->ikrec);
    NEW(m->ia, (size_t)R * 2 * dI);
    NEW(m->iz, (size_t)R * 2 * dI);
    NEW(m->o, (size_t)R * H * hd);
    NEW(m->og, (size_t)R * H * hd / c->o_groups);
    NEW(m->zo, (size_t)R * c->o_groups * c->o_lora_rank);
    NEW(m->gl, (size_t)R * c->n_routed_experts);
    NEW(m->sel, (size_t)RK);
    NEW(m->selw, (size_t)RK);
    NEW(m->erows, (size_t)RK);
    NEW(m->ecount, c->n_routed_experts + 1);
    NEW(m->gq, (size_t)R * D);
    NEW(m->ge, (size_t)R * D / 128 + 1);
    NEW(m->hq, (size_t)RK * D);
    NEW(m->he, (size_t)RK * D / 128 + 1);
    NEW(m->ew, (size_t)RK);
    NEW(m->g, (size_t)RK * I);
    NEW(m->u, (size_t)RK * I);
    NEW(m->eout, (size_t)RK * D);
    NEW(m->sout, (size_t)RK * D);
    NEW(m->hn, (size_t)R * D);
    *out = m;
    return TD_OK;
nomem:
    td_v4_model_destroy(m);
    return td_errf(err, errlen, TD_ENOMEM, "out of memory for model scratch");
}

void td_v4_model_destroy(td_v4_model *m)
{
    if (!m)
        return;
    void *bufs[] = {m->freq_plain, m->freq_yarn, m->row_tok, m->row_pos, m->row_seq,
                    m->X, m->y, m->xn, m->out, m->hc_m, m->hc_pre, m->hc_post,
                    m->hc_comb, m->xq, m->xe, m->qr, m->q, m->kv, m->ca, m->cz,
                    m->iq, m->iqrec, m->iw, m->ia, m->iz, m->o, m->og, m->zo, m->gl, m->sel,
                    m->selw, m->erows, m->ecount, m->gq, m->ge, m->hq, m->he, m->ew,
                    m->g, m->u, m->eout, m->sout, m->hn};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    if (m->pool)
        td_pool_destroy(m->pool);
    free(m);
}

const td_v4_config *td_v4_model_config(const td_v4_model *m) { return &m->c; }

static void block(td_v4_model *m, int li, const td_v4_layer *L, int rows)
{
    const td_v4_config *c = &m->c;
    int D = c->dim;
    td_v4_hc_pre(m, &L->hc_attn, rows);
    for (int r = 0; r < rows; r++)
        td_v4_rmsnorm(m->y + (size_t)r * D, L->attn_norm, D, c->norm_eps,
                      m->xn + (size_t)r * D);
    td_v4_attention(m, li, L, rows);
    td_v4_hc_post(m, rows);

    td_v4_hc_pre(m, &L->hc_ffn, rows);
    for (int r = 0; r < rows; r++)
        td_v4_rmsnorm(m->y + (size_t)r * D, L->ffn_norm, D, c->norm_eps,
                      m->xn + (size_t)r * D);
    td_v4_moe(m, L, rows);
    td_v4_hc_post(m, rows);
}

/* Head: hc collapse, norm, logits for the rows whose dst is set; runs of
 * consecutive rows with consecutive destinations go through one GEMM. */
static void head(td_v4_model *m, const td_v4_hc *hc, const uint16_t *norm, int rows,
                 float *const *dst)
{
    const td_v4_config *c = &m->c;
    int D = c->dim, V = c->vocab_size;
    td_v4_hc_head(m, hc, m->X, rows, m->y);
    for (int r = 0; r < rows; r++)
        td_v4_rmsnorm(m->y + (size_t)r * D, norm, D, c->norm_eps, m->hn + (size_t)r * D);
    for (int r = 0; r < rows;) {
        if (!dst[r]) {
            r++;
            continue;
        }
        int n = 1;
        while (r + n < rows && dst[r + n] == dst[r] + (size_t)n * V)
            n++;
        td_v4_gemm_f(m, &m->w->head, m->hn + (size_t)r * D, n, dst[r], V);
        r += n;
    }
}

/* Runs `rows` prepared rows (row_tok, row_pos, row_seq) through the model;
 * fin[0..nfin) are the steps whose last row is among them and that want
 * to hear of each finished layer. */
static void run_rows(td_v4_model *m, int rows, float *const *dst, float *const *hdst,
                     td_v4_step *const *fin, int nfin)
{
    const td_v4_config *c = &m->c;
    const td_v4_weights *w = m->w;
    int D = c->dim, HC = c->hc_mult;
    for (int r = 0; r < rows; r++) {
        const uint16_t *e = w->embed + (size_t)m->row_tok[r] * D;
        float *X = m->X + (size_t)r * HC * D;
        for (int d = 0; d < D; d++)
            X[d] = td_bf16_to_f32(e[d]);
        for (int j = 1; j < HC; j++)
            memcpy(X + (size_t)j * D, X, sizeof(float) * (size_t)D);
    }
    for (int li = 0; li < c->n_layers; li++) {
        block(m, li, &w->layers[li], rows);
        for (int k = 0; k < nfin; k++)
            fin[k]->on_layer(fin[k]->layer_arg, li);
    }

    for (int r = 0; r < rows; r++)
        if (hdst[r])
            memcpy(hdst[r], m->X + (size_t)r * HC * D, sizeof(float) * (size_t)HC * D);
    head(m, &w->hc_head, w->norm, rows, dst);
}

td_err td_v4_forward(td_v4_model *m, td_v4_step *steps, int nsteps,
                     char *err, size_t errlen)
{
    const td_v4_config *c = &m->c;
    for (int i = 0; i < nsteps; i++) {
        const td_v4_step *st = &steps[i];
        if (!st->seq || st->n < 0 || (st->n > 0 && !st->tokens))
            return td_errf(err, errlen, TD_EINVAL, "step %d: bad arguments", i);
        if (st->seq->m != m)
            return td_errf(err, errlen, TD_EINVAL, "step %d: sequence of another model", i);
        if (st->seq->pos + st->n > st->seq->cap)
            return td_errf(err, errlen, TD_ETOOLONG,
                           "step %d: %lld + %d tokens exceed the sequence capacity %lld",
                           i, (long long)st->seq->pos, st->n, (long long)st->seq->cap);
        for (int j = 0; j < st->n; j++)
            if (st->tokens[j] < 0 || st->tokens[j] >= c->vocab_size)
                return td_errf(err, errlen, TD_ERANGE,
                               "step %d: token id %d outside the vocabulary [0, %d)",
                               i, st->tokens[j], c->vocab_size);
        for (int k = 0; k < i; k++)
            if (steps[k].seq == st->seq)
                return td_errf(err, errlen, TD_EINVAL,
                               "steps %d and %d use the same sequence", k, i);
    }

    float *dst[4096], *hdst[4096];
    td_v4_step *fin[4096];
    int R = m->max_rows < 4096 ? m->max_rows : 4096;
    int si = 0, off = 0;
    while (si < nsteps) {
        int rows = 0, nfin = 0;
        /* Fill a step of up to R rows; a sequence's rows stay in order. */
        while (si < nsteps && rows < R) {
            td_v4_step *st = &steps[si];
            int take = st->n - off;
            if (take > R - rows)
                take = R - rows;
            for (int j = 0; j < take; j++, rows++) {
                int t = off + j;
                m->row_tok[rows] = st->tokens[t];
                m->row_pos[rows] = st->seq->pos + j;  /* seq->pos advanced by off already */
                m->row_seq[rows] = st->seq;
                dst[rows] = NULL;
                hdst[rows] = st->hidden ? st->hidden + (size_t)t * c->hc_mult * c->dim : NULL;
                if (st->logits) {
                    if (st->all_logits)
                        dst[rows] = st->logits + (size_t)t * c->vocab_size;
                    else if (t == st->n - 1)
                        dst[rows] = st->logits;
                }
            }
            off += take;
            if (off == st->n) {
                if (st->on_layer && st->n > 0)
                    fin[nfin++] = st;
                si++;
                off = 0;
            }
        }
        if (rows > 0)
            run_rows(m, rows, dst, hdst, fin, nfin);
        /* Advance positions of the sequences this step touched. */
        for (int r = 0; r < rows; r++)
            if (m->row_pos[r] + 1 > m->row_seq[r]->pos)
                m->row_seq[r]->pos = m->row_pos[r] + 1;
    }
    return TD_OK;
}

td_err td_v4_mtp_forward(td_v4_model *m, td_v4_seq *seq, const float *hidden,
                         const int32_t *next_tokens, int n, float *logits,
                         char *err, size_t errlen)
{
    const td_v4_config *c = &m->c;
    if (c->n_mtp_layers < 1)
        return td_errf(err, errlen, TD_ENOTSUP, "this model has no MTP block");
    if (seq->m != m || n < 0 || (n > 0 && (!hidden || !next_tokens || !logits)))
        return td_errf(err, errlen, TD_EINVAL, "mtp: bad arguments");
    if (seq->mtp_pos + n > seq->cap)
        return td_errf(err, errlen, TD_ETOOLONG, "mtp: past the sequence capacity");
    for (int i = 0; i < n; i++)
        if (next_tokens[i] < 0 || next_tokens[i] >= c->vocab_size)
            return td_errf(err, errlen, TD_ERANGE, "mtp: token id %d outside the vocabulary",
                           next_tokens[i]);
    const td_v4_mtp *mt = &m->w->mtp[0];
    int D = c->dim, HC = c->hc_mult, V = c->vocab_size;
    float *dst[4096];
    for (int done = 0; done < n;) {
        int rows = n - done < m->max_rows ? n - done : m->max_rows;
        if (rows > 4096)
            rows = 4096;
        for (int r = 0; r < rows; r++) {
            m->row_tok[r] = next_tokens[done + r];
            m->row_pos[r] = seq->mtp_pos + r;
            m->row_seq[r] = seq;
            dst[r] = logits + (size_t)(done + r) * V;
            const uint16_t *e = m->w->embed + (size_t)next_tokens[done + r] * D;
            for (int d = 0; d < D; d++)
                m->y[(size_t)r * D + d] = td_bf16_to_f32(e[d]);
            td_v4_rmsnorm(m->y + (size_t)r * D, mt->enorm, D, c->norm_eps,
                          m->xn + (size_t)r * D);
        }
        /* X[j] = bf16(e_proj(enorm(e)) + h_proj(hnorm(hidden[j]))), per stream. */
        td_v4_linear(m, &mt->e_proj, m->xn, rows, m->out, D, 1);
        for (int j = 0; j < HC; j++) {
            for (int r = 0; r < rows; r++)
                td_v4_rmsnorm(hidden + ((size_t)(done + r) * HC + j) * D, mt->hnorm, D,
                              c->norm_eps, m->y + (size_t)r * D);
            td_v4_linear(m, &mt->h_proj, m->y, rows, m->hn, D, 1);
            for (int r = 0; r < rows; r++)
                for (int d = 0; d < D; d++)
                    m->X[((size_t)r * HC + j) * D + d] = td_bf16_round(
                        m->out[(size_t)r * D + d] + m->hn[(size_t)r * D + d]);
        }
        block(m, c->n_layers, &mt->block, rows);
        head(m, &mt->hc_head, mt->norm, rows, dst);
        seq->mtp_pos += rows;
        done += rows;
    }
    return TD_OK;
}
