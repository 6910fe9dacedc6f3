/* y = W x over rows, taking the activation path the weight's format needs:
 * FP8/FP4 weights quantise the input to FP8 in blocks of 128 first (the
 * quantisation-aware numerics V4 was trained with); bf16/fp32 weights see
 * the input as is. */
#include "model/internal.h"

/* Bytes a GEMM streams from the weight: what bounds decode speed. */
static uint64_t weight_bytes(const td_weight *w)
{
    uint64_t n = (uint64_t)w->n, k = (uint64_t)w->k;
    switch (w->type) {
    case TD_W_F32: return n * k * 4;
    case TD_W_BF16: return n * k * 2;
    case TD_W_FP8: return n * k + ((n + 127) / 128) * ((k + 127) / 128);
    case TD_W_FP4: return n * k / 2 + n * (k / 32);
    }
    return 0;
}

void td_v4_gemm_q(td_v4_model *m, const td_weight *w, const uint8_t *q, const int8_t *e,
                  int rows, float *y, int ldy)
{
    m->weight_bytes += weight_bytes(w);
    td_gemm_q(m->pool, w, q, e, rows, y, ldy);
}

void td_v4_gemm_f(td_v4_model *m, const td_weight *w, const float *x, int rows,
                  float *y, int ldy)
{
    m->weight_bytes += weight_bytes(w);
    td_gemm_f(m->pool, w, x, rows, y, ldy);
}

uint64_t td_v4_model_weight_bytes(const td_v4_model *m)
{
    return m->weight_bytes;
}

void td_v4_linear(td_v4_model *m, const td_weight *w, const float *x, int rows,
                  float *y, int ldy, int round_bf16)
{
    if (w->type == TD_W_FP8 || w->type == TD_W_FP4) {
        td_act_quant_fp8(x, rows, w->k, m->xq, m->xe);
        td_v4_gemm_q(m, w, m->xq, m->xe, rows, y, ldy);
    } else {
        td_v4_gemm_f(m, w, x, rows, y, ldy);
    }
    if (round_bf16)
        for (int r = 0; r < rows; r++)
            td_bf16_round_n(y + (size_t)r * ldy, (size_t)w->n);
}
