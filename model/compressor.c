/* The compressor (spec §2.7): token-level gated pooling of R tokens into one
 * KV entry, per channel a softmax over the tokens' gate logits.
 *
 * Tail state, fp32 as the official code keeps it, rows of width c*d:
 *   - non-overlapping (HCA): slots 0..R-1 hold the current block's tokens;
 *   - overlapping (CSA, R = 4, c = 2): slots 0..R-1 hold the previous complete
 *     block (only its A halves are read), slots R..2R-1 the current block
 *     (only its B halves are read). So an entry pools 2R candidates per
 *     channel, 8 tokens with stride 4.
 * Fresh state is kv 0 / score -inf: block -1 of the first entry is absent.
 */
#include <math.h>
#include <string.h>

#include "model/internal.h"

/* Pools n candidates of one channel: values a[i*stride], gates z[i*stride]. */
static float pool_channel(const float *a, const float *z, int n, int stride)
{
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        mx = fmaxf(mx, z[i * stride]);
    float e[256];
    double zsum = 0.0;
    for (int i = 0; i < n; i++) {
        e[i] = (float)exp((double)(z[i * stride] - mx));
        zsum += e[i];
    }
    float zf = (float)zsum;
    double acc = 0.0;
    for (int i = 0; i < n; i++) {
        float p = e[i] / zf;
        acc += (double)p * (double)a[i * stride];
    }
    return (float)acc;
}

int td_v4_compress_step(const td_v4_model *m, const td_v4_compressor *cw,
                        float *kvst, float *scst, const float *a, const float *z,
                        int64_t pos, float *entry)
{
    (void)m;
    int R = cw->ratio, d = cw->d;
    int width = cw->overlap ? 2 * d : d;
    int phase = (int)(pos % R);
    int slot = cw->overlap ? R + phase : phase;
    const float *ape = cw->ape + (size_t)phase * width;
    float *kv = kvst + (size_t)slot * width, *sc = scst + (size_t)slot * width;
    for (int i = 0; i < width; i++) {
        kv[i] = a[i];
        sc[i] = z[i] + ape[i];
    }
    if (phase != R - 1)
        return 0;
    if (cw->overlap) {
        /* Candidates per channel e: A halves (column e) of slots 0..R-1,
         * then B halves (column d+e) of slots R..2R-1. */
        float ca[256], cz[256];
        for (int e = 0; e < d; e++) {
            for (int i = 0; i < R; i++) {
                ca[i] = kvst[(size_t)i * width + e];
                cz[i] = scst[(size_t)i * width + e];
                ca[R + i] = kvst[(size_t)(R + i) * width + d + e];
                cz[R + i] = scst[(size_t)(R + i) * width + d + e];
            }
            entry[e] = td_bf16_round(pool_channel(ca, cz, 2 * R, 1));
        }
        memcpy(kvst, kvst + (size_t)R * width, sizeof(float) * (size_t)R * width);
        memcpy(scst, scst + (size_t)R * width, sizeof(float) * (size_t)R * width);
    } else {
        for (int e = 0; e < d; e++)
            entry[e] = td_bf16_round(pool_channel(kvst + e, scst + e, R, width));
    }
    return 1;
}
