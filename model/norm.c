/* RMS normalisation (docs/numerics.md: fp64 sum of squares, one rounding). */
#include <math.h>

#include "model/internal.h"

float td_v4_rms_inv(const float *x, int n, float eps)
{
    double ss = 0.0;
    for (int i = 0; i < n; i++)
        ss += (double)x[i] * (double)x[i];
    return (float)(1.0 / sqrt(ss / n + (double)eps));
}

void td_v4_rmsnorm(const float *x, const uint16_t *w, int n, float eps, float *y)
{
    float r = td_v4_rms_inv(x, n, eps);
    for (int i = 0; i < n; i++) {
        float v = x[i] * r;
        y[i] = td_bf16_round(v * td_bf16_to_f32(w[i]));
    }
}
