/* mHC, manifold-constrained hyper-connections (spec §2.4).
 *
 * The residual stream is hc parallel streams X[hc][D] (bf16 values). Before a
 * sublayer, `pre` collapses them into one input with weights computed from
 * the streams themselves; after it, `post` spreads the output back and
 * `comb`, a matrix kept near doubly-stochastic by Sinkhorn iterations, mixes
 * the old streams. The mixing coefficients are per token.
 */
#include <math.h>

#include "model/internal.h"

static float sigmoidf64(float v)
{
    return (float)(1.0 / (1.0 + exp(-(double)v)));
}

/* m[0..nmix) = (fn . flatten(X)) * rsqrt(mean(X^2) + eps), for every row. */
static void hc_mix(td_v4_model *m, const td_v4_hc *hc, const float *X, int rows,
                   int nmix)
{
    int hd = m->c.hc_mult * m->c.dim;
    td_weight fn = {.type = TD_W_F32, .n = nmix, .k = hd, .data = hc->fn};
    td_v4_gemm_f(m, &fn, X, rows, m->hc_m, m->mix);
    for (int r = 0; r < rows; r++) {
        float rinv = td_v4_rms_inv(X + (size_t)r * hd, hd, m->c.norm_eps);
        float *mr = m->hc_m + (size_t)r * m->mix;
        for (int i = 0; i < nmix; i++)
            mr[i] = mr[i] * rinv;
    }
}

/* y = bf16(sum_j pre_j X_j) for one row. */
static void collapse(const float *X, const float *pre, int hc, int D, float *y)
{
    for (int d = 0; d < D; d++) {
        double acc = 0.0;
        for (int j = 0; j < hc; j++)
            acc += (double)pre[j] * (double)X[(size_t)j * D + d];
        y[d] = td_bf16_round((float)acc);
    }
}

static void sinkhorn(float *C, int n, int iters, float eps)
{
    /* Row softmax, then +eps. */
    for (int j = 0; j < n; j++) {
        float *row = C + j * n;
        float mx = row[0];
        for (int k = 1; k < n; k++)
            mx = fmaxf(mx, row[k]);
        double z = 0.0;
        for (int k = 0; k < n; k++) {
            row[k] = (float)exp((double)(row[k] - mx));
            z += row[k];
        }
        float zf = (float)z;
        for (int k = 0; k < n; k++)
            row[k] = row[k] / zf + eps;
    }
    for (int it = 0; it < iters; it++) {
        if (it > 0) {
            for (int j = 0; j < n; j++) {
                double s = eps;
                for (int k = 0; k < n; k++)
                    s += C[j * n + k];
                float sf = (float)s;
                for (int k = 0; k < n; k++)
                    C[j * n + k] = C[j * n + k] / sf;
            }
        }
        for (int k = 0; k < n; k++) {
            double s = eps;
            for (int j = 0; j < n; j++)
                s += C[j * n + k];
            float sf = (float)s;
            for (int j = 0; j < n; j++)
                C[j * n + k] = C[j * n + k] / sf;
        }
    }
}

void td_v4_hc_pre(td_v4_model *m, const td_v4_hc *hc, int rows)
{
    int H = m->c.hc_mult, D = m->c.dim;
    float eps = m->c.hc_eps;
    hc_mix(m, hc, m->X, rows, m->mix);
    for (int r = 0; r < rows; r++) {
        const float *mr = m->hc_m + (size_t)r * m->mix;
        float *pre = m->hc_pre + (size_t)r * H;
        float *post = m->hc_post + (size_t)r * H;
        float *C = m->hc_comb + (size_t)r * H * H;
        for (int j = 0; j < H; j++) {
            pre[j] = sigmoidf64(mr[j] * hc->scale[0] + hc->base[j]) + eps;
            post[j] = 2.0f * sigmoidf64(mr[H + j] * hc->scale[1] + hc->base[H + j]);
        }
        for (int i = 0; i < H * H; i++)
            C[i] = mr[2 * H + i] * hc->scale[2] + hc->base[2 * H + i];
        sinkhorn(C, H, m->c.hc_sinkhorn_iters, eps);
        collapse(m->X + (size_t)r * H * D, pre, H, D, m->y + (size_t)r * D);
    }
}

void td_v4_hc_post(td_v4_model *m, int rows)
{
    int H = m->c.hc_mult, D = m->c.dim;
    for (int r = 0; r < rows; r++) {
        float *X = m->X + (size_t)r * H * D;
        const float *out = m->out + (size_t)r * D;
        const float *post = m->hc_post + (size_t)r * H;
        const float *C = m->hc_comb + (size_t)r * H * H;
        /* New streams depend on all old ones: compute column by column
         * over d so each d needs only the H old values. */
        for (int d = 0; d < D; d++) {
            float old[16];
            for (int j = 0; j < H; j++)
                old[j] = X[(size_t)j * D + d];
            for (int k = 0; k < H; k++) {
                double acc = (double)post[k] * (double)out[d];
                for (int j = 0; j < H; j++)
                    acc += (double)C[j * H + k] * (double)old[j];
                X[(size_t)k * D + d] = td_bf16_round((float)acc);
            }
        }
    }
}

void td_v4_hc_head(td_v4_model *m, const td_v4_hc *hc, const float *X, int rows, float *y)
{
    int H = m->c.hc_mult, D = m->c.dim;
    hc_mix(m, hc, X, rows, H);
    for (int r = 0; r < rows; r++) {
        const float *mr = m->hc_m + (size_t)r * m->mix;
        float pre[16];
        for (int j = 0; j < H; j++)
            pre[j] = sigmoidf64(mr[j] * hc->scale[0] + hc->base[j]) + m->c.hc_eps;
        collapse(X + (size_t)r * H * D, pre, H, D, y + (size_t)r * D);
    }
}
