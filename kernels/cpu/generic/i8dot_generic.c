/* Scalar reference of td_i8_dot32 (kernels.h). */
#include "kernels/kernels_impl.h"

void td_i8_dot32_generic(const int8_t *q, int nq, const int8_t *k, int d, int32_t *out)
{
    int nb = d / 32;
    for (int h = 0; h < nq; h++)
        for (int b = 0; b < nb; b++) {
            int32_t acc = 0;
            for (int i = 0; i < 32; i++)
                acc += (int32_t)q[(size_t)h * d + b * 32 + i] * (int32_t)k[b * 32 + i];
            out[h * nb + b] = acc;
        }
}
