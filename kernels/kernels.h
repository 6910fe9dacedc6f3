/* CPU kernels for the V4 forward pass.
 *
 * Arithmetic follows docs/numerics.md: every dot product is accumulated in
 * fp64 and rounded to fp32 once, so a row's result never depends on how
 * many rows share the call, how the work is split over threads, or which
 * ISA path runs (scalar, AVX2, AVX-512). The ISA is chosen once, at
 * td_kernels_init(); callers never see function pointers.
 *
 * Activations are fp32 arrays. "bf16 row" means every value is exactly
 * representable in bf16 (the caller rounded it with td_bf16_round).
 * Nothing here allocates after td_pool_create().
 */
#ifndef TD_KERNELS_H
#define TD_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/err.h"

/* ---- scalar formats ---------------------------------------------------- */

/* Inline: the forward pass rounds to bf16 at every step of docs/numerics.md,
 * millions of times per token. */
static inline float td_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Round to nearest even; NaN stays a quiet NaN; overflow rounds to inf. */
static inline uint16_t td_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float td_bf16_round(float f) { return td_bf16_to_f32(td_f32_to_bf16(f)); }
void     td_bf16_round_n(float *x, size_t n);  /* in place */
float    td_e4m3_to_f32(uint8_t b);            /* e4m3fn; 0x7f/0xff are NaN */
uint8_t  td_f32_to_e4m3(float f);              /* RNE; |f| <= 448 expected */
float    td_e2m1_to_f32(uint8_t nibble);       /* low 4 bits */
uint8_t  td_f32_to_e2m1(float f);              /* RNE; |f| <= 6 expected */
/* E8M0 scale byte b means 2^(b-127); 0xff is NaN. */
static inline int td_e8m0_exp(uint8_t b) { return (int)b - 127; }

/* Power-of-two scale exponent e (scale 2^e) for a block with max |x| amax,
 * as docs/numerics.md pow2_scale (fmax 448 for FP8, 6 for FP4). */
int td_pow2_scale_exp(float amax, float fmax);

/* ---- activation quantisation ------------------------------------------- */

/* FP8 e4m3 activation quantisation of x[M][K] in blocks of 128 along K
 * (K % 128 == 0): q[M][K] codes, e[M][K/128] scale exponents. */
void td_act_quant_fp8(const float *x, int M, int K, uint8_t *q, int8_t *e);

/* In-place simulation: x <- bf16(dequant(quant(x))). FP8 e4m3 with blocks of
 * `block` values (n % block == 0); FP4 e2m1 with blocks of 32. */
void td_fake_fp8(float *x, int n, int block);
void td_fake_fp4(float *x, int n);

/* ---- weights ------------------------------------------------------------ */

typedef enum {
    TD_W_F32,   /* float[N][K] */
    TD_W_BF16,  /* uint16 bf16[N][K] */
    TD_W_FP8,   /* e4m3 bytes [N][K]; scale E8M0 [ceil(N/128)][ceil(K/128)] */
    TD_W_FP4,   /* e2m1 packed [N][K/2], low nibble = even column;
                   scale E8M0 [N][K/32] */
} td_wtype;

typedef struct {
    td_wtype type;
    int n;                 /* output features (rows) */
    int k;                 /* input features (columns) */
    const void *data;      /* borrowed: usually points into the mmap'd file */
    const uint8_t *scale;  /* borrowed; FP8 and FP4 only */
} td_weight;

/* ---- thread pool -------------------------------------------------------- */

typedef struct td_pool td_pool;

/* nthreads <= 0 means one per online CPU. */
td_err td_pool_create(td_pool **out, int nthreads);
void   td_pool_destroy(td_pool *pool);
int    td_pool_size(const td_pool *pool);
/* Runs fn(arg, i) for i in [0, ntasks) on the pool's threads (the caller
 * takes part) and returns when all are done. No allocation. */
void   td_pool_run(td_pool *pool, void (*fn)(void *arg, int i), void *arg, int ntasks);

/* ---- matrix kernels ------------------------------------------------------
 * y[m][n] = f32(sum64_k x[m][k] * W[n][k]), rows of y are ldy floats apart.
 * pool may be NULL (single-threaded). */

/* W is TD_W_FP8 or TD_W_FP4; the input is already quantised by
 * td_act_quant_fp8 (q, e as above). */
void td_gemm_q(td_pool *pool, const td_weight *w, const uint8_t *q,
               const int8_t *e, int M, float *y, int ldy);

/* W is TD_W_F32 or TD_W_BF16; x[M][K] fp32. */
void td_gemm_f(td_pool *pool, const td_weight *w, const float *x, int M,
               float *y, int ldy);

/* ---- integer block dot products (the lightning indexer's FP4 scores) ----
 * out[h][b] = sum_{i<32} q[h][32b+i] * k[32b+i] for h < nq, b < d/32
 * (d % 32 == 0; q is [nq][d]). Values in [-127, 127]: the sums are exact. */
void td_i8_dot32(const int8_t *q, int nq, const int8_t *k, int d, int32_t *out);

/* ---- ISA ---------------------------------------------------------------- */

typedef enum { TD_ISA_SCALAR, TD_ISA_AVX2, TD_ISA_AVX512 } td_isa;

/* Picks the best ISA this CPU supports, once; TD_ISA env override is read by
 * the caller (cmd/) and passed in as `force` (-1 = auto). Returns the ISA in use. */
td_isa td_kernels_init(int force);
const char *td_isa_name(td_isa isa);

#endif
