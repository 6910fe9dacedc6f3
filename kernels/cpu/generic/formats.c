/* Scalar number formats and the activation quantisation of
 * docs/numerics.md: bf16, FP8 e4m3fn, FP4 e2m1, power-of-two block scales.
 * These are the reference definitions; the SIMD GEMMs only ever consume the
 * codes produced here. */
#include <math.h>
#include <string.h>

#include "kernels/kernels_impl.h"

double td_e4m3_f64[256];
double td_e2m1_f64[16];

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* Fills the fp64 decode tables before main(): the scalar GEMM may run
 * without td_kernels_init(). */
__attribute__((constructor)) static void td_formats_tables_init(void)
{
    for (int b = 0; b < 256; b++)
        td_e4m3_f64[b] = (double)td_e4m3_to_f32((uint8_t)b);
    for (int b = 0; b < 16; b++)
        td_e2m1_f64[b] = (double)td_e2m1_to_f32((uint8_t)b);
}

/* td_bf16_to_f32 and td_f32_to_bf16 are inline in kernels.h. */

void td_bf16_round_n(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = td_bf16_round(x[i]);
}

float td_e4m3_to_f32(uint8_t b)
{
    int exp = (b >> 3) & 15, man = b & 7;
    float v;
    if ((b & 0x7f) == 0x7f)
        v = NAN;
    else if (exp == 0)
        v = ldexpf((float)man, -9);                 /* subnormal 2^-9 * m */
    else
        v = ldexpf((float)(8 + man), exp - 10);     /* 1.m * 2^(exp-7) */
    return (b & 0x80) ? -v : v;
}

/* RNE to the e4m3 grid. Magnitudes above 448 saturate to 448 (the callers
 * clamp first, as the spec does); NaN gives 0x7f with the sign. */
uint8_t td_f32_to_e4m3(float f)
{
    uint32_t u = f2u(f);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return sign | 0x7f;
    if (a < 0x3c800000u) {                          /* |f| < 2^-6: subnormal grid */
        float m = nearbyintf(u2f(a) * 512.0f);      /* exact scaling, RNE */
        return sign | (uint8_t)m;                   /* m == 8 is code 0x08 = 2^-6 */
    }
    if (a >= 0x43e00000u)                           /* >= 448 */
        return sign | 0x7e;
    uint32_t exp = (a >> 23) - 127 + 7;             /* 1..15 */
    uint32_t man = a & 0x7fffffu;
    uint32_t r = man >> 20, rem = man & 0xfffffu;
    if (rem > 0x80000u || (rem == 0x80000u && (r & 1)))
        r++;                                        /* carry bumps the exponent */
    uint32_t code = (exp << 3) + r;
    if (code > 0x7e)
        code = 0x7e;
    return sign | (uint8_t)code;
}

static const float td_e2m1_mag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};

float td_e2m1_to_f32(uint8_t nibble)
{
    float v = td_e2m1_mag[nibble & 7];
    return (nibble & 8) ? -v : v;
}

/* Nearest grid point; a tie goes to the even code (even mantissa bit).
 * Magnitudes above 6 saturate; NaN gives 0 (never produced by the callers). */
uint8_t td_f32_to_e2m1(float f)
{
    uint8_t sign = (f2u(f) >> 28) & 8;
    float a = fabsf(f);
    uint8_t c = 0;
    if (!(a == a))
        return sign;
    for (c = 0; c < 7; c++) {
        float mid = 0.5f * (td_e2m1_mag[c] + td_e2m1_mag[c + 1]);  /* exact */
        if (a < mid || (a == mid && (c & 1) == 0))
            break;
    }
    return sign | c;
}

int td_pow2_scale_exp(float amax, float fmax)
{
    float inv = 1.0f / fmax;             /* 1/448 = 0x3B124925, 1/6 = 0x3E2AAAAB */
    uint32_t y = f2u(amax * inv);
    return (int)((y >> 23) & 0xff) - 127 + ((y & 0x7fffffu) != 0);
}

static float block_amax(const float *x, int n)
{
    float amax = 0.0f;
    for (int i = 0; i < n; i++)
        amax = fmaxf(amax, fabsf(x[i]));
    return amax;
}

/* Scale exponent of one FP8 block, kept within int8 (only an infinite input
 * could exceed 127). */
static int fp8_block_exp(const float *x, int n)
{
    int e = td_pow2_scale_exp(fmaxf(block_amax(x, n), 1e-4f), 448.0f);
    return e > 127 ? 127 : e;
}

static inline float clampf(float v, float lim)
{
    return v > lim ? lim : (v < -lim ? -lim : v);
}

void td_act_quant_fp8(const float *x, int M, int K, uint8_t *q, int8_t *e)
{
    int nb = K / 128;
    for (int m = 0; m < M; m++) {
        for (int b = 0; b < nb; b++) {
            const float *xb = x + (size_t)m * K + (size_t)b * 128; /* [128] */
            uint8_t *qb = q + (size_t)m * K + (size_t)b * 128;
            int ex = fp8_block_exp(xb, 128);
            float s = ldexpf(1.0f, ex);
            for (int i = 0; i < 128; i++)
                qb[i] = td_f32_to_e4m3(clampf(xb[i] / s, 448.0f));
            e[(size_t)m * nb + b] = (int8_t)ex;
        }
    }
}

void td_fake_fp8(float *x, int n, int block)
{
    for (int b = 0; b < n; b += block) {
        float *xb = x + b;                                         /* [block] */
        float s = ldexpf(1.0f, fp8_block_exp(xb, block));
        for (int i = 0; i < block; i++) {
            float qv = td_e4m3_to_f32(td_f32_to_e4m3(clampf(xb[i] / s, 448.0f)));
            xb[i] = td_bf16_round(qv * s);
        }
    }
}

void td_fake_fp4(float *x, int n)
{
    const float floor_amax = ldexpf(6.0f, -126);
    for (int b = 0; b < n; b += 32) {
        float *xb = x + b;                                         /* [32] */
        float amax = fmaxf(block_amax(xb, 32), floor_amax);
        float s = ldexpf(1.0f, td_pow2_scale_exp(amax, 6.0f));
        for (int i = 0; i < 32; i++) {
            float qv = td_e2m1_to_f32(td_f32_to_e2m1(clampf(xb[i] / s, 6.0f)));
            xb[i] = td_bf16_round(qv * s);
        }
    }
}
