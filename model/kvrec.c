/* The stored KV formats (docs/kv-layout.md, spec §3.2).
 *
 * Main entry (window slot or compressed entry), head_dim = nope + rope dims:
 *   [nope bytes: e4m3 codes][rope*2 bytes: bf16, little-endian]
 *   [nope/64 bytes: E8M0 scale per 64 nope dims][zero pad to a multiple of 8]
 * For V4-Flash that is 448 + 128 + 7 + 1 = 584 bytes, the record FlashMLA,
 * vLLM and SGLang use. Indexer key, dI dims:
 *   [dI/2 bytes: e2m1 pairs, low nibble = even dim][dI/32 bytes: E8M0]
 * = 68 bytes for dI = 128.
 *
 * Encoding quantises: it is the FP8/FP4 "simulation" of the official code
 * done once, keeping the codes. The row is overwritten with the values the
 * record decodes to, so the token's own attention sees exactly what later
 * tokens will read back.
 */
#include <math.h>
#include <string.h>

#include "model/internal.h"

static inline float pow2f(int e)
{
    return ldexpf(1.0f, e);
}

void td_v4_kvrec_encode(const td_v4_model *m, float *row, uint8_t *rec)
{
    int nope = m->nope, rd = m->c.rope_dim;
    uint8_t *scales = rec + nope + 2 * rd;
    for (int b = 0; b < nope / 64; b++) {
        float *x = row + b * 64;
        float amax = 0.0f;
        for (int i = 0; i < 64; i++)
            amax = fmaxf(amax, fabsf(x[i]));
        amax = fmaxf(amax, 1e-4f);
        int e = td_pow2_scale_exp(amax, 448.0f);
        float inv = pow2f(-e), s = pow2f(e);
        for (int i = 0; i < 64; i++) {
            float v = fminf(fmaxf(x[i] * inv, -448.0f), 448.0f);
            uint8_t q = td_f32_to_e4m3(v);
            rec[b * 64 + i] = q;
            x[i] = td_bf16_round(m->e4m3_lut[q] * s);
        }
        scales[b] = (uint8_t)(e + 127);
    }
    for (int i = 0; i < rd; i++) {
        uint16_t h = td_f32_to_bf16(row[nope + i]);
        rec[nope + 2 * i] = (uint8_t)(h & 0xff);
        rec[nope + 2 * i + 1] = (uint8_t)(h >> 8);
    }
    int used = nope + 2 * rd + nope / 64;
    memset(rec + used, 0, (size_t)(m->rec - used));
}

void td_v4_kvrec_decode(const td_v4_model *m, const uint8_t *rec, float *row)
{
    int nope = m->nope, rd = m->c.rope_dim;
    const uint8_t *scales = rec + nope + 2 * rd;
    for (int b = 0; b < nope / 64; b++) {
        float s = pow2f((int)scales[b] - 127);
        for (int i = 0; i < 64; i++)
            row[b * 64 + i] = m->e4m3_lut[rec[b * 64 + i]] * s;
    }
    for (int i = 0; i < rd; i++) {
        uint16_t h = (uint16_t)(rec[nope + 2 * i] | (rec[nope + 2 * i + 1] << 8));
        row[nope + i] = td_bf16_to_f32(h);
    }
}

void td_v4_ikey_encode(const td_v4_model *m, float *row, uint8_t *rec)
{
    int d = m->c.index_head_dim;
    uint8_t *scales = rec + d / 2;
    memset(rec, 0, (size_t)(d / 2));
    for (int b = 0; b < d / 32; b++) {
        float *x = row + b * 32;
        float amax = 0.0f;
        for (int i = 0; i < 32; i++)
            amax = fmaxf(amax, fabsf(x[i]));
        amax = fmaxf(amax, 6.0f * 0x1p-126f);
        int e = td_pow2_scale_exp(amax, 6.0f);
        float inv = pow2f(-e), s = pow2f(e);
        for (int i = 0; i < 32; i++) {
            float v = fminf(fmaxf(x[i] * inv, -6.0f), 6.0f);
            uint8_t q = td_f32_to_e2m1(v);
            int k = b * 32 + i;
            rec[k / 2] |= (uint8_t)(q << ((k & 1) * 4));
            x[i] = td_bf16_round(td_e2m1_to_f32(q) * s);
        }
        scales[b] = (uint8_t)(e + 127);
    }
}

void td_v4_ikey_decode(const td_v4_model *m, const uint8_t *rec, float *row)
{
    int d = m->c.index_head_dim;
    const uint8_t *scales = rec + d / 2;
    for (int k = 0; k < d; k++) {
        uint8_t q = (uint8_t)((rec[k / 2] >> ((k & 1) * 4)) & 0xf);
        row[k] = td_e2m1_to_f32(q) * pow2f((int)scales[k / 32] - 127);
    }
}

/* Sylvester-ordered Walsh-Hadamard transform scaled by n^-1/2, as
 * fast_hadamard_transform computes it; the butterflies run in fp64, where
 * sums of bf16 values are exact, and each output is rounded once. */
void td_v4_hadamard(float *x, int n)
{
    double buf[1024];
    for (int i = 0; i < n; i++)
        buf[i] = x[i];
    for (int h = 1; h < n; h *= 2)
        for (int i = 0; i < n; i += 2 * h)
            for (int j = i; j < i + h; j++) {
                double a = buf[j], b = buf[j + h];
                buf[j] = a + b;
                buf[j + h] = a - b;
            }
    double scale = pow((double)n, -0.5);
    for (int i = 0; i < n; i++)
        x[i] = td_bf16_round((float)(buf[i] * scale));
}
