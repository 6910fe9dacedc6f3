/* Mixture of experts (spec §2.9): sqrt(softplus) scores, top-k by biased
 * score (or a fixed token-id table in the first hash layers), clamped SwiGLU
 * experts, one shared expert. Rows are grouped by expert so each expert's
 * weights stream once per call however many rows chose it. */
#include <math.h>
#include <string.h>

#include "model/internal.h"

static float silu64(float g)
{
    return (float)((double)g / (1.0 + exp(-(double)g)));
}

static float sqrt_softplus(float l)
{
    double sp = l > 20.0f ? (double)l : log1p(exp((double)l));
    return (float)sqrt(sp);
}

static void route(td_v4_model *m, const td_v4_layer *L, int rows)
{
    const td_v4_config *c = &m->c;
    int E = c->n_routed_experts, K = c->n_activated_experts;
    td_v4_gemm_f(m, &L->gate, m->xn, rows, m->gl, E);
    for (int r = 0; r < rows; r++) {
        float *s = m->gl + (size_t)r * E;
        int32_t *sel = m->sel + (size_t)r * K;
        float *w = m->selw + (size_t)r * K;
        for (int e = 0; e < E; e++)
            s[e] = sqrt_softplus(s[e]);
        if (L->tid2eid) {
            const int64_t *row = L->tid2eid + (size_t)m->row_tok[r] * K;
            for (int k = 0; k < K; k++)
                sel[k] = (int32_t)row[k];
        } else {
            /* top-k by s + bias, ties to the lower expert id */
            uint64_t taken[8] = {0};   /* E <= 512 */
            for (int k = 0; k < K; k++) {
                int best = -1;
                float bv = 0.0f;
                for (int e = 0; e < E; e++) {
                    if (taken[e >> 6] >> (e & 63) & 1)
                        continue;
                    float v = s[e] + L->gate_bias[e];
                    if (best < 0 || v > bv) {
                        best = e;
                        bv = v;
                    }
                }
                taken[best >> 6] |= 1ull << (best & 63);
                sel[k] = best;
            }
        }
        double sum = 0.0;
        for (int k = 0; k < K; k++)
            sum += s[sel[k]];
        float sumf = (float)sum;
        for (int k = 0; k < K; k++)
            w[k] = s[sel[k]] / sumf * c->route_scale;
    }
}

/* SwiGLU of one expert over `rows` gathered FP8 rows (gq, ge); scales row i
 * by weight[i] when weight is non-NULL; writes bf16 rows of D into out with
 * row stride ldo. */
static void expert(td_v4_model *m, const td_v4_expert *x, const uint8_t *gq,
                   const int8_t *ge, int rows, const float *weight,
                   float *out, int ldo)
{
    const td_v4_config *c = &m->c;
    int I = c->moe_inter_dim;
    float L = c->swiglu_limit;
    td_v4_gemm_q(m, &x->w1, gq, ge, rows, m->g, I);
    td_v4_gemm_q(m, &x->w3, gq, ge, rows, m->u, I);
    for (int r = 0; r < rows; r++) {
        float *g = m->g + (size_t)r * I, *u = m->u + (size_t)r * I;
        for (int i = 0; i < I; i++) {
            float gv = td_bf16_round(g[i]), uv = td_bf16_round(u[i]);
            uv = fminf(fmaxf(uv, -L), L);
            gv = fminf(gv, L);
            float h = silu64(gv) * uv;
            if (weight)
                h = h * weight[r];
            g[i] = td_bf16_round(h);
        }
    }
    td_v4_linear(m, &x->w2, m->g, rows, out, ldo, 1);
}

void td_v4_moe(td_v4_model *m, const td_v4_layer *L, int rows)
{
    const td_v4_config *c = &m->c;
    int E = c->n_routed_experts, K = c->n_activated_experts, D = c->dim;
    int nkb = D / 128;
    route(m, L, rows);
    td_act_quant_fp8(m->xn, rows, D, m->gq, m->ge);

    /* Counting sort of (row, slot) pairs by expert. */
    memset(m->ecount, 0, sizeof(int32_t) * (size_t)(E + 1));
    for (int i = 0; i < rows * K; i++)
        m->ecount[m->sel[i] + 1]++;
    for (int e = 0; e < E; e++)
        m->ecount[e + 1] += m->ecount[e];
    for (int i = 0; i < rows * K; i++)
        m->erows[m->ecount[m->sel[i]]++] = i;
    for (int e = E; e > 0; e--)
        m->ecount[e] = m->ecount[e - 1];
    m->ecount[0] = 0;

    for (int e = 0; e < E; e++) {
        int lo = m->ecount[e], n = m->ecount[e + 1] - lo;
        if (n == 0)
            continue;
        float *wts = m->ew;
        for (int i = 0; i < n; i++) {
            int pair = m->erows[lo + i], r = pair / K;
            memcpy(m->hq + (size_t)i * D, m->gq + (size_t)r * D, (size_t)D);
            memcpy(m->he + (size_t)i * nkb, m->ge + (size_t)r * nkb, (size_t)nkb);
            wts[i] = m->selw[pair];
        }
        expert(m, &L->experts[e], m->hq, m->he, n, wts, m->sout, D);
        for (int i = 0; i < n; i++) {
            int pair = m->erows[lo + i];
            memcpy(m->eout + (size_t)pair * D, m->sout + (size_t)i * D,
                   sizeof(float) * (size_t)D);
        }
    }
    expert(m, &L->shared, m->gq, m->ge, rows, NULL, m->sout, D);

    /* Combine in ascending expert id, then the shared expert. */
    for (int r = 0; r < rows; r++) {
        int order[64];
        const int32_t *sel = m->sel + (size_t)r * K;
        for (int k = 0; k < K; k++) {
            int j = k;
            while (j > 0 && sel[order[j - 1]] > sel[k]) {
                order[j] = order[j - 1];
                j--;
            }
            order[j] = k;
        }
        float *out = m->out + (size_t)r * D;
        for (int d = 0; d < D; d++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++)
                acc += m->eout[((size_t)r * K + order[k]) * D + d];
            acc += m->sout[(size_t)r * D + d];
            out[d] = td_bf16_round((float)acc);
        }
    }
}
