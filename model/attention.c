/* Attention for all three layer kinds (spec §2.6–2.8).
 *
 * The projections run over all rows at once (row-independent GEMMs). Then
 * each row, in order, updates its sequence's state exactly as a decode step
 * would (window slot, indexer compressor, main compressor), builds its index
 * list (window, then compressed entries) and attends. Prefill, chunked
 * prefill and decode are therefore the same computation.
 */
#include <math.h>
#include <string.h>

#include "model/internal.h"

static const float *layer_freq(const td_v4_model *m, int ratio)
{
    return ratio > 0 ? m->freq_yarn : m->freq_plain;
}

/* The query, KV, compressor and indexer projections for all rows. */
static void project(td_v4_model *m, const td_v4_layer *L, int rows)
{
    const td_v4_config *c = &m->c;
    int H = c->n_heads, hd = c->head_dim, rd = c->rope_dim;
    int ql = c->q_lora_rank;
    const float *freq = layer_freq(m, L->ratio);

    td_v4_linear(m, &L->wq_a, m->xn, rows, m->qr, ql, 1);
    for (int r = 0; r < rows; r++) {
        float *qr = m->qr + (size_t)r * ql;
        td_v4_rmsnorm(qr, L->q_norm, ql, c->norm_eps, qr);
    }
    td_v4_linear(m, &L->wq_b, m->qr, rows, m->q, H * hd, 1);
    td_v4_linear(m, &L->wkv, m->xn, rows, m->kv, hd, 1);
    for (int r = 0; r < rows; r++) {
        int64_t p = m->row_pos[r];
        for (int h = 0; h < H; h++) {
            float *q = m->q + ((size_t)r * H + h) * hd;
            float rinv = td_v4_rms_inv(q, hd, c->norm_eps);
            for (int i = 0; i < hd; i++)
                q[i] = td_bf16_round(q[i] * rinv);
            td_v4_rope(q + hd - rd, rd, freq, p, 0);
        }
        float *kv = m->kv + (size_t)r * hd;
        td_v4_rmsnorm(kv, L->kv_norm, hd, c->norm_eps, kv);
        td_v4_rope(kv + hd - rd, rd, freq, p, 0);
    }
    if (L->ratio > 0) {
        int w = L->compressor.wkv.n;
        td_v4_gemm_f(m, &L->compressor.wkv, m->xn, rows, m->ca, w);
        td_v4_gemm_f(m, &L->compressor.wgate, m->xn, rows, m->cz, w);
    }
    if (td_v4_is_csa(L->ratio)) {
        int nI = c->index_n_heads, dI = c->index_head_dim;
        td_v4_linear(m, &L->idx_wq_b, m->qr, rows, m->iq, nI * dI, 1);
        td_v4_linear(m, &L->idx_weights_proj, m->xn, rows, m->iw, nI, 1);
        float iscale = (float)(pow(nI, -0.5) * pow(dI, -0.5));
        for (int r = 0; r < rows; r++) {
            for (int h = 0; h < nI; h++) {
                float *q = m->iq + ((size_t)r * nI + h) * dI;
                td_v4_rope(q + dI - rd, rd, freq, m->row_pos[r], 0);
                td_v4_hadamard(q, dI);
                /* FP4 simulation, keeping the codes for the integer scoring. */
                td_v4_ikey_encode(m, q, m->iqrec + ((size_t)r * nI + h) * m->ikrec);
            }
            float *w = m->iw + (size_t)r * nI;
            for (int h = 0; h < nI; h++)
                w[h] = td_bf16_round(w[h] * iscale);
        }
        int w = L->idx_compressor.wkv.n;
        td_v4_gemm_f(m, &L->idx_compressor.wkv, m->xn, rows, m->ia, w);
        td_v4_gemm_f(m, &L->idx_compressor.wgate, m->xn, rows, m->iz, w);
    }
}

/* Feeds row r into the layer's compressors; stores emitted entries. */
static void update_state(td_v4_model *m, const td_v4_layer *L, td_v4_layer_state *st,
                         int r, int64_t p)
{
    const td_v4_config *c = &m->c;
    int hd = c->head_dim, rd = c->rope_dim;
    float entry[1024];
    if (td_v4_is_csa(L->ratio)) {
        int dI = c->index_head_dim;
        const td_v4_compressor *ic = &L->idx_compressor;
        if (td_v4_compress_step(m, ic, st->ikv, st->isc, m->ia + (size_t)r * ic->wkv.n,
                                m->iz + (size_t)r * ic->wkv.n, p, entry)) {
            int64_t j = p / 4;
            td_v4_rmsnorm(entry, ic->norm, dI, c->norm_eps, entry);
            td_v4_rope(entry + dI - rd, rd, m->freq_yarn, j * 4, 0);
            td_v4_hadamard(entry, dI);
            td_v4_ikey_encode(m, entry, st->ikey + (size_t)j * m->ikrec);
        }
    }
    if (L->ratio > 0) {
        const td_v4_compressor *cw = &L->compressor;
        if (td_v4_compress_step(m, cw, st->ckv, st->csc, m->ca + (size_t)r * cw->wkv.n,
                                m->cz + (size_t)r * cw->wkv.n, p, entry)) {
            int64_t j = p / L->ratio;
            td_v4_rmsnorm(entry, cw->norm, hd, c->norm_eps, entry);
            td_v4_rope(entry + hd - rd, rd, m->freq_yarn, j * L->ratio, 0);
            td_v4_kvrec_encode(m, entry, st->comp + (size_t)j * m->rec);
        }
    }
}

/* e2m1 code -> twice its value, an integer in {0, ±1, ±2, ±3, ±4, ±6, ±8, ±12}. */
static const int8_t e2m1_x2[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* Unpacks an indexer record (query or key) into twice-values and per-32
 * scale exponents. */
static void unpack_fp4(const uint8_t *rec, int d, int8_t *v, int *e)
{
    for (int i = 0; i < d / 2; i++) {
        v[2 * i] = e2m1_x2[rec[i] & 0xf];
        v[2 * i + 1] = e2m1_x2[rec[i] >> 4];
    }
    for (int b = 0; b < d / 32; b++)
        e[b] = (int)rec[d / 2 + b] - 127;
}

static inline double pow2d(int e)
{
    union { uint64_t u; double d; } x = {.u = (uint64_t)(e + 1023) << 52};
    return x.d;
}

/* Is block a (score sa) ranked before block b? Score descending, then the
 * lower index: the tie rule shared with the reference. */
static inline int ranks_before(float sa, int32_t a, float sb, int32_t b)
{
    return sa > sb || (sa == sb && a < b);
}

/* Keeps the k best of (score[j], j) in a heap whose root is the worst kept. */
static void heap_sift(int32_t *h, int n, int i, const float *score)
{
    for (;;) {
        int w = i, l = 2 * i + 1, r = l + 1;
        if (l < n && ranks_before(score[h[w]], h[w], score[h[l]], h[l]))
            w = l;
        if (r < n && ranks_before(score[h[w]], h[w], score[h[r]], h[r]))
            w = r;
        if (w == i)
            return;
        int32_t t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* Lightning indexer: the top-k complete blocks for row r, into idx[], in
 * selection order (score descending, then lower block index). */
static int indexer_topk(td_v4_model *m, td_v4_seq *s, const td_v4_layer_state *st,
                        int r, int64_t nblocks, int32_t *idx)
{
    const td_v4_config *c = &m->c;
    int nI = c->index_n_heads, dI = c->index_head_dim, nb = dI / 32;
    const float *w = m->iw + (size_t)r * nI;
    int8_t *q8 = s->idx_q8, k8[1024];
    int *qe = s->idx_qe, ke[32];
    for (int h = 0; h < nI; h++)
        unpack_fp4(m->iqrec + ((size_t)r * nI + h) * m->ikrec, dI, q8 + (size_t)h * dI,
                   qe + h * nb);
    float *score = s->idx_score;
    int32_t dots[64 * 32];   /* [nI][dI/32]: nI <= 64, dI <= 1024 (model create checks) */
    for (int64_t j = 0; j < nblocks; j++) {
        unpack_fp4(st->ikey + (size_t)j * m->ikrec, dI, k8, ke);
        /* Each 32-block's products are small integers (twice-values, at most
         * 144 each): exact int32 sums, then the two power-of-two scales; the
         * result equals the fp64 sum docs/numerics.md defines. */
        td_i8_dot32(q8, nI, k8, dI, dots);
        double total = 0.0;
        for (int h = 0; h < nI; h++) {
            double dot = 0.0;
            for (int b = 0; b < nb; b++)
                dot += (double)dots[h * nb + b] * pow2d(qe[h * nb + b] + ke[b] - 2);
            float l = td_bf16_round((float)dot);
            if (l < 0.0f)
                l = 0.0f;
            total += td_bf16_round(l * w[h]);
        }
        score[j] = td_bf16_round((float)total);
    }
    int k = (int)(nblocks < c->index_topk ? nblocks : c->index_topk);
    /* Heap of the k best seen so far, worst at the root: O(n log k). */
    int32_t *heap = s->idx_order;
    for (int32_t j = 0; j < k; j++)
        heap[j] = j;
    for (int i = k / 2 - 1; i >= 0; i--)
        heap_sift(heap, k, i, score);
    for (int64_t j = k; j < nblocks; j++) {
        if (ranks_before(score[j], (int32_t)j, score[heap[0]], heap[0])) {
            heap[0] = (int32_t)j;
            heap_sift(heap, k, 0, score);
        }
    }
    /* Pop worst-first into the back of idx: best first in the end. */
    for (int n = k; n > 0; n--) {
        idx[n - 1] = heap[0];
        heap[0] = heap[n - 1];
        heap_sift(heap, n - 1, 0, score);
    }
    return k;
}

/* acc[i] += p * x[i]: independent lanes, so vectorising keeps each lane's
 * order (t ascending) and the result. */
static void axpy64(double *restrict acc, double p, const float *restrict x, int n)
{
    for (int i = 0; i < n; i++)
        acc[i] += p * (double)x[i];
}

/* Attention of one row over n decoded KV rows, all heads. The scores of all
 * heads are one F32 GEMM (rows of q against the n KV rows). */
static void attend(td_v4_model *m, const td_v4_layer *L, td_v4_seq *s, int r, int n)
{
    const td_v4_config *c = &m->c;
    int H = c->n_heads, hd = c->head_dim;
    float scale = (float)pow((double)hd, -0.5);
    td_weight kvw = {.type = TD_W_F32, .n = n, .k = hd, .data = s->att_kv};
    td_gemm_f(m->pool, &kvw, m->q + (size_t)r * H * hd, H, s->att_s, n);
    double acc[1024];
    for (int h = 0; h < H; h++) {
        float *sc = s->att_s + (size_t)h * n;
        float *o = m->o + ((size_t)r * H + h) * hd;
        float mx = -INFINITY;
        for (int t = 0; t < n; t++) {
            sc[t] = sc[t] * scale;
            mx = fmaxf(mx, sc[t]);
        }
        double z = exp((double)(L->attn_sink[h] - mx));
        for (int i = 0; i < hd; i++)
            acc[i] = 0.0;
        for (int t = 0; t < n; t++) {
            float e = (float)exp((double)(sc[t] - mx));
            z += e;
            axpy64(acc, td_bf16_round(e), s->att_kv + (size_t)t * hd, hd);
        }
        float zf = (float)z;
        for (int i = 0; i < hd; i++)
            o[i] = td_bf16_round((float)acc[i] / zf);
    }
}

void td_v4_attention(td_v4_model *m, int li, const td_v4_layer *L, int rows)
{
    const td_v4_config *c = &m->c;
    int H = c->n_heads, hd = c->head_dim, rd = c->rope_dim, W = c->window;
    int G = c->o_groups;

    project(m, L, rows);

    for (int r = 0; r < rows; r++) {
        td_v4_seq *s = m->row_seq[r];
        td_v4_layer_state *st = &s->layer[li];
        int64_t p = m->row_pos[r];
        float *kv = m->kv + (size_t)r * hd;
        td_v4_kvrec_encode(m, kv, st->win + (size_t)(p % W) * m->rec);
        update_state(m, L, st, r, p);

        /* Index list: the window (oldest first), then compressed entries. */
        int n = 0;
        int64_t first = p - W + 1 < 0 ? 0 : p - W + 1;
        for (int64_t t = first; t <= p; t++, n++)
            td_v4_kvrec_decode(m, st->win + (size_t)(t % W) * m->rec,
                               s->att_kv + (size_t)n * hd);
        if (L->ratio > 0) {
            int64_t nblocks = (p + 1) / L->ratio;
            if (td_v4_is_csa(L->ratio)) {
                int k = indexer_topk(m, s, st, r, nblocks, s->att_idx);
                for (int i = 0; i < k; i++, n++)
                    td_v4_kvrec_decode(m, st->comp + (size_t)s->att_idx[i] * m->rec,
                                       s->att_kv + (size_t)n * hd);
            } else {
                for (int64_t j = 0; j < nblocks; j++, n++)
                    td_v4_kvrec_decode(m, st->comp + (size_t)j * m->rec,
                                       s->att_kv + (size_t)n * hd);
            }
        }
        attend(m, L, s, r, n);
        for (int h = 0; h < H; h++)
            td_v4_rope(m->o + ((size_t)r * H + h) * hd + hd - rd, rd,
                       layer_freq(m, L->ratio), p, 1);
    }

    /* Grouped output projection: group g's heads are contiguous in o. */
    int gk = H / G * hd, ol = c->o_lora_rank;
    for (int g = 0; g < G; g++) {
        for (int r = 0; r < rows; r++)
            memcpy(m->og + (size_t)r * gk, m->o + (size_t)r * H * hd + (size_t)g * gk,
                   sizeof(float) * (size_t)gk);
        td_weight wg = L->wo_a;
        wg.n = ol;
        wg.data = (const uint16_t *)L->wo_a.data + (size_t)g * ol * gk;
        td_v4_gemm_f(m, &wg, m->og, rows, m->zo + (size_t)g * ol, G * ol);
    }
    for (int r = 0; r < rows; r++)
        td_bf16_round_n(m->zo + (size_t)r * G * ol, (size_t)G * ol);
    td_v4_linear(m, &L->wo_b, m->zo, rows, m->out, c->dim, 1);
}
