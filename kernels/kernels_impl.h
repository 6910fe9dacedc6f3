/* Internal to kernels/: the per-ISA function table and the job record the
 * GEMM entry points hand to it. Not part of the public API (kernels.h).
 *
 * Every ISA implements the same "rows" functions: compute y[m][n] for all M
 * input rows and the weight rows n in [n0, n1). td_gemm_q / td_gemm_f split
 * N into such ranges and run them on the pool, so each output element is
 * computed by exactly one thread with code that does not depend on the split.
 *
 * Summation order (what makes all ISAs bit-identical):
 *  - FP8 / FP4: each 128-block (FP8) or 32-block (FP4) dot product is exact in
 *    fp64 in any order; the block terms (times the two power-of-two scales,
 *    also exact) are added to one fp64 accumulator in increasing K order.
 *  - F32 / BF16: 8 fp64 partial sums p[j] take k = j (mod 8) in increasing k;
 *    then q[i] = p[i] + p[i+4], r[i] = q[i] + q[i+2], s = r[0] + r[1]
 *    (the natural horizontal reduction of one zmm, or of two ymm added). */
#ifndef TD_KERNELS_IMPL_H
#define TD_KERNELS_IMPL_H

#include "kernels/kernels.h"

typedef struct {
    const td_weight *w;
    const uint8_t *q;  /* [M][K] e4m3 codes (td_gemm_q) */
    const int8_t *e;   /* [M][K/128] scale exponents (td_gemm_q) */
    const float *x;    /* [M][K] (td_gemm_f) */
    int M;
    float *y;          /* [M][ldy] */
    int ldy;
    int rows_per_task; /* N split used by the dispatcher */
} td_gemm_job;

typedef void (*td_gemm_rows_fn)(const td_gemm_job *job, int n0, int n1);

typedef void (*td_i8_dot32_fn)(const int8_t *q, int nq, const int8_t *k, int d,
                               int32_t *out);

typedef struct {
    td_gemm_rows_fn fp8, fp4, f32, bf16;
    td_i8_dot32_fn i8dot32;
} td_kernel_ops;

void td_i8_dot32_generic(const int8_t *q, int nq, const int8_t *k, int d, int32_t *out);
void td_i8_dot32_avx2(const int8_t *q, int nq, const int8_t *k, int d, int32_t *out);

/* Scalar reference (kernels/cpu/generic/gemm_generic.c). */
void td_gemm_fp8_rows_generic(const td_gemm_job *job, int n0, int n1);
void td_gemm_fp4_rows_generic(const td_gemm_job *job, int n0, int n1);
void td_gemm_f32_rows_generic(const td_gemm_job *job, int n0, int n1);
void td_gemm_bf16_rows_generic(const td_gemm_job *job, int n0, int n1);

/* x86 paths; each library is compiled with its own -m flags and must only be
 * called after td_kernels_init found the ISA. */
void td_gemm_fp8_rows_avx2(const td_gemm_job *job, int n0, int n1);
void td_gemm_fp4_rows_avx2(const td_gemm_job *job, int n0, int n1);
void td_gemm_f32_rows_avx2(const td_gemm_job *job, int n0, int n1);
void td_gemm_bf16_rows_avx2(const td_gemm_job *job, int n0, int n1);
void td_gemm_fp8_rows_avx512(const td_gemm_job *job, int n0, int n1);
void td_gemm_fp4_rows_avx512(const td_gemm_job *job, int n0, int n1);
void td_gemm_f32_rows_avx512(const td_gemm_job *job, int n0, int n1);
void td_gemm_bf16_rows_avx512(const td_gemm_job *job, int n0, int n1);

/* Tables of exact fp64 values: e4m3 code -> value, e2m1 nibble -> value. */
extern double td_e4m3_f64[256];
extern double td_e2m1_f64[16];

/* 2^e as a double, for |e| < 1023 (built from bits: exact and cheap). */
static inline double td_pow2d(int e)
{
    union { uint64_t u; double d; } v = {.u = (uint64_t)(e + 1023) << 52};
    return v.d;
}

#endif
