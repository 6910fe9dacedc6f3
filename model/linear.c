/* y = W x over rows, taking the activation path the weight's format needs:
 * FP8/FP4 weights quantise the input to FP8 in blocks of 128 first (the
 * quantisation-aware numerics V4 was trained with); bf16/fp32 weights see
 * the input as is. */
#include "model/internal.h"

void td_v4_linear(td_v4_model *m, const td_weight *w, const float *x, int rows,
                  float *y, int ldy, int round_bf16)
{
    if (w->type == TD_W_FP8 || w->type == TD_W_FP4) {
        td_act_quant_fp8(x, rows, w->k, m->xq, m->xe);
        td_gemm_q(m->pool, w, m->xq, m->xe, rows, y, ldy);
    } else {
        td_gemm_f(m->pool, w, x, rows, y, ldy);
    }
    if (round_bf16)
        for (int r = 0; r < rows; r++)
            td_bf16_round_n(y + (size_t)r * ldy, (size_t)w->n);
}
