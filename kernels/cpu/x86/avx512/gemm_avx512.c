/* AVX-512 (F, BW, VL, DQ) GEMMs: the AVX2 design (see gemm_avx2.c for the
 * loop structure and why the results are bit-identical to the scalar path)
 * with 8-double vectors and one better trick:
 *   e2m1 -> fp64 by vpermt2pd: the permute reads only the low 4 bits of each
 *   64-bit index, so a zero-extended byte looks up its low nibble directly in
 *   a 16-entry fp64 table, and the byte shifted right by 4 its high nibble.
 *   A 32-block then decodes to [even 0-14 | odd 1-15 | even 16-30 | odd 17-31];
 *   the input is widened in that order (within a block the sum is exact).
 *   e4m3 -> fp16 bits (value * 2^-8) -> vcvtph2ps -> vcvtps2pd as in AVX2.
 * F32/BF16: the canonical 8 partial sums are exactly the lanes of one zmm. */
#ifdef TD_SIMDE_AVX512
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#else
#include <immintrin.h>
#endif
#include <string.h>

#include "kernels/kernels_impl.h"
/* Decode batches: the register-decoding GEMVs shared with the AVX2 file
 * (256-bit; the loops are bound by memory, not vector width). */
#include "kernels/cpu/x86/avx2/gemv_small.h"

#ifdef TD_SIMDE_AVX512
/* Test build: the same code emulated by SIMDe on a CPU without AVX-512.
 * SIMDe 0.7 lacks a few intrinsics; these stand-ins have the same meaning. */
#define TD_SFX(name) name##_avx512emu
static inline __m512d td_emu_cvtps_pd(__m256 f)
{
    return _mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_cvtps_pd(_mm256_castps256_ps128(f))),
                              _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1)), 1);
}
static inline __m512 td_emu_cvtph_ps(__m256i h)
{
    return _mm512_castpd_ps(_mm512_insertf64x4(
        _mm512_castpd256_pd512(_mm256_castps_pd(_mm256_cvtph_ps(_mm256_castsi256_si128(h)))),
        _mm256_castps_pd(_mm256_cvtph_ps(_mm256_extracti128_si256(h, 1))), 1));
}
static inline __m512i td_emu_cvtepu8_epi64(__m128i b)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_cvtepu8_epi64(b)),
                              _mm256_cvtepu8_epi64(_mm_srli_si128(b, 4)), 1);
}
static inline __m256 td_emu_maskz_loadu_ps(unsigned m, const float *p)
{
    float t[8] = {0};
    for (int i = 0; i < 8; i++)
        if (m >> i & 1)
            t[i] = p[i];
    return _mm256_loadu_ps(t);
}
static inline __m128i td_emu_maskz_loadu_epi16(unsigned m, const uint16_t *p)
{
    uint16_t t[8] = {0};
    for (int i = 0; i < 8; i++)
        if (m >> i & 1)
            t[i] = p[i];
    return _mm_loadu_si128((const __m128i *)t);
}
#define _mm512_cvtps_pd td_emu_cvtps_pd
#define _mm512_cvtph_ps td_emu_cvtph_ps
#define _mm512_cvtepu8_epi64 td_emu_cvtepu8_epi64
#define _mm256_maskz_loadu_ps td_emu_maskz_loadu_ps
#define _mm_maskz_loadu_epi16 td_emu_maskz_loadu_epi16
#else
#define TD_SFX(name) name##_avx512
#endif

enum { MR = 8, NC = 64, XD_DOUBLES = 8192 };

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* ---- weight decoding ---------------------------------------------------- */

/* 32 e4m3 bytes -> 32 fp16 patterns (value * 2^-8); see gemm_avx2.c. */
ALWAYS_INLINE __m512i e4m3x32_to_f16(const uint8_t *p)
{
    __m512i h = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)p));
    h = _mm512_slli_epi16(h, 7);
    return _mm512_and_si512(h, _mm512_set1_epi16((short)0xbfff));
}

/* 16 fp16 -> two fp64 vectors. */
ALWAYS_INLINE void f16x16_to_f64(__m256i h, __m512d *lo, __m512d *hi)
{
    __m512 f = _mm512_cvtph_ps(h);
    *lo = _mm512_cvtps_pd(_mm512_castps512_ps256(f));
    *hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(f), 1)));
}

/* 128 e4m3 weights -> dst[128] = value * 2^-8. */
ALWAYS_INLINE void cvt_fp8_block(const uint8_t *src, double *dst)
{
    _Pragma("GCC unroll 4") for (int i = 0; i < 128; i += 32) {
        __m512i h = e4m3x32_to_f16(src + i);
        __m512d a, b, c, d;
        f16x16_to_f64(_mm512_castsi512_si256(h), &a, &b);
        f16x16_to_f64(_mm512_extracti64x4_epi64(h, 1), &c, &d);
        _mm512_store_pd(dst + i, a);
        _mm512_store_pd(dst + i + 8, b);
        _mm512_store_pd(dst + i + 16, c);
        _mm512_store_pd(dst + i + 24, d);
    }
}

ALWAYS_INLINE __m512d e2m1_tab_lo(void) { return _mm512_setr_pd(0, 0.5, 1, 1.5, 2, 3, 4, 6); }
ALWAYS_INLINE __m512d e2m1_tab_hi(void) { return _mm512_setr_pd(-0.0, -0.5, -1, -1.5, -2, -3, -4, -6); }

/* 8 bytes (16 e2m1) -> even columns (low nibbles) and odd columns. */
ALWAYS_INLINE void e2m1x16_to_f64(const uint8_t *p, __m512d *even, __m512d *odd)
{
    __m512i idx = _mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)p));
    *even = _mm512_permutex2var_pd(e2m1_tab_lo(), idx, e2m1_tab_hi());
    *odd = _mm512_permutex2var_pd(e2m1_tab_lo(), _mm512_srli_epi64(idx, 4), e2m1_tab_hi());
}

/* One 32-block (16 bytes) -> dst[32] in the decode order above. */
ALWAYS_INLINE void cvt_fp4_block32(const uint8_t *src, double *dst)
{
    __m512d a, b, c, d;
    e2m1x16_to_f64(src, &a, &b);
    e2m1x16_to_f64(src + 8, &c, &d);
    _mm512_store_pd(dst, a);
    _mm512_store_pd(dst + 8, b);
    _mm512_store_pd(dst + 16, c);
    _mm512_store_pd(dst + 24, d);
}

/* Position of column k%32 of a block in the decode order. */
static inline int fp4_pos(int k) { return (k & 16) + (k & 1) * 8 + ((k & 15) >> 1); }

/* ---- register tiles ------------------------------------------------------ */

ALWAYS_INLINE __m256d fold(__m512d a)
{
    return _mm256_add_pd(_mm512_castpd512_pd256(a), _mm512_extractf64x4_pd(a, 1));
}

/* Exact block sums of 4 accumulators, lane j = sum of a_j. */
ALWAYS_INLINE __m256d hsum4(__m512d a0, __m512d a1, __m512d a2, __m512d a3)
{
    __m256d s01 = _mm256_hadd_pd(fold(a0), fold(a1)), s23 = _mm256_hadd_pd(fold(a2), fold(a3));
    return _mm256_add_pd(_mm256_permute2f128_pd(s01, s23, 0x20),
                         _mm256_permute2f128_pd(s01, s23, 0x31));
}

ALWAYS_INLINE __m256d tile_1x4(const double *x, const double *wb, int len)
{
    __m512d a[2][4];
    _Pragma("GCC unroll 8") for (int u = 0; u < 2; u++)
        _Pragma("GCC unroll 8") for (int j = 0; j < 4; j++)
            a[u][j] = _mm512_setzero_pd();
    _Pragma("GCC unroll 2") for (int k = 0; k < len; k += 16) {
        _Pragma("GCC unroll 8") for (int u = 0; u < 2; u++) {
            __m512d xv = _mm512_load_pd(x + k + 8 * u);
            _Pragma("GCC unroll 8") for (int j = 0; j < 4; j++)
                a[u][j] = _mm512_fmadd_pd(_mm512_load_pd(wb + j * 128 + k + 8 * u), xv, a[u][j]);
        }
    }
    return hsum4(_mm512_add_pd(a[0][0], a[1][0]), _mm512_add_pd(a[0][1], a[1][1]),
                 _mm512_add_pd(a[0][2], a[1][2]), _mm512_add_pd(a[0][3], a[1][3]));
}

ALWAYS_INLINE void tile_2x4(const double *x0, const double *x1, const double *wb, int len,
                            __m256d *s0, __m256d *s1)
{
    __m512d a[2][4];
    _Pragma("GCC unroll 8") for (int r = 0; r < 2; r++)
        _Pragma("GCC unroll 8") for (int j = 0; j < 4; j++)
            a[r][j] = _mm512_setzero_pd();
    _Pragma("GCC unroll 2") for (int k = 0; k < len; k += 8) {
        __m512d xv0 = _mm512_load_pd(x0 + k), xv1 = _mm512_load_pd(x1 + k);
        _Pragma("GCC unroll 8") for (int j = 0; j < 4; j++) {
            __m512d wv = _mm512_load_pd(wb + j * 128 + k);
            a[0][j] = _mm512_fmadd_pd(wv, xv0, a[0][j]);
            a[1][j] = _mm512_fmadd_pd(wv, xv1, a[1][j]);
        }
    }
    *s0 = hsum4(a[0][0], a[0][1], a[0][2], a[0][3]);
    *s1 = hsum4(a[1][0], a[1][1], a[1][2], a[1][3]);
}

ALWAYS_INLINE __m256d pow2_lanes(__m128i e, int bias)
{
    __m128i b = _mm_add_epi32(e, _mm_set1_epi32(bias + 1023));
    return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_cvtepi32_epi64(b), 52));
}

ALWAYS_INLINE void tile_accumulate(const double *xd, int ldx, int koff, int mr,
                                   const double *wb, int len, __m128i swv,
                                   const int8_t *ex, int ldex, int bias, __m256d *acc)
{
    int r = 0;
    for (; r + 2 <= mr; r += 2) {
        __m256d s0, s1;
        tile_2x4(xd + (size_t)r * ldx + koff, xd + (size_t)(r + 1) * ldx + koff, wb, len, &s0, &s1);
        __m256d c0 = pow2_lanes(_mm_add_epi32(swv, _mm_set1_epi32(ex[r * ldex])), bias);
        __m256d c1 = pow2_lanes(_mm_add_epi32(swv, _mm_set1_epi32(ex[(r + 1) * ldex])), bias);
        acc[r] = _mm256_add_pd(acc[r], _mm256_mul_pd(s0, c0));
        acc[r + 1] = _mm256_add_pd(acc[r + 1], _mm256_mul_pd(s1, c1));
    }
    if (r < mr) {
        __m256d s0 = tile_1x4(xd + (size_t)r * ldx + koff, wb, len);
        __m256d c0 = pow2_lanes(_mm_add_epi32(swv, _mm_set1_epi32(ex[r * ldex])), bias);
        acc[r] = _mm256_add_pd(acc[r], _mm256_mul_pd(s0, c0));
    }
}

/* Decode path (one input row): decode and FMA from registers. */
ALWAYS_INLINE __m512d row_dot_fp8(const uint8_t *w, const double *x)
{
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    _Pragma("GCC unroll 4") for (int i = 0; i < 128; i += 32) {
        __m512i h = e4m3x32_to_f16(w + i);
        __m512d w0, w1, w2, w3;
        f16x16_to_f64(_mm512_castsi512_si256(h), &w0, &w1);
        f16x16_to_f64(_mm512_extracti64x4_epi64(h, 1), &w2, &w3);
        a0 = _mm512_fmadd_pd(w0, _mm512_load_pd(x + i), a0);
        a1 = _mm512_fmadd_pd(w1, _mm512_load_pd(x + i + 8), a1);
        a2 = _mm512_fmadd_pd(w2, _mm512_load_pd(x + i + 16), a2);
        a3 = _mm512_fmadd_pd(w3, _mm512_load_pd(x + i + 24), a3);
    }
    return _mm512_add_pd(_mm512_add_pd(a0, a1), _mm512_add_pd(a2, a3));
}

ALWAYS_INLINE __m512d row_dot_fp4(const uint8_t *w, const double *x)
{
    __m512d e0, o0, e1, o1;
    e2m1x16_to_f64(w, &e0, &o0);
    e2m1x16_to_f64(w + 8, &e1, &o1);
    __m512d a0 = _mm512_mul_pd(e0, _mm512_load_pd(x));
    __m512d a1 = _mm512_mul_pd(o0, _mm512_load_pd(x + 8));
    a0 = _mm512_fmadd_pd(e1, _mm512_load_pd(x + 16), a0);
    a1 = _mm512_fmadd_pd(o1, _mm512_load_pd(x + 24), a1);
    return _mm512_add_pd(a0, a1);
}

/* ---- quantised GEMMs ----------------------------------------------------- */

static int k_chunk(int K, int mr)
{
    int kc = (XD_DOUBLES / mr) & ~127;
    return kc < K ? kc : K;
}

static void store_rows(const td_gemm_job *job, int m0, int mr, int nc0, int nc1,
                       const __m256d acc[][MR])
{
    for (int n = nc0; n < nc1; n += 4) {
        for (int r = 0; r < mr; r++) {
            double v[4];
            _mm256_storeu_pd(v, acc[(n - nc0) / 4][r]);
            float *y = job->y + (size_t)(m0 + r) * job->ldy;
            for (int j = 0; j < 4 && n + j < nc1; j++)
                y[n + j] = (float)v[j];
        }
    }
}

static void gemm_q_rows(const td_gemm_job *job, int n0, int n1, int fp4)
{
    const td_weight *w = job->w;
    const int K = w->k, nb = K / 128, sb = (K + 127) / 128;
    const uint8_t *W = w->data;                 /* [N][K] (FP8) or [N][K/2] (FP4) */
    const size_t row_bytes = fp4 ? (size_t)K / 2 : (size_t)K;
    const size_t ls = (size_t)K / 32;           /* FP4 scales per row */
    double xd[XD_DOUBLES] __attribute__((aligned(64)));   /* [mr][KC] */
    double wb[4 * 128] __attribute__((aligned(64)));      /* [4][128] */
    __m256d acc[NC / 4][MR];                              /* lane j = row n+j */

    for (int nc0 = n0; nc0 < n1; nc0 += NC) {
        int nc1 = nc0 + NC < n1 ? nc0 + NC : n1;
        for (int m0 = 0; m0 < job->M; m0 += MR) {
            int mr = job->M - m0 < MR ? job->M - m0 : MR;
            int KC = k_chunk(K, mr);
            for (int i = 0; i < (nc1 - nc0 + 3) / 4; i++)
                for (int r = 0; r < mr; r++)
                    acc[i][r] = _mm256_setzero_pd();
            for (int kc0 = 0; kc0 < K; kc0 += KC) {
                int kc1 = kc0 + KC < K ? kc0 + KC : K;
                for (int r = 0; r < mr; r++) {
                    const uint8_t *q = job->q + (size_t)(m0 + r) * K;   /* [K] */
                    double *xr = xd + (size_t)r * KC;
                    if (fp4)
                        for (int k = kc0; k < kc1; k++)
                            xr[k - kc0 - (k & 31) + fp4_pos(k & 31)] = td_e4m3_f64[q[k]];
                    else
                        for (int k = kc0; k < kc1; k++)
                            xr[k - kc0] = td_e4m3_f64[q[k]];
                }
                for (int n = nc0; n < nc1; n += 4) {
                    const uint8_t *wr[4];
                    int nn[4];
                    for (int j = 0; j < 4; j++) {
                        nn[j] = n + j < nc1 ? n + j : nc1 - 1;
                        wr[j] = W + (size_t)nn[j] * row_bytes;
                    }
                    __m256d *a = acc[(n - nc0) / 4];
                    for (int b = kc0 / 128; b < kc1 / 128; b++) {
                        const int8_t *ex = job->e + (size_t)m0 * nb + b;   /* [mr] stride nb */
                        const double *x = xd + (b * 128 - kc0);
                        if (!fp4) {
                            const uint8_t *s = w->scale + b;
                            __m128i swv = _mm_setr_epi32(s[(nn[0] / 128) * sb], s[(nn[1] / 128) * sb],
                                                         s[(nn[2] / 128) * sb], s[(nn[3] / 128) * sb]);
                            if (mr == 1) {
                                __m256d d = hsum4(row_dot_fp8(wr[0] + (size_t)b * 128, x),
                                                  row_dot_fp8(wr[1] + (size_t)b * 128, x),
                                                  row_dot_fp8(wr[2] + (size_t)b * 128, x),
                                                  row_dot_fp8(wr[3] + (size_t)b * 128, x));
                                __m256d c = pow2_lanes(_mm_add_epi32(swv, _mm_set1_epi32(ex[0])), -127 + 8);
                                a[0] = _mm256_add_pd(a[0], _mm256_mul_pd(d, c));
                            } else {
                                _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)
                                    cvt_fp8_block(wr[j] + (size_t)b * 128, wb + j * 128);
                                tile_accumulate(xd, KC, b * 128 - kc0, mr, wb, 128, swv, ex, nb, -127 + 8, a);
                            }
                        } else {
                            if (mr > 1)
                                for (int j = 0; j < 4; j++)
                                    for (int s = 0; s < 4; s++)
                                        cvt_fp4_block32(wr[j] + (size_t)b * 64 + s * 16, wb + j * 128 + s * 32);
                            _Pragma("GCC unroll 4") for (int s = 0; s < 4; s++) {
                                int kb32 = b * 4 + s;
                                const uint8_t *sc = w->scale + kb32;
                                __m128i swv = _mm_setr_epi32(sc[nn[0] * ls], sc[nn[1] * ls],
                                                             sc[nn[2] * ls], sc[nn[3] * ls]);
                                if (mr == 1) {
                                    __m256d d = hsum4(row_dot_fp4(wr[0] + (size_t)kb32 * 16, x + s * 32),
                                                      row_dot_fp4(wr[1] + (size_t)kb32 * 16, x + s * 32),
                                                      row_dot_fp4(wr[2] + (size_t)kb32 * 16, x + s * 32),
                                                      row_dot_fp4(wr[3] + (size_t)kb32 * 16, x + s * 32));
                                    __m256d c = pow2_lanes(_mm_add_epi32(swv, _mm_set1_epi32(ex[0])), -127);
                                    a[0] = _mm256_add_pd(a[0], _mm256_mul_pd(d, c));
                                } else {
                                    tile_accumulate(xd, KC, b * 128 - kc0 + s * 32, mr, wb + s * 32, 32,
                                                    swv, ex, nb, -127, a);
                                }
                            }
                        }
                    }
                }
            }
            store_rows(job, m0, mr, nc0, nc1, (const __m256d(*)[MR])acc);
        }
    }
}

void TD_SFX(td_gemm_fp8_rows)(const td_gemm_job *job, int n0, int n1)
{
    if (job->M <= SM_MAXM_Q)
        sm_gemm_q(job, n0, n1, 0);
    else
        gemm_q_rows(job, n0, n1, 0);
}

void TD_SFX(td_gemm_fp4_rows)(const td_gemm_job *job, int n0, int n1)
{
    if (job->M <= SM_MAXM_Q)
        sm_gemm_q(job, n0, n1, 1);
    else
        gemm_q_rows(job, n0, n1, 1);
}

/* ---- F32 / BF16 GEMMs ---------------------------------------------------- */

/* 8 values from k (fewer than 8 left: masked, zero-filled) as fp64. */
ALWAYS_INLINE __m512d load_w8(const void *row, int k, int left, int bf16)
{
    __mmask8 m = left >= 8 ? (__mmask8)0xff : (__mmask8)((1u << left) - 1);
    __m256 f;
    if (bf16) {
        __m128i h = _mm_maskz_loadu_epi16(m, (const uint16_t *)row + k);
        f = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    } else {
        f = _mm256_maskz_loadu_ps(m, (const float *)row + k);
    }
    return _mm512_cvtps_pd(f);
}

/* The canonical tree: q = lanes 0-3 + lanes 4-7, r_i = q_i + q_{i+2}, s = r_0 + r_1. */
ALWAYS_INLINE float reduce8(__m512d a)
{
    __m256d q = fold(a);
    __m128d r = _mm_add_pd(_mm256_castpd256_pd128(q), _mm256_extractf128_pd(q, 1));
    return (float)_mm_cvtsd_f64(_mm_add_sd(r, _mm_unpackhi_pd(r, r)));
}

ALWAYS_INLINE void tile_f(const td_gemm_job *job, int m, int n, int MRt, int NRt, int bf16)
{
    const int K = job->w->k;
    const size_t esz = bf16 ? 2 : 4;
    const char *W = job->w->data;
    const float *x[4];
    const char *wr[4];
    __m512d a[4][4];
    _Pragma("GCC unroll 4") for (int r = 0; r < MRt; r++)
        x[r] = job->x + (size_t)(m + r) * K;
    _Pragma("GCC unroll 4") for (int j = 0; j < NRt; j++)
        wr[j] = W + (size_t)(n + j) * K * esz;
    _Pragma("GCC unroll 4") for (int r = 0; r < MRt; r++)
        _Pragma("GCC unroll 4") for (int j = 0; j < NRt; j++)
            a[r][j] = _mm512_setzero_pd();
    for (int k = 0; k < K; k += 8) {
        int left = K - k;
        __m512d xv[4];
        _Pragma("GCC unroll 4") for (int r = 0; r < MRt; r++)
            xv[r] = load_w8(x[r], k, left, 0);
        _Pragma("GCC unroll 4") for (int j = 0; j < NRt; j++) {
            __m512d wv = load_w8(wr[j], k, left, bf16);
            _Pragma("GCC unroll 4") for (int r = 0; r < MRt; r++)
                a[r][j] = _mm512_fmadd_pd(wv, xv[r], a[r][j]);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < MRt; r++)
        _Pragma("GCC unroll 4") for (int j = 0; j < NRt; j++)
            job->y[(size_t)(m + r) * job->ldy + n + j] = reduce8(a[r][j]);
}

/* 4x4 register tiles (16 accumulators of 32); edges with narrower tiles. */
ALWAYS_INLINE void gemm_f_rows(const td_gemm_job *job, int n0, int n1, int bf16)
{
    int n = n0;
    for (; n + 4 <= n1; n += 4) {
        int m = 0;
        for (; m + 4 <= job->M; m += 4)
            tile_f(job, m, n, 4, 4, bf16);
        for (; m < job->M; m++)
            tile_f(job, m, n, 1, 4, bf16);
    }
    for (; n < n1; n++) {
        int m = 0;
        for (; m + 4 <= job->M; m += 4)
            tile_f(job, m, n, 4, 1, bf16);
        for (; m < job->M; m++)
            tile_f(job, m, n, 1, 1, bf16);
    }
}

void TD_SFX(td_gemm_f32_rows)(const td_gemm_job *job, int n0, int n1)
{
    if (job->M <= SM_MAXM_F)
        sm_gemm_f(job, n0, n1, 0);
    else
        gemm_f_rows(job, n0, n1, 0);
}

void TD_SFX(td_gemm_bf16_rows)(const td_gemm_job *job, int n0, int n1)
{
    if (job->M <= SM_MAXM_F)
        sm_gemm_f(job, n0, n1, 1);
    else
        gemm_f_rows(job, n0, n1, 1);
}
