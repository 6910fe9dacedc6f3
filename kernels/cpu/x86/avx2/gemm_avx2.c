/* AVX2 + FMA + F16C GEMMs (compiled with -mavx2 -mfma -mf16c only here).
 *
 * Bit-identical to kernels/cpu/generic by construction (kernels_impl.h):
 *  - FP8/FP4: a 128- (FP8) or 32- (FP4) block dot product is exact in fp64,
 *    so lanes may hold any partial sums within a block; the block sums of 4
 *    weight rows are then gathered in one ymm (lane j = row n+j) and added to
 *    the per-row fp64 accumulator in block order, one rounding per block,
 *    exactly as the scalar loop does.
 *  - F32/BF16: lanes 0-3 / 4-7 of the canonical 8 partial sums live in two
 *    ymm accumulators; the final reduction is the canonical tree.
 *
 * Layout of the quantised GEMMs, per task range [n0, n1):
 *   for each chunk of NC weight rows, for each tile of up to MR input rows:
 *     for each K chunk: widen q to fp64 once (xd, [mr][KC], reused by NC rows)
 *       for each quad of 4 weight rows, for each block:
 *         convert the quad's block to fp64 in an L1 buffer (wb, [4][128]),
 *         FMA it against every input row of the tile (1x4 / 2x4 register tiles).
 * Weights are decoded inside the kernel straight from the mmap'd bytes:
 *   e4m3 -> fp16 bits (value * 2^-8, subnormals included) -> vcvtph2ps -> fp64;
 *   e2m1 -> fp16 high byte by vpshufb (exact) -> vcvtph2ps -> fp64.
 * NaN codes (e4m3 0x7f/0xff, E8M0 0xff) are not supported inputs: the scalar
 * path gives NaN, this path a finite number. */
#include <immintrin.h>
#include <string.h>

#include "kernels/kernels_impl.h"
#include "kernels/cpu/x86/avx2/gemv_small.h"

enum {
    MR = 8,          /* input rows per tile (x widened once per tile) */
    NC = 64,         /* weight rows per chunk (x conversion amortised over them) */
    XD_DOUBLES = 8192, /* widened-x buffer: 64 KiB of stack */
};

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* ---- weight decoding ---------------------------------------------------- */

/* 16 e4m3 bytes -> 16 fp16 patterns holding value * 2^-8. The sign-extended
 * byte shifted left by 7 puts exponent and mantissa in place and the sign in
 * bits 14 and 15; clearing bit 14 leaves a correct fp16 (subnormals map to
 * fp16 subnormals, which vcvtph2ps widens exactly). */
ALWAYS_INLINE __m256i e4m3x16_to_f16(const uint8_t *p)
{
    __m256i h = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)p));
    h = _mm256_slli_epi16(h, 7);
    return _mm256_and_si256(h, _mm256_set1_epi16((short)0xbfff));
}

ALWAYS_INLINE void f16x8_to_f64(__m128i h, double *dst)
{
    __m256 f = _mm256_cvtph_ps(h);
    _mm256_store_pd(dst, _mm256_cvtps_pd(_mm256_castps256_ps128(f)));
    _mm256_store_pd(dst + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1)));
}

/* 128 e4m3 weights -> dst[128] = value * 2^-8. */
ALWAYS_INLINE void cvt_fp8_block(const uint8_t *src, double *dst)
{
    _Pragma("GCC unroll 8") for (int i = 0; i < 128; i += 16) {
        __m256i h = e4m3x16_to_f16(src + i);
        f16x8_to_f64(_mm256_castsi256_si128(h), dst + i);
        f16x8_to_f64(_mm256_extracti128_si256(h, 1), dst + i + 8);
    }
}

/* 16 bytes = one 32-block of e2m1 -> dst[32] as [even columns | odd columns]
 * (the input is widened in the same order). The fp16 of every e2m1 value has
 * a zero low byte, so one byte shuffle gives the high byte. */
ALWAYS_INLINE void cvt_fp4_block32(const uint8_t *src, double *dst)
{
    const __m128i hi_tab = _mm_setr_epi8(0x00, 0x38, 0x3c, 0x3e, 0x40, 0x42, 0x44, 0x46,
                                         (char)0x80, (char)0xb8, (char)0xbc, (char)0xbe,
                                         (char)0xc0, (char)0xc2, (char)0xc4, (char)0xc6);
    const __m128i nib = _mm_set1_epi8(0x0f), zero = _mm_setzero_si128();
    __m128i b = _mm_loadu_si128((const __m128i *)src);
    __m128i lo = _mm_shuffle_epi8(hi_tab, _mm_and_si128(b, nib));
    __m128i hi = _mm_shuffle_epi8(hi_tab, _mm_and_si128(_mm_srli_epi16(b, 4), nib));
    f16x8_to_f64(_mm_unpacklo_epi8(zero, lo), dst);
    f16x8_to_f64(_mm_unpackhi_epi8(zero, lo), dst + 8);
    f16x8_to_f64(_mm_unpacklo_epi8(zero, hi), dst + 16);
    f16x8_to_f64(_mm_unpackhi_epi8(zero, hi), dst + 24);
}

/* ---- register tiles ------------------------------------------------------ */

/* Sums of 4 accumulators in one vector (lane j = sum of a[j]); exact here
 * because every partial sum inside a block is exact. */
ALWAYS_INLINE __m256d hsum4(__m256d a0, __m256d a1, __m256d a2, __m256d a3)
{
    __m256d s01 = _mm256_hadd_pd(a0, a1), s23 = _mm256_hadd_pd(a2, a3);
    return _mm256_add_pd(_mm256_permute2f128_pd(s01, s23, 0x20),
                         _mm256_permute2f128_pd(s01, s23, 0x31));
}

/* One input row against 4 weight rows over len values (multiple of 8):
 * returns the 4 dot products (lane j = weight row j). Two accumulator sets
 * hide the FMA latency. wb rows are 128 doubles apart. */
ALWAYS_INLINE __m256d tile_1x4(const double *x, const double *wb, int len)
{
    __m256d a[2][4];
    _Pragma("GCC unroll 8") for (int u = 0; u < 2; u++)
        _Pragma("GCC unroll 8") for (int j = 0; j < 4; j++)
            a[u][j] = _mm256_setzero_pd();
    _Pragma("GCC unroll 2") for (int k = 0; k < len; k += 8) {
        _Pragma("GCC unroll 8") for (int u = 0; u < 2; u++) {
            __m256d xv = _mm256_load_pd(x + k + 4 * u);
            _Pragma("GCC unroll 8") for (int j = 0; j < 4; j++)
                a[u][j] = _mm256_fmadd_pd(_mm256_load_pd(wb + j * 128 + k + 4 * u), xv, a[u][j]);
        }
    }
    return hsum4(_mm256_add_pd(a[0][0], a[1][0]), _mm256_add_pd(a[0][1], a[1][1]),
                 _mm256_add_pd(a[0][2], a[1][2]), _mm256_add_pd(a[0][3], a[1][3]));
}

/* Two input rows (x0, x1) against 4 weight rows. */
ALWAYS_INLINE void tile_2x4(const double *x0, const double *x1, const double *wb, int len,
                            __m256d *s0, __m256d *s1)
{
    __m256d a[2][4];
    _Pragma("GCC unroll 8") for (int r = 0; r < 2; r++)
        _Pragma("GCC unroll 8") for (int j = 0; j < 4; j++)
            a[r][j] = _mm256_setzero_pd();
    _Pragma("GCC unroll 2") for (int k = 0; k < len; k += 4) {
        __m256d xv0 = _mm256_load_pd(x0 + k), xv1 = _mm256_load_pd(x1 + k);
        _Pragma("GCC unroll 8") for (int j = 0; j < 4; j++) {
            __m256d wv = _mm256_load_pd(wb + j * 128 + k);
            a[0][j] = _mm256_fmadd_pd(wv, xv0, a[0][j]);
            a[1][j] = _mm256_fmadd_pd(wv, xv1, a[1][j]);
        }
    }
    *s0 = hsum4(a[0][0], a[0][1], a[0][2], a[0][3]);
    *s1 = hsum4(a[1][0], a[1][1], a[1][2], a[1][3]);
}

/* 2^(e_j + bias) per lane from 4 int exponents (|e + bias| < 1023). */
ALWAYS_INLINE __m256d pow2_lanes(__m128i e, int bias)
{
    __m128i b = _mm_add_epi32(e, _mm_set1_epi32(bias + 1023));
    return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_cvtepi32_epi64(b), 52));
}

/* acc[r] += dots of block (rows of the tile) * 2^(ex[r] + sw_j + bias), in
 * block order; one rounding per lane per block as in the scalar loop. */
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

/* Single input row (decode): decode and FMA straight from registers, no
 * trip through the weight buffer. Unreduced lane partial sums of one weight
 * row over one 128-block (FP8; the weights carry 2^-8) ... */
ALWAYS_INLINE __m256d row_dot_fp8(const uint8_t *w, const double *x)
{
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    _Pragma("GCC unroll 8") for (int i = 0; i < 128; i += 16) {
        __m256i h = e4m3x16_to_f16(w + i);
        __m256 f0 = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
        __m256 f1 = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
        a0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(f0)), _mm256_load_pd(x + i), a0);
        a1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(f0, 1)), _mm256_load_pd(x + i + 4), a1);
        a2 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(f1)), _mm256_load_pd(x + i + 8), a2);
        a3 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(f1, 1)), _mm256_load_pd(x + i + 12), a3);
    }
    return _mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3));
}

/* ... and over one 32-block of FP4 (x in [even | odd] order). */
ALWAYS_INLINE __m256d row_dot_fp4(const uint8_t *w, const double *x)
{
    const __m128i hi_tab = _mm_setr_epi8(0x00, 0x38, 0x3c, 0x3e, 0x40, 0x42, 0x44, 0x46,
                                         (char)0x80, (char)0xb8, (char)0xbc, (char)0xbe,
                                         (char)0xc0, (char)0xc2, (char)0xc4, (char)0xc6);
    const __m128i nib = _mm_set1_epi8(0x0f), zero = _mm_setzero_si128();
    __m128i b = _mm_loadu_si128((const __m128i *)w);
    __m128i lo = _mm_shuffle_epi8(hi_tab, _mm_and_si128(b, nib));
    __m128i hi = _mm_shuffle_epi8(hi_tab, _mm_and_si128(_mm_srli_epi16(b, 4), nib));
    __m256 f[4] = {_mm256_cvtph_ps(_mm_unpacklo_epi8(zero, lo)), _mm256_cvtph_ps(_mm_unpackhi_epi8(zero, lo)),
                   _mm256_cvtph_ps(_mm_unpacklo_epi8(zero, hi)), _mm256_cvtph_ps(_mm_unpackhi_epi8(zero, hi))};
    __m256d a0 = _mm256_setzero_pd(), a1 = a0;
    _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++) {
        a0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(f[i])), _mm256_load_pd(x + 8 * i), a0);
        a1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(f[i], 1)), _mm256_load_pd(x + 8 * i + 4), a1);
    }
    return _mm256_add_pd(a0, a1);
}

/* ---- quantised GEMMs ----------------------------------------------------- */

/* K chunk for a tile of mr rows: whole blocks, xd fits XD_DOUBLES. */
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
    const uint8_t *W = w->data;          /* [N][K] bytes (FP8) or [N][K/2] (FP4) */
    const size_t row_bytes = fp4 ? (size_t)K / 2 : (size_t)K;
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
                /* Widen the tile's input: exact values; FP4 blocks of 32 in
                 * [even | odd] column order to match cvt_fp4_block32. */
                for (int r = 0; r < mr; r++) {
                    const uint8_t *q = job->q + (size_t)(m0 + r) * K;   /* [K] */
                    double *xr = xd + (size_t)r * KC;
                    if (fp4)
                        for (int k = kc0; k < kc1; k++)
                            xr[k - kc0 - (k & 31) + ((k & 31) >> 1) + (k & 1) * 16] = td_e4m3_f64[q[k]];
                    else
                        for (int k = kc0; k < kc1; k++)
                            xr[k - kc0] = td_e4m3_f64[q[k]];
                }
                for (int n = nc0; n < nc1; n += 4) {
                    const uint8_t *wr[4];   /* rows past nc1 repeat the last one */
                    int nn[4];
                    _Pragma("GCC unroll 8") for (int j = 0; j < 4; j++) {
                        nn[j] = n + j < nc1 ? n + j : nc1 - 1;
                        wr[j] = W + (size_t)nn[j] * row_bytes;
                    }
                    __m256d *a = acc[(n - nc0) / 4];
                    for (int b = kc0 / 128; b < kc1 / 128; b++) {
                        const int8_t *ex = job->e + (size_t)m0 * nb + b;   /* [mr] stride nb */
                        if (!fp4 && mr == 1) {
                            const double *x = xd + (b * 128 - kc0);
                            const uint8_t *s = w->scale + b;
                            __m128i swv = _mm_setr_epi32(s[(nn[0] / 128) * sb], s[(nn[1] / 128) * sb],
                                                         s[(nn[2] / 128) * sb], s[(nn[3] / 128) * sb]);
                            __m256d d = hsum4(row_dot_fp8(wr[0] + (size_t)b * 128, x),
                                              row_dot_fp8(wr[1] + (size_t)b * 128, x),
                                              row_dot_fp8(wr[2] + (size_t)b * 128, x),
                                              row_dot_fp8(wr[3] + (size_t)b * 128, x));
                            __m256d c = pow2_lanes(_mm_add_epi32(swv, _mm_set1_epi32(ex[0])), -127 + 8);
                            a[0] = _mm256_add_pd(a[0], _mm256_mul_pd(d, c));
                        } else if (fp4 && mr == 1) {
                            size_t ls = (size_t)K / 32;
                            _Pragma("GCC unroll 4") for (int s = 0; s < 4; s++) {
                                int kb32 = b * 4 + s;
                                const double *x = xd + (b * 128 - kc0 + s * 32);
                                const uint8_t *sc = w->scale + kb32;
                                __m128i swv = _mm_setr_epi32(sc[nn[0] * ls], sc[nn[1] * ls],
                                                             sc[nn[2] * ls], sc[nn[3] * ls]);
                                __m256d d = hsum4(row_dot_fp4(wr[0] + (size_t)kb32 * 16, x),
                                                  row_dot_fp4(wr[1] + (size_t)kb32 * 16, x),
                                                  row_dot_fp4(wr[2] + (size_t)kb32 * 16, x),
                                                  row_dot_fp4(wr[3] + (size_t)kb32 * 16, x));
                                __m256d c = pow2_lanes(_mm_add_epi32(swv, _mm_set1_epi32(ex[0])), -127);
                                a[0] = _mm256_add_pd(a[0], _mm256_mul_pd(d, c));
                            }
                        } else if (!fp4) {
                            _Pragma("GCC unroll 8") for (int j = 0; j < 4; j++)
                                cvt_fp8_block(wr[j] + (size_t)b * 128, wb + j * 128);
                            const uint8_t *s = w->scale + b;
                            __m128i swv = _mm_setr_epi32(s[(nn[0] / 128) * sb], s[(nn[1] / 128) * sb],
                                                         s[(nn[2] / 128) * sb], s[(nn[3] / 128) * sb]);
                            /* weights carry 2^-8 (fp16 placement) */
                            tile_accumulate(xd, KC, b * 128 - kc0, mr, wb, 128, swv, ex, nb, -127 + 8, a);
                        } else {
                            _Pragma("GCC unroll 8") for (int j = 0; j < 4; j++)
                                _Pragma("GCC unroll 8") for (int s = 0; s < 4; s++)
                                    cvt_fp4_block32(wr[j] + (size_t)b * 64 + s * 16, wb + j * 128 + s * 32);
                            _Pragma("GCC unroll 8") for (int s = 0; s < 4; s++) {
                                int kb32 = b * 4 + s;
                                const uint8_t *sc = w->scale + kb32;
                                size_t ls = (size_t)K / 32;
                                __m128i swv = _mm_setr_epi32(sc[nn[0] * ls], sc[nn[1] * ls],
                                                             sc[nn[2] * ls], sc[nn[3] * ls]);
                                tile_accumulate(xd, KC, b * 128 - kc0 + s * 32, mr, wb + s * 32, 32,
                                                swv, ex, nb, -127, a);
                            }
                        }
                    }
                }
            }
            store_rows(job, m0, mr, nc0, nc1, (const __m256d(*)[MR])acc);
        }
    }
}

/* Decode batches (M <= SM_MAXM_Q) stream the weights once with register
 * decoding (gemv_small.h); prefill keeps the blocked path above. */
void td_gemm_fp8_rows_avx2(const td_gemm_job *job, int n0, int n1)
{
    if (job->M <= SM_MAXM_Q)
        sm_gemm_q(job, n0, n1, 0);
    else
        gemm_q_rows(job, n0, n1, 0);
}

void td_gemm_fp4_rows_avx2(const td_gemm_job *job, int n0, int n1)
{
    if (job->M <= SM_MAXM_Q)
        sm_gemm_q(job, n0, n1, 1);
    else
        gemm_q_rows(job, n0, n1, 1);
}

/* ---- F32 / BF16 GEMMs ---------------------------------------------------- */

/* 8 weights of a row as two fp64 vectors (canonical lanes k%8 0-3 and 4-7). */
ALWAYS_INLINE void load_w8(const void *row, int k, int bf16, __m256d *lo, __m256d *hi)
{
    __m256 f;
    if (bf16) {
        __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + k));
        f = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    } else {
        f = _mm256_loadu_ps((const float *)row + k);
    }
    *lo = _mm256_cvtps_pd(_mm256_castps256_ps128(f));
    *hi = _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1));
}

ALWAYS_INLINE void load_x8(const float *x, int k, __m256d *lo, __m256d *hi)
{
    __m256 f = _mm256_loadu_ps(x + k);
    *lo = _mm256_cvtps_pd(_mm256_castps256_ps128(f));
    *hi = _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1));
}

/* The canonical tree: q = lo + hi, r_i = q_i + q_{i+2}, s = r_0 + r_1. */
ALWAYS_INLINE float reduce8(__m256d lo, __m256d hi)
{
    __m256d q = _mm256_add_pd(lo, hi);
    __m128d r = _mm_add_pd(_mm256_castpd256_pd128(q), _mm256_extractf128_pd(q, 1));
    return (float)_mm_cvtsd_f64(_mm_add_sd(r, _mm_unpackhi_pd(r, r)));
}

/* MRt input rows x NRt weight rows over all of K; the K % 8 tail goes
 * through zero-padded copies so that it lands in lanes k % 8. */
ALWAYS_INLINE void tile_f(const td_gemm_job *job, int m, int n, int MRt, int NRt, int bf16)
{
    const int K = job->w->k, K8 = K & ~7;
    const size_t esz = bf16 ? 2 : 4;
    const char *W = job->w->data;
    const float *x[2];
    const char *wr[4];
    __m256d alo[2][4], ahi[2][4];
    _Pragma("GCC unroll 8") for (int r = 0; r < MRt; r++)
        x[r] = job->x + (size_t)(m + r) * K;
    _Pragma("GCC unroll 8") for (int j = 0; j < NRt; j++)
        wr[j] = W + (size_t)(n + j) * K * esz;
    _Pragma("GCC unroll 8") for (int r = 0; r < MRt; r++)
        _Pragma("GCC unroll 8") for (int j = 0; j < NRt; j++)
            alo[r][j] = ahi[r][j] = _mm256_setzero_pd();
    for (int k = 0; k < K8; k += 8) {
        __m256d xl[2], xh[2];
        _Pragma("GCC unroll 8") for (int r = 0; r < MRt; r++)
            load_x8(x[r], k, &xl[r], &xh[r]);
        _Pragma("GCC unroll 8") for (int j = 0; j < NRt; j++) {
            __m256d wl, wh;
            load_w8(wr[j], k, bf16, &wl, &wh);
            _Pragma("GCC unroll 8") for (int r = 0; r < MRt; r++) {
                alo[r][j] = _mm256_fmadd_pd(wl, xl[r], alo[r][j]);
                ahi[r][j] = _mm256_fmadd_pd(wh, xh[r], ahi[r][j]);
            }
        }
    }
    if (K8 < K) {
        float xt[2][8] = {{0}};
        uint16_t wt[4][8] = {{0}};   /* big enough for 8 floats too */
        float wtf[4][8] = {{0}};
        _Pragma("GCC unroll 8") for (int r = 0; r < MRt; r++)
            memcpy(xt[r], x[r] + K8, (size_t)(K - K8) * 4);
        _Pragma("GCC unroll 8") for (int j = 0; j < NRt; j++) {
            if (bf16)
                memcpy(wt[j], wr[j] + (size_t)K8 * 2, (size_t)(K - K8) * 2);
            else
                memcpy(wtf[j], wr[j] + (size_t)K8 * 4, (size_t)(K - K8) * 4);
        }
        __m256d xl[2], xh[2];
        _Pragma("GCC unroll 8") for (int r = 0; r < MRt; r++)
            load_x8(xt[r], 0, &xl[r], &xh[r]);
        _Pragma("GCC unroll 8") for (int j = 0; j < NRt; j++) {
            __m256d wl, wh;
            load_w8(bf16 ? (const void *)wt[j] : (const void *)wtf[j], 0, bf16, &wl, &wh);
            _Pragma("GCC unroll 8") for (int r = 0; r < MRt; r++) {
                alo[r][j] = _mm256_fmadd_pd(wl, xl[r], alo[r][j]);
                ahi[r][j] = _mm256_fmadd_pd(wh, xh[r], ahi[r][j]);
            }
        }
    }
    _Pragma("GCC unroll 8") for (int r = 0; r < MRt; r++)
        _Pragma("GCC unroll 8") for (int j = 0; j < NRt; j++)
            job->y[(size_t)(m + r) * job->ldy + n + j] = reduce8(alo[r][j], ahi[r][j]);
}

/* Rows of W in the outer loop so each weight row pair is streamed once per
 * pair of input rows; decode (M = 1) takes 4 weight rows at a time. */
ALWAYS_INLINE void gemm_f_rows(const td_gemm_job *job, int n0, int n1, int bf16)
{
    int n = n0;
    if (job->M == 1) {
        for (; n + 4 <= n1; n += 4)
            tile_f(job, 0, n, 1, 4, bf16);
        for (; n < n1; n++)
            tile_f(job, 0, n, 1, 1, bf16);
        return;
    }
    for (; n + 2 <= n1; n += 2) {
        int m = 0;
        for (; m + 2 <= job->M; m += 2)
            tile_f(job, m, n, 2, 2, bf16);
        if (m < job->M)
            tile_f(job, m, n, 1, 2, bf16);
    }
    for (; n < n1; n++) {
        int m = 0;
        for (; m + 2 <= job->M; m += 2)
            tile_f(job, m, n, 2, 1, bf16);
        if (m < job->M)
            tile_f(job, m, n, 1, 1, bf16);
    }
}

void td_gemm_f32_rows_avx2(const td_gemm_job *job, int n0, int n1)
{
    if (job->M <= SM_MAXM_F)
        sm_gemm_f(job, n0, n1, 0);
    else
        gemm_f_rows(job, n0, n1, 0);
}

void td_gemm_bf16_rows_avx2(const td_gemm_job *job, int n0, int n1)
{
    if (job->M <= SM_MAXM_F)
        sm_gemm_f(job, n0, n1, 1);
    else
        gemm_f_rows(job, n0, n1, 1);
}
