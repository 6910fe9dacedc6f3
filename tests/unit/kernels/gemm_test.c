/* GEMMs: the scalar path against an independent formulation of
 * docs/numerics.md, every SIMD path against the scalar path bit for bit,
 * and invariance under thread count and batch composition. */
#include <stdint.h>

#include "kernels/kernels.h"
#include "tests/td_test.h"

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float rnd_unit(void) { return (float)(rnd() & 0xffffff) / 16777216.0f * 2.0f - 1.0f; }

/* A weight with random contents (no NaN codes) and owned buffers. */
typedef struct {
    td_weight w;
    void *data;
    uint8_t *scale;
} test_weight;

static test_weight make_weight(td_wtype type, int n, int k)
{
    test_weight t = {.w = {.type = type, .n = n, .k = k}};
    size_t ns = 0, nbytes = 0;
    switch (type) {
    case TD_W_F32:  nbytes = (size_t)n * k * 4; break;
    case TD_W_BF16: nbytes = (size_t)n * k * 2; break;
    case TD_W_FP8:  nbytes = (size_t)n * k; ns = (size_t)((n + 127) / 128) * ((k + 127) / 128); break;
    case TD_W_FP4:  nbytes = (size_t)n * k / 2; ns = (size_t)n * (k / 32); break;
    }
    t.data = malloc(nbytes);
    t.scale = ns ? malloc(ns) : NULL;
    for (size_t i = 0; i < nbytes / 2; i++) {
        uint16_t *d = t.data;
        if (type == TD_W_BF16)
            d[i] = td_f32_to_bf16(ldexpf(rnd_unit(), (int)(rnd() % 12) - 6));
    }
    if (type == TD_W_F32)
        for (size_t i = 0; i < (size_t)n * k; i++)
            ((float *)t.data)[i] = ldexpf(rnd_unit(), (int)(rnd() % 12) - 6);
    if (type == TD_W_FP8 || type == TD_W_FP4) {
        uint8_t *d = t.data;
        for (size_t i = 0; i < nbytes; i++) {
            d[i] = (uint8_t)rnd();
            if (type == TD_W_FP8 && (d[i] & 0x7f) == 0x7f)
                d[i] = 0x3f;
        }
        for (size_t i = 0; i < ns; i++)
            t.scale[i] = (uint8_t)(127 - 12 + (int)(rnd() % 16));
    }
    t.w.data = t.data;
    t.w.scale = t.scale;
    return t;
}

static void free_weight(test_weight *t)
{
    free(t->data);
    free(t->scale);
}

/* x[M][K] with a random magnitude per 128-block; quantised for td_gemm_q. */
static void make_input(int M, int K, float *x, uint8_t *q, int8_t *e)
{
    for (int i = 0; i < M * K; i += 128) {
        float mag = ldexpf(1.0f, (int)(rnd() % 20) - 10);
        for (int j = i; j < i + 128 && j < M * K; j++)
            x[j] = rnd_unit() * mag;
    }
    if (q && K % 128 == 0)
        td_act_quant_fp8(x, M, K, q, e);
}

/* Independent formulation: dequantise every element to a double. */
static double w_val(const td_weight *w, int n, int k)
{
    switch (w->type) {
    case TD_W_F32:
        return ((const float *)w->data)[(size_t)n * w->k + k];
    case TD_W_BF16:
        return td_bf16_to_f32(((const uint16_t *)w->data)[(size_t)n * w->k + k]);
    case TD_W_FP8:
        return td_e4m3_to_f32(((const uint8_t *)w->data)[(size_t)n * w->k + k]);
    case TD_W_FP4: {
        uint8_t b = ((const uint8_t *)w->data)[(size_t)n * (w->k / 2) + k / 2];
        return td_e2m1_to_f32(k & 1 ? b >> 4 : b & 15);
    }
    }
    return 0;
}

static void ref_gemm_q(const td_weight *w, const uint8_t *q, const int8_t *e, int M, float *y)
{
    int K = w->k, blk = w->type == TD_W_FP8 ? 128 : 32;
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < w->n; n++) {
            double acc = 0;
            for (int k0 = 0; k0 < K; k0 += blk) {
                double s = 0;
                for (int k = k0; k < k0 + blk; k++)
                    s += td_e4m3_to_f32(q[(size_t)m * K + k]) * w_val(w, n, k);
                int sw = w->type == TD_W_FP8 ? w->scale[(n / 128) * ((K + 127) / 128) + k0 / 128]
                                             : w->scale[(size_t)n * (K / 32) + k0 / 32];
                acc += ldexp(s, e[m * (K / 128) + k0 / 128] + sw - 127);
            }
            y[(size_t)m * w->n + n] = (float)acc;
        }
    }
}

static void ref_gemm_f(const td_weight *w, const float *x, int M, float *y)
{
    int K = w->k;
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < w->n; n++) {
            double p[8] = {0};
            for (int k = 0; k < K; k++)
                p[k % 8] += (double)x[(size_t)m * K + k] * w_val(w, n, k);
            y[(size_t)m * w->n + n] = (float)(((p[0] + p[4]) + (p[2] + p[6])) +
                                              ((p[1] + p[5]) + (p[3] + p[7])));
        }
    }
}

/* Runs the GEMM of w on (x or q/e); y is [M][N] dense. */
static void run(td_pool *pool, const test_weight *t, const float *x, const uint8_t *q,
                const int8_t *e, int M, float *y)
{
    if (t->w.type == TD_W_FP8 || t->w.type == TD_W_FP4)
        td_gemm_q(pool, &t->w, q, e, M, y, t->w.n);
    else
        td_gemm_f(pool, &t->w, x, M, y, t->w.n);
}

static int same_bits(const float *a, const float *b, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&a[i], &b[i], 4) != 0) {
            fprintf(stderr, "%s: mismatch at %zu: %a vs %a\n", what, i, (double)a[i], (double)b[i]);
            return 0;
        }
    }
    return 1;
}

static const int Ms[] = {1, 2, 3, 7, 8, 17, 64};
static const int Ns_q[] = {1, 5, 13, 130, 257};
static const int Ks_q[] = {128, 384, 640, 1152};
static const int Ns_f[] = {1, 3, 9, 66};
static const int Ks_f[] = {1, 7, 8, 13, 100, 385, 1030};

static void scalar_matches_reference(void)
{
    td_kernels_init(TD_ISA_SCALAR);
    const td_wtype types[] = {TD_W_FP8, TD_W_FP4, TD_W_F32, TD_W_BF16};
    for (int ti = 0; ti < 4; ti++) {
        int quant = types[ti] == TD_W_FP8 || types[ti] == TD_W_FP4;
        int M = 3, N = quant ? 257 : 66, K = quant ? 640 : 385;
        test_weight t = make_weight(types[ti], N, K);
        float *x = malloc((size_t)M * K * 4), *y = malloc((size_t)M * N * 4), *r = malloc((size_t)M * N * 4);
        uint8_t *q = malloc((size_t)M * K);
        int8_t *e = malloc((size_t)M * K / 128 + 1);
        make_input(M, K, x, quant ? q : NULL, e);
        run(NULL, &t, x, q, e, M, y);
        if (quant)
            ref_gemm_q(&t.w, q, e, M, r);
        else
            ref_gemm_f(&t.w, x, M, r);
        TD_CHECK(same_bits(y, r, (size_t)M * N, "scalar vs reference"));
        /* And it is the product it claims to be (catches a swapped nibble). */
        for (int m = 0; m < M; m++) {
            double s = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                double xv = quant ? td_e4m3_to_f32(q[m * K + k]) * ldexp(1, e[m * (K / 128) + k / 128]) : x[m * K + k];
                int sw = types[ti] == TD_W_FP8 ? t.scale[(K + 127) / 128 * 0 + k / 128] - 127
                       : types[ti] == TD_W_FP4 ? t.scale[k / 32] - 127 : 0;
                double wv = w_val(&t.w, 0, k) * ldexp(1, sw);
                s += xv * wv;
                mag += fabs(xv * wv);
            }
            TD_CHECK(fabs(s - y[m * N]) <= 1e-6 * mag + 1e-30);
        }
        free(x); free(y); free(r); free(q); free(e);
        free_weight(&t);
    }
}

static void fp4_nibble_order(void)
{
    td_kernels_init(TD_ISA_SCALAR);
    uint8_t data[64] = {0x21};              /* col 0 = 0.5 (low), col 1 = 1.0 (high) */
    uint8_t scale[4] = {127, 127, 127, 127};
    td_weight w = {.type = TD_W_FP4, .n = 1, .k = 128, .data = data, .scale = scale};
    uint8_t q[128] = {0};
    int8_t e[1] = {0};
    float y;
    q[0] = 0x38;                            /* x[0] = 1 */
    td_gemm_q(NULL, &w, q, e, 1, &y, 1);
    TD_CHECK(y == 0.5f);
    q[0] = 0;
    q[1] = 0x38;                            /* x[1] = 1 */
    td_gemm_q(NULL, &w, q, e, 1, &y, 1);
    TD_CHECK(y == 1.0f);
}

/* Every shape of the sweep, with ISA a vs ISA b (and thread counts). */
static void sweep(td_isa isa, td_pool *pool, int batch_check)
{
    const td_wtype types[] = {TD_W_FP8, TD_W_FP4, TD_W_F32, TD_W_BF16};
    for (int ti = 0; ti < 4; ti++) {
        int quant = types[ti] == TD_W_FP8 || types[ti] == TD_W_FP4;
        const int *Ns = quant ? Ns_q : Ns_f, *Ks = quant ? Ks_q : Ks_f;
        int nN = quant ? 5 : 4, nK = quant ? 4 : 7;
        for (int ni = 0; ni < nN; ni++) {
            for (int ki = 0; ki < nK; ki++) {
                int N = Ns[ni], K = Ks[ki];
                test_weight t = make_weight(types[ti], N, K);
                for (int mi = 0; mi < 7; mi++) {
                    int M = Ms[mi];
                    if ((size_t)M * N * K > 3000000 && M > 8)
                        continue;   /* keep the scalar reference fast */
                    float *x = malloc((size_t)M * K * 4);
                    float *y0 = malloc((size_t)M * N * 4), *y1 = malloc((size_t)M * N * 4);
                    uint8_t *q = malloc((size_t)M * K);
                    int8_t *e = malloc((size_t)M * K / 128 + 1);
                    make_input(M, K, x, quant ? q : NULL, e);
                    td_kernels_init(TD_ISA_SCALAR);
                    run(NULL, &t, x, q, e, M, y0);
                    td_kernels_init((int)isa);
                    run(pool, &t, x, q, e, M, y1);
                    char what[96];
                    snprintf(what, sizeof what, "%s type %d M %d N %d K %d threads %d",
                             td_isa_name(isa), types[ti], M, N, K, td_pool_size(pool));
                    TD_CHECK(same_bits(y0, y1, (size_t)M * N, what));
                    if (batch_check) {
                        /* Row m alone equals row m of the batch. */
                        for (int m = 0; m < M; m += (M > 8 ? 5 : 1)) {
                            run(pool, &t, x + (size_t)m * K, q + (size_t)m * K,
                                e + (size_t)m * (K / 128), 1, y1);
                            TD_CHECK(same_bits(y0 + (size_t)m * N, y1, (size_t)N, "batch invariance"));
                        }
                    }
                    free(x); free(y0); free(y1); free(q); free(e);
                }
                free_weight(&t);
            }
        }
    }
    td_kernels_init(-1);
}

static void isa_avx2_bit_exact(void)
{
    if (td_kernels_init(TD_ISA_AVX2) != TD_ISA_AVX2)
        TD_SKIP("CPU lacks AVX2");
    sweep(TD_ISA_AVX2, NULL, 1);
}

static void isa_avx512_bit_exact(void)
{
    if (td_kernels_init(TD_ISA_AVX512) != TD_ISA_AVX512)
        TD_SKIP("CPU lacks AVX-512");
    sweep(TD_ISA_AVX512, NULL, 1);
}

/* Decode-sized shapes of the register GEMVs (M <= 8): K chunked, row chunks
 * with ragged tails, F32/BF16 K chunked with a tail; best ISA vs scalar. */
static void decode_shapes(void)
{
    td_isa best = td_kernels_init(-1);
    if (best == TD_ISA_SCALAR)
        TD_SKIP("no SIMD path");
    const struct { td_wtype t; int n, k, mmax; } cs[] = {
        {TD_W_FP8, 131, 2048, 8}, {TD_W_FP8, 67, 9216, 2}, {TD_W_FP4, 70, 2048, 8},
        {TD_W_FP4, 9, 9216, 2}, {TD_W_BF16, 67, 4100, 4}, {TD_W_F32, 66, 2741, 4},
        {TD_W_BF16, 130, 1024, 4},
    };
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        int quant = cs[c].t == TD_W_FP8 || cs[c].t == TD_W_FP4, N = cs[c].n, K = cs[c].k;
        test_weight t = make_weight(cs[c].t, N, K);
        for (int M = 1; M <= cs[c].mmax; M++) {
            float *x = malloc((size_t)M * K * 4), *y0 = malloc((size_t)M * N * 4), *y1 = malloc((size_t)M * N * 4);
            uint8_t *q = malloc((size_t)M * K);
            int8_t *e = malloc((size_t)M * K / 128 + 1);
            make_input(M, K, x, quant ? q : NULL, e);
            td_kernels_init(TD_ISA_SCALAR);
            run(NULL, &t, x, q, e, M, y0);
            td_kernels_init((int)best);
            run(NULL, &t, x, q, e, M, y1);
            char what[96];
            snprintf(what, sizeof what, "decode type %d M %d N %d K %d", cs[c].t, M, N, K);
            TD_CHECK(same_bits(y0, y1, (size_t)M * N, what));
            free(x); free(y0); free(y1); free(q); free(e);
        }
        free_weight(&t);
    }
    td_kernels_init(-1);
}

static void thread_count_invariance(void)
{
    td_isa best = td_kernels_init(-1);
    for (int nt = 2; nt <= 4; nt += 2) {
        td_pool *pool;
        TD_CHECK(td_pool_create(&pool, nt) == TD_OK);
        sweep(best, pool, 0);
        td_pool_destroy(pool);
    }
}

static void ldy_and_zero_sizes(void)
{
    td_kernels_init(-1);
    test_weight t = make_weight(TD_W_FP8, 40, 256);
    float x[2 * 256];
    uint8_t q[2 * 256];
    int8_t e[4];
    make_input(2, 256, x, q, e);
    float y[2 * 50], r[2 * 40];
    for (int i = 0; i < 100; i++)
        y[i] = -7.0f;
    td_gemm_q(NULL, &t.w, q, e, 2, y, 50);
    td_gemm_q(NULL, &t.w, q, e, 2, r, 40);
    TD_CHECK(same_bits(y, r, 40, "ldy row 0") && same_bits(y + 50, r + 40, 40, "ldy row 1"));
    for (int i = 40; i < 50; i++)
        TD_CHECK(y[i] == -7.0f && y[50 + i] == -7.0f);
    td_gemm_q(NULL, &t.w, q, e, 0, y, 50);   /* M = 0 does nothing */
    free_weight(&t);
}

TD_TEST_MAIN({"scalar_matches_reference", scalar_matches_reference},
             {"fp4_nibble_order", fp4_nibble_order},
             {"isa_avx2_bit_exact", isa_avx2_bit_exact},
             {"isa_avx512_bit_exact", isa_avx512_bit_exact},
             {"decode_shapes", decode_shapes},
             {"thread_count_invariance", thread_count_invariance},
             {"ldy_and_zero_sizes", ldy_and_zero_sizes})
