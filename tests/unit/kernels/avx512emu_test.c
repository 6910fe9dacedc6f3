/* The AVX-512 GEMMs compiled against SIMDe (portable emulation of the
 * intrinsics) and checked bit for bit against the scalar reference. Lets a
 * machine without AVX-512 exercise that file's logic (decode orders, tiles,
 * masks, reductions); the native path is tested by gemm_test when the CPU
 * has AVX-512. Built only when simde headers are installed. */
#include <stdint.h>

#include "kernels/kernels_impl.h"
#include "tests/td_test.h"

void td_gemm_fp8_rows_avx512emu(const td_gemm_job *job, int n0, int n1);
void td_gemm_fp4_rows_avx512emu(const td_gemm_job *job, int n0, int n1);
void td_gemm_f32_rows_avx512emu(const td_gemm_job *job, int n0, int n1);
void td_gemm_bf16_rows_avx512emu(const td_gemm_job *job, int n0, int n1);

static uint64_t rng_state = 0x452821e638d01377ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float rnd_unit(void) { return (float)(rnd() & 0xffffff) / 16777216.0f * 2.0f - 1.0f; }

static void check(td_wtype type, int M, int N, int K)
{
    size_t nbytes = type == TD_W_F32 ? (size_t)N * K * 4 : type == TD_W_BF16 ? (size_t)N * K * 2
                  : type == TD_W_FP8 ? (size_t)N * K : (size_t)N * K / 2;
    size_t ns = type == TD_W_FP8 ? (size_t)((N + 127) / 128) * ((K + 127) / 128)
              : type == TD_W_FP4 ? (size_t)N * (K / 32) : 0;
    uint8_t *data = malloc(nbytes + 64), *scale = malloc(ns + 1);
    for (size_t i = 0; i < nbytes; i++)
        data[i] = (uint8_t)rnd();
    if (type == TD_W_FP8)
        for (size_t i = 0; i < nbytes; i++)
            if ((data[i] & 0x7f) == 0x7f)
                data[i] = 0x3f;
    if (type == TD_W_F32)
        for (size_t i = 0; i < (size_t)N * K; i++)
            ((float *)data)[i] = ldexpf(rnd_unit(), (int)(rnd() % 12) - 6);
    if (type == TD_W_BF16)
        for (size_t i = 0; i < (size_t)N * K; i++)
            ((uint16_t *)data)[i] = td_f32_to_bf16(ldexpf(rnd_unit(), (int)(rnd() % 12) - 6));
    for (size_t i = 0; i < ns; i++)
        scale[i] = (uint8_t)(115 + rnd() % 16);
    td_weight w = {.type = type, .n = N, .k = K, .data = data, .scale = scale};
    float *x = malloc((size_t)M * K * 4);
    uint8_t *q = malloc((size_t)M * K);
    int8_t *e = malloc((size_t)M * K / 128 + 1);
    for (int i = 0; i < M * K; i++)
        x[i] = ldexpf(rnd_unit(), (int)(rnd() % 20) - 10);
    if (K % 128 == 0)
        td_act_quant_fp8(x, M, K, q, e);
    float *y0 = malloc((size_t)M * N * 4), *y1 = malloc((size_t)M * N * 4);
    td_gemm_job job = {.w = &w, .q = q, .e = e, .x = x, .M = M, .y = y0, .ldy = N};
    td_gemm_rows_fn ref = type == TD_W_FP8 ? td_gemm_fp8_rows_generic : type == TD_W_FP4 ? td_gemm_fp4_rows_generic
                        : type == TD_W_F32 ? td_gemm_f32_rows_generic : td_gemm_bf16_rows_generic;
    td_gemm_rows_fn emu = type == TD_W_FP8 ? td_gemm_fp8_rows_avx512emu : type == TD_W_FP4 ? td_gemm_fp4_rows_avx512emu
                        : type == TD_W_F32 ? td_gemm_f32_rows_avx512emu : td_gemm_bf16_rows_avx512emu;
    ref(&job, 0, N);
    job.y = y1;
    int cut = N / 3;                 /* two ranges, the second not 4-aligned */
    emu(&job, 0, cut);
    emu(&job, cut, N);
    if (memcmp(y0, y1, (size_t)M * N * 4) != 0) {
        fprintf(stderr, "avx512emu type %d M %d N %d K %d differs\n", type, M, N, K);
        TD_CHECK(0);
    }
    free(data); free(scale); free(x); free(q); free(e); free(y0); free(y1);
}

static void avx512_emulated_bit_exact(void)
{
    const int Ms[] = {1, 2, 3, 7, 8, 17};
    for (int mi = 0; mi < 6; mi++) {
        int M = Ms[mi];
        check(TD_W_FP8, M, 13, 384);
        check(TD_W_FP8, M, 130, 640);
        check(TD_W_FP4, M, 5, 128);
        check(TD_W_FP4, M, 66, 1152);
        check(TD_W_F32, M, 9, 13);
        check(TD_W_F32, M, 6, 385);
        check(TD_W_BF16, M, 9, 7);
        check(TD_W_BF16, M, 7, 1030);
    }
    check(TD_W_FP8, 1, 257, 9216);   /* more than one K chunk */
    /* Decode-sized paths (gemv_small.h): K chunked for M > 1, row chunks
     * of 64 with a ragged tail, F32/BF16 K tails of every residue mod 16. */
    for (int M = 1; M <= 8; M++) {
        check(TD_W_FP8, M, 131, 2048);
        check(TD_W_FP4, M, 70, 2048);
    }
    for (int M = 1; M <= 4; M++)
        for (int K = 1; K <= 33; K += 4) {
            check(TD_W_F32, M, 67, K);
            check(TD_W_BF16, M, 67, K);
        }
    check(TD_W_BF16, 2, 5, 4100);   /* K chunked */
    check(TD_W_F32, 3, 5, 2740);
    check(TD_W_FP4, 3, 64, 4096);
}

TD_TEST_MAIN({"avx512_emulated_bit_exact", avx512_emulated_bit_exact})
