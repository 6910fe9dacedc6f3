/* Rotary embedding on the trailing rope_dim dims of a vector, interleaved
 * pairs (x[2i], x[2i+1]) rotated as complex numbers (spec §2.5). Window-only
 * layers use rope_theta without YaRN; CSA/HCA layers use
 * compress_rope_theta with YaRN and no attention-temperature factor. */
#include <math.h>

#include "model/internal.h"

static double yarn_dim(double n, int rd, double orig, double base)
{
    return rd * log(orig / (n * 2.0 * M_PI)) / (2.0 * log(base));
}

void td_v4_rope_freqs(const td_v4_config *c, int yarn, float *freq)
{
    int rd = c->rope_dim, half = rd / 2;
    double base = yarn ? c->compress_rope_theta : c->rope_theta;
    double low = 0, high = 0;
    if (yarn) {
        low = fmax(floor(yarn_dim(c->beta_fast, rd, c->original_seq_len, base)), 0.0);
        high = fmin(ceil(yarn_dim(c->beta_slow, rd, c->original_seq_len, base)), rd - 1);
        if (low == high)
            high += 0.001;
    }
    for (int i = 0; i < half; i++) {
        double f = 1.0 / pow(base, (double)(2 * i) / rd);
        if (yarn) {
            double ramp = fmin(fmax((i - low) / (high - low), 0.0), 1.0);
            f = f / c->rope_factor * ramp + f * (1.0 - ramp);
        }
        freq[i] = (float)f;
    }
}

void td_v4_rope(float *x, int rd, const float *freq, int64_t pos, int inverse)
{
    float p = (float)pos;
    for (int i = 0; i < rd / 2; i++) {
        float theta = p * freq[i];
        float c = (float)cos((double)theta);
        float s = (float)sin((double)theta);
        if (inverse)
            s = -s;
        float a = x[2 * i], b = x[2 * i + 1];
        x[2 * i] = td_bf16_round(a * c - b * s);
        x[2 * i + 1] = td_bf16_round(a * s + b * c);
    }
}
