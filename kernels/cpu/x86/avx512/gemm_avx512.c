/* Placeholder: forwards to the scalar reference until the SIMD path lands. */
#include "kernels/kernels_impl.h"

void td_gemm_fp8_rows_avx512(const td_gemm_job *job, int n0, int n1) { td_gemm_fp8_rows_generic(job, n0, n1); }
void td_gemm_fp4_rows_avx512(const td_gemm_job *job, int n0, int n1) { td_gemm_fp4_rows_generic(job, n0, n1); }
void td_gemm_f32_rows_avx512(const td_gemm_job *job, int n0, int n1) { td_gemm_f32_rows_generic(job, n0, n1); }
void td_gemm_bf16_rows_avx512(const td_gemm_job *job, int n0, int n1) { td_gemm_bf16_rows_generic(job, n0, n1); }
