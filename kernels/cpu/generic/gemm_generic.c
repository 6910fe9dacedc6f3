/* Scalar reference GEMMs: the definition every SIMD path must reproduce bit
 * for bit (summation order: kernels/kernels_impl.h). Also the fallback on
 * CPUs without AVX2. */
#include "kernels/kernels_impl.h"

/* y[m][n] = f32(sum_kb (sum_{k in kb} q*w) * 2^ex[m][kb] * 2^(sw[n/128][kb]-127)) */
void td_gemm_fp8_rows_generic(const td_gemm_job *job, int n0, int n1)
{
    const td_weight *w = job->w;
    const int K = w->k, nb = K / 128, sb = (K + 127) / 128;
    const uint8_t *W = w->data;                               /* [N][K] */
    for (int m = 0; m < job->M; m++) {
        const uint8_t *q = job->q + (size_t)m * K;            /* [K] */
        const int8_t *ex = job->e + (size_t)m * nb;           /* [K/128] */
        for (int n = n0; n < n1; n++) {
            const uint8_t *wr = W + (size_t)n * K;            /* [K] */
            const uint8_t *sw = w->scale + (size_t)(n / 128) * sb; /* [sb] */
            double acc = 0.0;
            for (int b = 0; b < nb; b++) {
                double s = 0.0;   /* exact: 128 products of two e4m3 values */
                for (int k = b * 128; k < b * 128 + 128; k++)
                    s += td_e4m3_f64[q[k]] * td_e4m3_f64[wr[k]];
                acc += s * td_pow2d(ex[b] + sw[b] - 127);
            }
            job->y[(size_t)m * job->ldy + n] = (float)acc;
        }
    }
}

/* FP4 weights: the same with 32-blocks and scale sw[n][k/32]. */
void td_gemm_fp4_rows_generic(const td_gemm_job *job, int n0, int n1)
{
    const td_weight *w = job->w;
    const int K = w->k, nb = K / 128;
    const uint8_t *W = w->data;                               /* [N][K/2] */
    for (int m = 0; m < job->M; m++) {
        const uint8_t *q = job->q + (size_t)m * K;            /* [K] */
        const int8_t *ex = job->e + (size_t)m * nb;           /* [K/128] */
        for (int n = n0; n < n1; n++) {
            const uint8_t *wr = W + (size_t)n * (K / 2);      /* [K/2] */
            const uint8_t *sw = w->scale + (size_t)n * (K / 32); /* [K/32] */
            double acc = 0.0;
            for (int b = 0; b < K / 32; b++) {
                double s = 0.0;   /* exact: 32 products e2m1 * e4m3 */
                for (int k = b * 32; k < b * 32 + 32; k += 2) {
                    uint8_t byte = wr[k / 2];
                    s += td_e4m3_f64[q[k]] * td_e2m1_f64[byte & 15];
                    s += td_e4m3_f64[q[k + 1]] * td_e2m1_f64[byte >> 4];
                }
                acc += s * td_pow2d(ex[b / 4] + sw[b] - 127);
            }
            job->y[(size_t)m * job->ldy + n] = (float)acc;
        }
    }
}

/* The canonical 8-lane order for non-exact fp64 sums (kernels_impl.h). */
static inline double lanes8_reduce(const double p[8])
{
    double q0 = p[0] + p[4], q1 = p[1] + p[5], q2 = p[2] + p[6], q3 = p[3] + p[7];
    double r0 = q0 + q2, r1 = q1 + q3;
    return r0 + r1;
}

void td_gemm_f32_rows_generic(const td_gemm_job *job, int n0, int n1)
{
    const int K = job->w->k;
    const float *W = job->w->data;                            /* [N][K] */
    for (int m = 0; m < job->M; m++) {
        const float *x = job->x + (size_t)m * K;              /* [K] */
        for (int n = n0; n < n1; n++) {
            const float *wr = W + (size_t)n * K;              /* [K] */
            double p[8] = {0};
            for (int k = 0; k < K; k++)
                p[k & 7] += (double)x[k] * (double)wr[k];     /* product exact */
            job->y[(size_t)m * job->ldy + n] = (float)lanes8_reduce(p);
        }
    }
}

void td_gemm_bf16_rows_generic(const td_gemm_job *job, int n0, int n1)
{
    const int K = job->w->k;
    const uint16_t *W = job->w->data;                         /* [N][K] */
    for (int m = 0; m < job->M; m++) {
        const float *x = job->x + (size_t)m * K;              /* [K] */
        for (int n = n0; n < n1; n++) {
            const uint16_t *wr = W + (size_t)n * K;           /* [K] */
            double p[8] = {0};
            for (int k = 0; k < K; k++)
                p[k & 7] += (double)x[k] * (double)td_bf16_to_f32(wr[k]);
            job->y[(size_t)m * job->ldy + n] = (float)lanes8_reduce(p);
        }
    }
}
