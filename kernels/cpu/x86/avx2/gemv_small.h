/* Decode-sized GEMMs (M = 1..8 input rows), shared by the AVX2 and AVX-512
 * files (both compile it with their own -m flags; everything here is static).
 *
 * Decode streams every weight once per step, so these loops aim at the
 * memory bandwidth: weights are decoded in registers and FMA'd directly
 * against an fp64 copy of the input that is made once per call and lives in
 * L1/L2 (no per-block store/reload of decoded weights), R weight rows share
 * each input load, and every (input row, weight row) pair keeps its own
 * accumulators, reduced once per scale block (FP8: 128, FP4: 32) or once
 * per row (F32/BF16).
 *
 * Decoding builds the fp64 bit pattern with byte shuffles instead of
 * converting (vcvtph2ps + vcvtps2pd cost 4 uops per 4 weights on Zen 3):
 *  - e4m3 byte b -> fp64 bits (b & 0x7f) << 49 | (b & 0x80) << 56, which is
 *    the weight times 2^-1016 exactly: the 4 exponent bits become the low
 *    bits of the fp64 exponent and, as in the fp16 trick, e4m3 subnormals
 *    land on fp64 subnormals with the same factor. The input carries 2^1014
 *    (448 * 2^1014 < DBL_MAX), so every product is the true product * 2^-2,
 *    a multiple of 2^-20 below 2^18: a 128-block sum is exact (< 2^43 ulps).
 *    Subnormal fp64 operands are exact only with MXCSR.DAZ clear (the
 *    default; nothing in tandem sets it).
 *  - e2m1 nibble -> the top two bytes of fp64(value * 4) from two vpshufb
 *    tables (no subnormals: 0.5 * 4 = 2 is normal).
 *  - bf16 -> fp64 bits (h & 0x7fff) << 45 | sign << 63 = value * 2^-896;
 *    the input carries 2^896 (FLT_MAX * 2^896 < DBL_MAX), so each product
 *    is exactly x * w as the canonical order requires. bf16 inf/NaN
 *    patterns are not supported (they become finite), like e4m3 NaN codes.
 * The 16-bit patterns are placed in the top of each qword by one vpshufb per
 * 4 weights. Within an FP8/FP4 block any order is exact, so the input is
 * stored permuted to the order the shuffles produce (sm_col8 / sm_col4);
 * F32/BF16 keep natural order because lane j must hold k = j (mod 8). */
#ifndef TD_GEMV_SMALL_H
#define TD_GEMV_SMALL_H

#include <string.h>

#include "kernels/kernels_impl.h"

#define SM_INLINE static inline __attribute__((always_inline))

enum {
    SM_MAXM = 8,      /* bound on M * R pairs and on M in the buffers */
    SM_XD = 8192,     /* fp64 input buffer: 64 KiB of stack, K chunked to fit */
    SM_NCH = 64,      /* weight rows per chunk (per-row accumulators kept between K chunks) */
    SM_PV = 4,        /* max accumulator vectors per row group */
};

/* ---- decoding -------------------------------------------------------------- */

#define SM_Z (char)0x80
#define SM_EMASK(m) SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, 4 * (m), 4 * (m) + 1, \
                    SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, 4 * (m) + 2, 4 * (m) + 3
#define SM_T6 0, 0, 0x10, 0x18, 0x20, 0x28, 0x30, 0x38, 0, 0, 0x10, 0x18, 0x20, 0x28, 0x30, 0x38
#define SM_T7 0, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, \
              SM_Z, (char)0xc0, (char)0xc0, (char)0xc0, (char)0xc0, (char)0xc0, (char)0xc0, (char)0xc0

/* Shuffle controls and tables. The decode loops take their address through
 * sm_consts() so that GCC folds them as memory operands (an L1 load is free
 * here) instead of pinning 7 of the 16 ymm registers and spilling the
 * accumulators. */
static const char sm_const_tab[8][32] __attribute__((aligned(32))) = {
    {SM_EMASK(0), SM_EMASK(0)}, {SM_EMASK(1), SM_EMASK(1)},
    {SM_EMASK(2), SM_EMASK(2)}, {SM_EMASK(3), SM_EMASK(3)},
    {SM_T6, SM_T6}, {SM_T7, SM_T7},
    {0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f,
     0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f},
    {SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, SM_Z,
     SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, SM_Z, SM_Z},
};
enum { SM_C_T6 = 4, SM_C_T7 = 5, SM_C_NIB = 6, SM_C_SIGN = 7 };

SM_INLINE const __m256i *sm_consts(void)
{
    const __m256i *c = (const __m256i *)sm_const_tab;
    __asm__("" : "+r"(c));   /* opaque: reloaded where used, not hoisted */
    return c;
}

/* 16 words in each of lo, hi (8 per lane) -> 8 vectors of 4 fp64 patterns:
 * control m moves words 2m, 2m+1 of each lane to the top of qwords 0, 1. */
SM_INLINE void sm_expand(const __m256i *c, __m256i lo, __m256i hi, __m256d v[8])
{
    _Pragma("GCC unroll 4") for (int m = 0; m < 4; m++) {
        v[m] = _mm256_castsi256_pd(_mm256_shuffle_epi8(lo, _mm256_load_si256(c + m)));
        v[4 + m] = _mm256_castsi256_pd(_mm256_shuffle_epi8(hi, _mm256_load_si256(c + m)));
    }
}

/* 32 e4m3 -> 8 vectors (value * 2^-1016); vector i, lane t holds column
 * sm_col8(4 i + t). Byte 6 of the qword is b + b (7 bits, shifted), byte 7
 * the sign. */
SM_INLINE void sm_fp8x32(const uint8_t *p, __m256d v[8])
{
    const __m256i *c = sm_consts();
    __m256i b = _mm256_loadu_si256((const __m256i *)p);
    __m256i b6 = _mm256_add_epi8(b, b), b7 = _mm256_and_si256(b, _mm256_load_si256(c + SM_C_SIGN));
    sm_expand(c, _mm256_unpacklo_epi8(b6, b7), _mm256_unpackhi_epi8(b6, b7), v);
}

static inline int sm_col8(int p) { return (p >> 4 & 1) * 8 + (p >> 2 & 3) * 2 + (p & 1) + (p >> 1 & 1) * 16; }

/* 16 bytes = 32 e2m1 -> 8 vectors (value * 4); column sm_col4(4 i + t).
 * Lane 0 works on the low nibbles, lane 1 on the high ones. fp64(v * 4) has
 * exponent 0x400 + (e + 1): top byte 0x40 | sign (0 or 0x80 for zero),
 * next byte (e + 1) << 4 | mantissa << 3. */
SM_INLINE void sm_fp4x32(const uint8_t *p, __m256d v[8])
{
    const __m256i *c = sm_consts();
    __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    __m256i idx = _mm256_and_si256(_mm256_srlv_epi32(b, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)),
                                   _mm256_load_si256(c + SM_C_NIB));
    __m256i b6 = _mm256_shuffle_epi8(_mm256_load_si256(c + SM_C_T6), idx);
    __m256i b7 = _mm256_shuffle_epi8(_mm256_load_si256(c + SM_C_T7), idx);
    sm_expand(c, _mm256_unpacklo_epi8(b6, b7), _mm256_unpackhi_epi8(b6, b7), v);
}

static inline int sm_col4(int p) { return (p & ~3) + (p & 1) * 2 + (p >> 1 & 1); }

/* 16 bf16 -> 4 vectors (value * 2^-896) in natural order. The dword permute
 * puts words {0,1,4,5,..} in lane 0 and {2,3,6,7,..} in lane 1 so that the
 * in-lane unpacks end in order. High word: sign | bits 14..3; low word:
 * bits 2..0 at the top. */
SM_INLINE void sm_bf16x16(const uint16_t *p, __m256d v[4])
{
    __m256i w = _mm256_loadu_si256((const __m256i *)p);
    w = _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
    __m256i h = _mm256_and_si256(_mm256_srai_epi16(w, 3), _mm256_set1_epi16((short)0x8fff));
    __m256i l = _mm256_slli_epi16(w, 13), z = _mm256_setzero_si256();
    __m256i d0 = _mm256_unpacklo_epi16(l, h), d1 = _mm256_unpackhi_epi16(l, h);
    v[0] = _mm256_castsi256_pd(_mm256_unpacklo_epi32(z, d0));
    v[1] = _mm256_castsi256_pd(_mm256_unpackhi_epi32(z, d0));
    v[2] = _mm256_castsi256_pd(_mm256_unpacklo_epi32(z, d1));
    v[3] = _mm256_castsi256_pd(_mm256_unpackhi_epi32(z, d1));
}

SM_INLINE void sm_f32x16(const float *p, __m256d v[4])
{
    __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
    v[0] = _mm256_cvtps_pd(_mm256_castps256_ps128(a));
    v[1] = _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1));
    v[2] = _mm256_cvtps_pd(_mm256_castps256_ps128(b));
    v[3] = _mm256_cvtps_pd(_mm256_extractf128_ps(b, 1));
}

/* ---- reductions ------------------------------------------------------------ */

/* Lane j = sum of the lanes of a_j (exact for block sums). */
SM_INLINE __m256d sm_hsum4(__m256d a0, __m256d a1, __m256d a2, __m256d a3)
{
    __m256d s01 = _mm256_hadd_pd(a0, a1), s23 = _mm256_hadd_pd(a2, a3);
    return _mm256_add_pd(_mm256_permute2f128_pd(s01, s23, 0x20), _mm256_permute2f128_pd(s01, s23, 0x31));
}

SM_INLINE __m256d sm_pow2_lanes(__m128i e, int bias)
{
    __m128i b = _mm_add_epi32(e, _mm_set1_epi32(bias + 1023));
    return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_cvtepi32_epi64(b), 52));
}

/* The canonical tree (kernels_impl.h) on lanes 0-3 / 4-7. */
SM_INLINE float sm_reduce8(__m256d lo, __m256d hi)
{
    __m256d q = _mm256_add_pd(lo, hi);
    __m128d r = _mm_add_pd(_mm256_castpd256_pd128(q), _mm256_extractf128_pd(q, 1));
    return (float)_mm_cvtsd_f64(_mm_add_sd(r, _mm_unpackhi_pd(r, r)));
}

/* ---- FP8 / FP4 ------------------------------------------------------------- */

/* K chunk: whole 128-blocks, M rows of it fit SM_XD. */
static inline int sm_kchunk(int K, int M, int align)
{
    int kc = (SM_XD / M) & ~(align - 1);
    return kc < K ? kc : K;
}

/* One group of R weight rows (pointers wr, row numbers nn for the scales)
 * over K chunk [kc0, kc1): acc[v] lane l is pair p = 4 v + l = m * R + j. */
SM_INLINE void sm_q_group(const td_gemm_job *job, const double *xd, int ldx, int kc0, int kc1,
                          const uint8_t *const *wr, const int *nn, __m256d *acc, int M, int R, int fp4)
{
    const int K = job->w->k, nb = K / 128, sb = (K + 127) / 128, U = M * R <= 4 ? 2 : 1;
    const int blk = fp4 ? 32 : 128, P = M * R, PV = (P + 3) / 4;
    const uint8_t *S = job->w->scale;
    for (int kb = kc0; kb < kc1; kb += blk) {
        /* Pair p = m * R + j, copy u: a[p * U + u]. M * R * U <= 8 in every
         * instantiation; one flat small array is what GCC keeps in registers. */
        __m256d a[8];
        _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++)
            a[i] = _mm256_setzero_pd();
        _Pragma("GCC unroll 4") for (int g = kb; g < kb + blk; g += 32) {
            const double *x = xd + (g - kc0);
            _Pragma("GCC unroll 4") for (int j = 0; j < R; j++) {
                __m256d v[8];
                if (fp4)
                    sm_fp4x32(wr[j] + g / 2, v);
                else
                    sm_fp8x32(wr[j] + g, v);
                _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++)
                    _Pragma("GCC unroll 8") for (int m = 0; m < M; m++) {
                        int ai = (m * R + j) * U + i % U;
                        a[ai] = _mm256_fmadd_pd(v[i], _mm256_load_pd(x + (size_t)m * ldx + 4 * i), a[ai]);
                    }
            }
        }
        /* Block sums of the pairs, four to a vector, scaled per lane and
         * added in block order: one rounding per block, as the scalar loop. */
        _Pragma("GCC unroll 8") for (int pv = 0; pv < PV; pv++) {
            __m256d s[4];
            int e[4];
            _Pragma("GCC unroll 4") for (int l = 0; l < 4; l++) {
                int p = 4 * pv + l, m = p / R, j = p % R;
                if (p < P) {
                    s[l] = U == 2 ? _mm256_add_pd(a[2 * p], a[2 * p + 1]) : a[p];
                    e[l] = job->e[(size_t)m * nb + kb / 128] +
                           (fp4 ? S[(size_t)nn[j] * (K / 32) + kb / 32] : S[(size_t)(nn[j] / 128) * sb + kb / 128]);
                } else {
                    s[l] = _mm256_setzero_pd();
                    e[l] = 0;
                }
            }
            __m256d c = sm_pow2_lanes(_mm_setr_epi32(e[0], e[1], e[2], e[3]), fp4 ? -127 - 2 : -127 + 2);
            acc[pv] = _mm256_add_pd(acc[pv], _mm256_mul_pd(sm_hsum4(s[0], s[1], s[2], s[3]), c));
        }
    }
}

SM_INLINE void sm_gemm_q_impl(const td_gemm_job *job, int n0, int n1, int M, int R, int fp4)
{
    const int K = job->w->k, PV = (M * R + 3) / 4;
    const size_t row_bytes = fp4 ? (size_t)K / 2 : (size_t)K;
    const uint8_t *W = job->w->data;
    const int KC = sm_kchunk(K, M, 128), whole = KC >= K;
    double xd[SM_XD] __attribute__((aligned(64)));                 /* [M][KC] */
    __m256d racc[SM_NCH * 2];   /* [group of R rows][PV]; PV * NCH / R <= 2 * NCH */
    const double xs = fp4 ? 1.0 : td_pow2d(1014);
    for (int nc0 = n0; nc0 < n1; nc0 += SM_NCH) {
        int nc1 = nc0 + SM_NCH < n1 ? nc0 + SM_NCH : n1, ng = (nc1 - nc0 + R - 1) / R;
        for (int kc0 = 0; kc0 < K; kc0 += KC) {
            int kc1 = kc0 + KC < K ? kc0 + KC : K;
            if (!whole || nc0 == n0) {
                /* The input, permuted within each 32-group to the decode
                 * order and scaled (FP8: 2^1014); once per call when K fits. */
                for (int m = 0; m < M; m++) {
                    const uint8_t *q = job->q + (size_t)m * K + kc0;
                    double *x = xd + (size_t)m * KC;
                    for (int g = 0; g < kc1 - kc0; g += 32)
                        for (int p = 0; p < 32; p++)
                            x[g + p] = td_e4m3_f64[q[g + (fp4 ? sm_col4(p) : sm_col8(p))]] * xs;
                }
            }
            for (int gi = 0; gi < ng; gi++) {
                int n = nc0 + gi * R;
                const uint8_t *wr[4];
                int nn[4];
                _Pragma("GCC unroll 4") for (int j = 0; j < R; j++) {
                    nn[j] = n + j < nc1 ? n + j : nc1 - 1;   /* tail rows repeat the last one */
                    wr[j] = W + (size_t)nn[j] * row_bytes;
                }
                __m256d *a = racc + (size_t)gi * PV;
                if (kc0 == 0)
                    for (int v = 0; v < PV; v++)
                        a[v] = _mm256_setzero_pd();
                sm_q_group(job, xd, KC, kc0, kc1, wr, nn, a, M, R, fp4);
            }
        }
        for (int gi = 0; gi < ng; gi++) {
            double v[SM_PV * 4];
            memcpy(v, racc + (size_t)gi * PV, sizeof(__m256d) * (size_t)PV);
            for (int p = 0; p < M * R; p++) {
                int m = p / R, n = nc0 + gi * R + p % R;
                if (n < nc1)
                    job->y[(size_t)m * job->ldy + n] = (float)v[p];
            }
        }
    }
}

/* Rows per group by M: enough accumulators for FMA latency (>= 8 chains of
 * 4 cycles) without spilling 16 ymm registers. */
#define SM_Q_INST(M, R)                                                                   \
    static __attribute__((noinline)) void sm_q8_##M(const td_gemm_job *j, int n0, int n1) \
    { sm_gemm_q_impl(j, n0, n1, M, R, 0); }                                               \
    static __attribute__((noinline)) void sm_q4_##M(const td_gemm_job *j, int n0, int n1) \
    { sm_gemm_q_impl(j, n0, n1, M, R, 1); }
SM_Q_INST(1, 4) SM_Q_INST(2, 4) SM_Q_INST(3, 2) SM_Q_INST(4, 2)

/* M = 5..8 (one weight row per group, M input loads per FMA) measured no
 * faster than the blocked 2x4 tiles, whose input loads are shared by 4
 * weight rows; they stay there. */
enum { SM_MAXM_Q = 4 };

/* One function per (M, format) so each gets its own register allocation. */
static void sm_gemm_q(const td_gemm_job *job, int n0, int n1, int fp4)
{
    static void (*const fn[2][SM_MAXM_Q])(const td_gemm_job *, int, int) = {
        {sm_q8_1, sm_q8_2, sm_q8_3, sm_q8_4},
        {sm_q4_1, sm_q4_2, sm_q4_3, sm_q4_4},
    };
    fn[fp4 != 0][job->M - 1](job, n0, n1);
}

/* ---- F32 / BF16 ------------------------------------------------------------ */

/* 16 weights of a row from k (all present) or from a zero-padded copy. */
SM_INLINE void sm_w16(const void *row, int k, int left, int bf16, __m256d v[4])
{
    if (left >= 16) {
        if (bf16)
            sm_bf16x16((const uint16_t *)row + k, v);
        else
            sm_f32x16((const float *)row + k, v);
        return;
    }
    float t[16] = {0};   /* 64 bytes: room for 16 bf16 or 16 floats */
    memcpy(t, (const char *)row + (size_t)k * (bf16 ? 2 : 4), (size_t)left * (bf16 ? 2 : 4));
    if (bf16)
        sm_bf16x16((const uint16_t *)t, v);
    else
        sm_f32x16(t, v);
}

/* R weight rows against M input rows over [0, len) of the chunk; pair
 * p = m * R + j keeps the canonical lanes k%8 = 0-3 in a[2p], 4-7 in a[2p+1]
 * and adds in increasing k (len % 16 != 0 only for the last chunk: the
 * padding is zero in both operands and adds +0 to lanes that are never -0). */
SM_INLINE void sm_f_group(const double *xd, int ldx, int kc0, int len, const char *const *wr,
                          __m256d *a, int M, int R, int bf16)
{
    for (int k = 0; k < len; k += 16) {
        _Pragma("GCC unroll 4") for (int j = 0; j < R; j++) {
            __m256d v[4];
            sm_w16(wr[j], kc0 + k, len - k, bf16, v);
            _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++)
                _Pragma("GCC unroll 4") for (int m = 0; m < M; m++) {
                    int ai = 2 * (m * R + j) + (i & 1);
                    a[ai] = _mm256_fmadd_pd(v[i], _mm256_load_pd(xd + (size_t)m * ldx + k + 4 * i), a[ai]);
                }
        }
    }
}

SM_INLINE void sm_gemm_f_impl(const td_gemm_job *job, int n0, int n1, int M, int R, int bf16)
{
    const int K = job->w->k, NA = 2 * M * R;
    const size_t row_bytes = (size_t)K * (bf16 ? 2 : 4);
    const char *W = job->w->data;
    const int KC = sm_kchunk(K, M, 16), whole = KC >= K, ldx = (KC + 15) & ~15;
    const double xs = bf16 ? td_pow2d(896) : 1.0;   /* bf16 weights carry 2^-896 */
    double xd[SM_XD] __attribute__((aligned(64)));   /* [M][ldx] */
    __m256d racc[SM_NCH * 8];                        /* [group][NA], NA * NCH / R <= 8 * NCH */
    for (int nc0 = n0; nc0 < n1; nc0 += SM_NCH) {
        int nc1 = nc0 + SM_NCH < n1 ? nc0 + SM_NCH : n1, ng = (nc1 - nc0 + R - 1) / R;
        for (int kc0 = 0; kc0 < K; kc0 += KC) {
            int len = kc0 + KC < K ? KC : K - kc0;
            if (!whole || nc0 == n0) {
                for (int m = 0; m < M; m++) {
                    const float *x = job->x + (size_t)m * K + kc0;
                    double *d = xd + (size_t)m * ldx;
                    for (int k = 0; k < len; k++)
                        d[k] = (double)x[k] * xs;
                    for (int k = len; k < ((len + 15) & ~15); k++)
                        d[k] = 0.0;
                }
            }
            for (int gi = 0; gi < ng; gi++) {
                int n = nc0 + gi * R;
                const char *wr[4];
                _Pragma("GCC unroll 4") for (int j = 0; j < R; j++)
                    wr[j] = W + (size_t)(n + j < nc1 ? n + j : nc1 - 1) * row_bytes;
                __m256d a[8];
                _Pragma("GCC unroll 8") for (int i = 0; i < NA; i++)
                    a[i] = kc0 == 0 ? _mm256_setzero_pd() : racc[(size_t)gi * NA + i];
                sm_f_group(xd, ldx, kc0, len, wr, a, M, R, bf16);
                _Pragma("GCC unroll 8") for (int i = 0; i < NA; i++)
                    racc[(size_t)gi * NA + i] = a[i];
            }
        }
        for (int gi = 0; gi < ng; gi++)
            for (int p = 0; p < M * R; p++) {
                int m = p / R, n = nc0 + gi * R + p % R;
                if (n < nc1)
                    job->y[(size_t)m * job->ldy + n] =
                        sm_reduce8(racc[(size_t)gi * NA + 2 * p], racc[(size_t)gi * NA + 2 * p + 1]);
            }
    }
}

#define SM_F_INST(M, R)                                                                    \
    static __attribute__((noinline)) void sm_f32_##M(const td_gemm_job *j, int n0, int n1) \
    { sm_gemm_f_impl(j, n0, n1, M, R, 0); }                                                \
    static __attribute__((noinline)) void sm_bf_##M(const td_gemm_job *j, int n0, int n1)  \
    { sm_gemm_f_impl(j, n0, n1, M, R, 1); }
SM_F_INST(1, 4) SM_F_INST(2, 2) SM_F_INST(3, 1) SM_F_INST(4, 1)

enum { SM_MAXM_F = 4 };   /* above: the blocked tiles share x loads better */

static void sm_gemm_f(const td_gemm_job *job, int n0, int n1, int bf16)
{
    static void (*const fn[2][SM_MAXM_F])(const td_gemm_job *, int, int) = {
        {sm_f32_1, sm_f32_2, sm_f32_3, sm_f32_4},
        {sm_bf_1, sm_bf_2, sm_bf_3, sm_bf_4},
    };
    fn[bf16 != 0][job->M - 1](job, n0, n1);
}

#endif
