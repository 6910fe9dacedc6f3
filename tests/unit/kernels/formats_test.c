/* Number formats, pow2 scales and activation quantisation against
 * independent, brute-force formulations of docs/numerics.md. */
#include <stdint.h>

#include "kernels/kernels.h"
#include "tests/td_test.h"

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float rnd_unit(void) { return (float)(rnd() & 0xffffff) / 16777216.0f * 2.0f - 1.0f; }

/* Brute force: nearest of the 127 finite e4m3 magnitudes, ties to the even
 * code (even mantissa), saturating at 448. */
static uint8_t e4m3_ref(float f)
{
    double a = fabs((double)f);
    int best = 0;
    for (int c = 1; c <= 0x7e; c++) {
        double dc = fabs((double)td_e4m3_to_f32((uint8_t)c) - a);
        double db = fabs((double)td_e4m3_to_f32((uint8_t)best) - a);
        if (dc < db || (dc == db && (c & 1) == 0))
            best = c;
    }
    return (uint8_t)((f2u(f) >> 24 & 0x80) | best);
}

static uint8_t e2m1_ref(float f)
{
    double a = fabs((double)f);
    int best = 0;
    for (int c = 1; c < 8; c++) {
        double dc = fabs((double)td_e2m1_to_f32((uint8_t)c) - a);
        double db = fabs((double)td_e2m1_to_f32((uint8_t)best) - a);
        if (dc < db || (dc == db && (c & 1) == 0))
            best = c;
    }
    return (uint8_t)((f2u(f) >> 28 & 8) | best);
}

/* e = ceil(log2(f32(amax * f32(1/fmax)))) via frexp. */
static int pow2_ref(float amax, float fmax)
{
    float y = amax * (1.0f / fmax);
    int ex;
    float fr = frexpf(y, &ex);           /* y = fr * 2^ex, fr in [0.5, 1) */
    return fr == 0.5f ? ex - 1 : ex;
}

static void e4m3_all_codes_round_trip(void)
{
    for (int b = 0; b < 256; b++) {
        float v = td_e4m3_to_f32((uint8_t)b);
        if ((b & 0x7f) == 0x7f) {
            TD_CHECK(isnan(v));
            continue;
        }
        TD_CHECK_EQ_INT(td_f32_to_e4m3(v), b);
        TD_CHECK_EQ_INT(e4m3_ref(v), b);
    }
    TD_CHECK(td_e4m3_to_f32(0x7e) == 448.0f);
    TD_CHECK(td_e4m3_to_f32(0xfe) == -448.0f);
    TD_CHECK(td_e4m3_to_f32(0x38) == 1.0f);
    TD_CHECK(td_e4m3_to_f32(0x01) == ldexpf(1, -9));
    TD_CHECK(td_e4m3_to_f32(0x07) == ldexpf(7, -9));
    TD_CHECK(td_e4m3_to_f32(0x08) == ldexpf(1, -6));
    TD_CHECK(td_e4m3_to_f32(0x0f) == ldexpf(15, -9));
    TD_CHECK((td_f32_to_e4m3(NAN) & 0x7f) == 0x7f);
}

static void e4m3_rne_ties_and_subnormals(void)
{
    for (int c = 0; c < 0x7e; c++) {
        float lo = td_e4m3_to_f32((uint8_t)c), hi = td_e4m3_to_f32((uint8_t)(c + 1));
        float mid = 0.5f * (lo + hi);                 /* exact in fp32 */
        int even = (c & 1) ? c + 1 : c;
        TD_CHECK_EQ_INT(td_f32_to_e4m3(mid), even);
        TD_CHECK_EQ_INT(td_f32_to_e4m3(-mid), even | 0x80);
        TD_CHECK_EQ_INT(td_f32_to_e4m3(nextafterf(mid, 0)), c);
        TD_CHECK_EQ_INT(td_f32_to_e4m3(nextafterf(mid, 1000)), c + 1);
    }
    TD_CHECK_EQ_INT(td_f32_to_e4m3(ldexpf(1, -10)), 0x00);      /* tie 0 | 2^-9 */
    TD_CHECK_EQ_INT(td_f32_to_e4m3(ldexpf(3, -10)), 0x02);      /* tie 1 | 2 */
    TD_CHECK_EQ_INT(td_f32_to_e4m3(ldexpf(1, -20)), 0x00);
    TD_CHECK_EQ_INT(td_f32_to_e4m3(-ldexpf(1, -20)), 0x80);
    TD_CHECK_EQ_INT(td_f32_to_e4m3(ldexpf(15.5f, -9)), 0x10);   /* tie 0x0f | 0x08<<1 */
    TD_CHECK_EQ_INT(td_f32_to_e4m3(450.0f), 0x7e);              /* saturates */
    TD_CHECK_EQ_INT(td_f32_to_e4m3(1e30f), 0x7e);
    TD_CHECK_EQ_INT(td_f32_to_e4m3(-1e30f), 0xfe);
    for (int i = 0; i < 200000; i++) {
        float v = ldexpf(rnd_unit(), (int)(rnd() % 30) - 20);
        if (fabsf(v) > 448.0f)
            continue;
        uint8_t a = td_f32_to_e4m3(v), b = e4m3_ref(v);
        if (a != b) {
            fprintf(stderr, "e4m3(%a) = %02x, expected %02x\n", (double)v, a, b);
            TD_CHECK(a == b);
            break;
        }
    }
}

static void e2m1_codes_and_ties(void)
{
    for (int b = 0; b < 16; b++) {
        TD_CHECK_EQ_INT(td_f32_to_e2m1(td_e2m1_to_f32((uint8_t)b)), b);
        TD_CHECK_EQ_INT(e2m1_ref(td_e2m1_to_f32((uint8_t)b)), b);
    }
    const float mags[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
    for (int c = 0; c < 8; c++)
        TD_CHECK(td_e2m1_to_f32((uint8_t)c) == mags[c] && td_e2m1_to_f32((uint8_t)(c | 8)) == -mags[c]);
    static const struct { float v; int code; } ties[] = {
        {0.25f, 0}, {0.75f, 2}, {1.25f, 2}, {1.75f, 4}, {2.5f, 4}, {3.5f, 6}, {5.0f, 6},
        {0.2f, 0}, {0.3f, 1}, {5.1f, 7}, {6.0f, 7}, {7.0f, 7},
    };
    for (size_t i = 0; i < sizeof ties / sizeof ties[0]; i++) {
        TD_CHECK_EQ_INT(td_f32_to_e2m1(ties[i].v), ties[i].code);
        TD_CHECK_EQ_INT(td_f32_to_e2m1(-ties[i].v), ties[i].code | 8);
    }
    for (int i = 0; i < 100000; i++) {
        float v = rnd_unit() * 6.0f;
        TD_CHECK(td_f32_to_e2m1(v) == e2m1_ref(v));
    }
}

static void bf16_rne_and_nan(void)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = td_bf16_to_f32((uint16_t)h);
        TD_CHECK(f2u(f) == h << 16);
        if (isnan(f))
            TD_CHECK(isnan(td_bf16_to_f32(td_f32_to_bf16(f))));
        else
            TD_CHECK_EQ_INT(td_f32_to_bf16(f), h);
    }
    TD_CHECK_EQ_INT(td_f32_to_bf16(u2f(0x3f808000)), 0x3f80);   /* tie -> even */
    TD_CHECK_EQ_INT(td_f32_to_bf16(u2f(0x3f818000)), 0x3f82);   /* tie -> even */
    TD_CHECK_EQ_INT(td_f32_to_bf16(u2f(0x3f808001)), 0x3f81);
    TD_CHECK_EQ_INT(td_f32_to_bf16(u2f(0x3f807fff)), 0x3f80);
    TD_CHECK_EQ_INT(td_f32_to_bf16(u2f(0xbf818000)), 0xbf82);
    TD_CHECK_EQ_INT(td_f32_to_bf16(u2f(0x00008000)), 0x0000);   /* subnormal tie */
    TD_CHECK_EQ_INT(td_f32_to_bf16(u2f(0x00018000)), 0x0002);
    TD_CHECK_EQ_INT(td_f32_to_bf16(u2f(0x7f7fffff)), 0x7f80);   /* rounds to inf */
    TD_CHECK_EQ_INT(td_f32_to_bf16(INFINITY), 0x7f80);
    TD_CHECK(isnan(td_bf16_to_f32(td_f32_to_bf16(u2f(0x7f800001)))));  /* not inf */
    TD_CHECK(isnan(td_bf16_to_f32(td_f32_to_bf16(u2f(0xff800001)))));
    float v[3] = {1.0f, u2f(0x3f818000), -2.5f};
    td_bf16_round_n(v, 3);
    TD_CHECK(v[0] == 1.0f && f2u(v[1]) == 0x3f820000u && v[2] == -2.5f);
}

static void pow2_scale_edges(void)
{
    TD_CHECK_EQ_INT(f2u(1.0f / 448.0f), 0x3b124925);
    TD_CHECK_EQ_INT(f2u(1.0f / 6.0f), 0x3e2aaaab);
    for (int k = -30; k <= 30; k++) {
        float a = ldexpf(448.0f, k);
        TD_CHECK_EQ_INT(td_pow2_scale_exp(a, 448.0f), pow2_ref(a, 448.0f));
        TD_CHECK_EQ_INT(td_pow2_scale_exp(nextafterf(a, 0), 448.0f), pow2_ref(nextafterf(a, 0), 448.0f));
        TD_CHECK_EQ_INT(td_pow2_scale_exp(nextafterf(a, 1e30f), 448.0f), pow2_ref(nextafterf(a, 1e30f), 448.0f));
        float b = ldexpf(6.0f, k);
        TD_CHECK_EQ_INT(td_pow2_scale_exp(b, 6.0f), pow2_ref(b, 6.0f));
    }
    /* 448 * f32(1/448) rounds to exactly 1 in fp32: the scale is 1, and the
     * clamp is what keeps x/s <= 448. */
    TD_CHECK_EQ_INT(td_pow2_scale_exp(448.0f, 448.0f), pow2_ref(448.0f, 448.0f));
    TD_CHECK_EQ_INT(td_pow2_scale_exp(1e-4f, 448.0f), -22);
    TD_CHECK_EQ_INT(td_pow2_scale_exp(ldexpf(6, -126), 6.0f), -126);
    TD_CHECK_EQ_INT(td_pow2_scale_exp(6.0f, 6.0f), 0);
    TD_CHECK_EQ_INT(td_pow2_scale_exp(6.5f, 6.0f), 1);
    for (int i = 0; i < 100000; i++) {
        float a = ldexpf(fabsf(rnd_unit()) + 1e-3f, (int)(rnd() % 80) - 40);
        TD_CHECK_EQ_INT(td_pow2_scale_exp(a, 448.0f), pow2_ref(a, 448.0f));
        TD_CHECK_EQ_INT(td_pow2_scale_exp(a, 6.0f), pow2_ref(a, 6.0f));
    }
}

/* Random rows with a different magnitude per block, some exact powers of two
 * times 448 (the clamp case), some all-zero (the amax floor). */
static void fill_blocks(float *x, int n, int block)
{
    for (int b = 0; b < n; b += block) {
        int kind = (int)(rnd() % 6);
        float mag = ldexpf(1.0f, (int)(rnd() % 40) - 25);
        for (int i = 0; i < block; i++)
            x[b + i] = kind == 0 ? 0.0f : rnd_unit() * mag;
        if (kind == 1)
            x[b + (int)(rnd() % block)] = ldexpf(448.0f, (int)(rnd() % 20) - 10);
        if (kind == 2)
            x[b + (int)(rnd() % block)] = -ldexpf(6.0f, (int)(rnd() % 20) - 10);
        if (kind == 3)
            x[b] = 1e-5f;
    }
}

static void act_quant_matches_formula(void)
{
    enum { M = 5, K = 1024 };
    static float x[M * K];
    static uint8_t q[M * K];
    static int8_t e[M * K / 128];
    for (int rep = 0; rep < 20; rep++) {
        fill_blocks(x, M * K, 128);
        td_act_quant_fp8(x, M, K, q, e);
        for (int m = 0; m < M; m++) {
            for (int b = 0; b < K / 128; b++) {
                const float *xb = x + m * K + b * 128;
                float amax = 0;
                for (int i = 0; i < 128; i++)
                    amax = fabsf(xb[i]) > amax ? fabsf(xb[i]) : amax;
                if (amax < 1e-4f)
                    amax = 1e-4f;
                int ex = pow2_ref(amax, 448.0f);
                TD_CHECK_EQ_INT(e[m * (K / 128) + b], ex);
                for (int i = 0; i < 128; i++) {
                    float v = xb[i] / ldexpf(1, ex);
                    v = v > 448 ? 448 : (v < -448 ? -448 : v);
                    if (q[m * K + b * 128 + i] != e4m3_ref(v)) {
                        TD_CHECK(q[m * K + b * 128 + i] == e4m3_ref(v));
                        return;
                    }
                }
            }
        }
    }
    /* All-zero block: floor amax 1e-4 -> e = -22, codes 0. */
    memset(x, 0, sizeof x);
    td_act_quant_fp8(x, 1, 128, q, e);
    TD_CHECK_EQ_INT(e[0], -22);
    TD_CHECK_EQ_INT(q[0], 0);
}

static void fake_quant_matches_formula(void)
{
    static float x[4096], y[4096];
    for (int rep = 0; rep < 10; rep++) {
        int block = rep & 1 ? 64 : 128;
        fill_blocks(x, 4096, block);
        memcpy(y, x, sizeof x);
        td_fake_fp8(y, 4096, block);
        for (int b = 0; b < 4096; b += block) {
            float amax = 1e-4f;
            for (int i = 0; i < block; i++)
                amax = fabsf(x[b + i]) > amax ? fabsf(x[b + i]) : amax;
            float s = ldexpf(1, pow2_ref(amax, 448.0f));
            for (int i = 0; i < block; i++) {
                float v = x[b + i] / s;
                v = v > 448 ? 448 : (v < -448 ? -448 : v);
                float want = td_bf16_round(td_e4m3_to_f32(e4m3_ref(v)) * s);
                TD_CHECK(f2u(y[b + i]) == f2u(want));
            }
        }
        fill_blocks(x, 4096, 32);
        memcpy(y, x, sizeof x);
        td_fake_fp4(y, 4096);
        for (int b = 0; b < 4096; b += 32) {
            float amax = ldexpf(6, -126);
            for (int i = 0; i < 32; i++)
                amax = fabsf(x[b + i]) > amax ? fabsf(x[b + i]) : amax;
            float s = ldexpf(1, pow2_ref(amax, 6.0f));
            for (int i = 0; i < 32; i++) {
                float v = x[b + i] / s;
                v = v > 6 ? 6 : (v < -6 ? -6 : v);
                float want = td_bf16_round(td_e2m1_to_f32(e2m1_ref(v)) * s);
                TD_CHECK(f2u(y[b + i]) == f2u(want));
            }
        }
    }
    /* Fake FP8 is idempotent, and its outputs are bf16 values. */
    fill_blocks(x, 4096, 64);
    td_fake_fp8(x, 4096, 64);
    memcpy(y, x, sizeof x);
    td_fake_fp8(y, 4096, 64);
    TD_CHECK(memcmp(x, y, sizeof x) == 0);
    for (int i = 0; i < 4096; i++)
        TD_CHECK((f2u(x[i]) & 0xffff) == 0);
}

TD_TEST_MAIN({"e4m3_all_codes_round_trip", e4m3_all_codes_round_trip},
             {"e4m3_rne_ties_and_subnormals", e4m3_rne_ties_and_subnormals},
             {"e2m1_codes_and_ties", e2m1_codes_and_ties},
             {"bf16_rne_and_nan", bf16_rne_and_nan},
             {"pow2_scale_edges", pow2_scale_edges},
             {"act_quant_matches_formula", act_quant_matches_formula},
             {"fake_quant_matches_formula", fake_quant_matches_formula})
