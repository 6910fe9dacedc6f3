/* Micro-benchmark of the GEMMs: weight-streaming GB/s for decode GEMVs
 * against memcpy and a read-only sweep of the same bytes (measured in the
 * same run), and GFLOP/s for M = 8 and M = 128.
 * Usage: bench_kernels [isa(-1 auto,0,1,2)] [threads]
 * Cases: FP8 and FP4 expert/attention shapes, the BF16 head (vocab x dim,
 * the largest single read of a decode step) and an F32 matrix; decode
 * batches M = 1, 2, 4 are reported as GB/s of weights.
 * Several copies of each weight (>= 256 MiB together) are cycled so every
 * call streams from DRAM, not from the last-level cache. */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of the whole process: on a shared machine the wall clock
 * also counts time other processes held our cores. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static double g_cpu_share;   /* CPU seconds / (wall seconds * threads) of the last bench_gemm */

static uint64_t rs = 88172645463325252ull;
static uint8_t rnd8(void)
{
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    return (uint8_t)(rs >> 24);
}

enum { MAXCOPIES = 64 };

typedef struct {
    td_weight w[MAXCOPIES];
    int ncopies;
    size_t bytes;   /* weight bytes of one copy (data + scale) */
} wset;

static wset make_set(td_wtype type, int n, int k)
{
    wset s = {0};
    size_t data = type == TD_W_FP8 ? (size_t)n * k : type == TD_W_FP4 ? (size_t)n * k / 2
                : type == TD_W_BF16 ? (size_t)n * k * 2 : (size_t)n * k * 4;
    size_t scale = type == TD_W_FP8 ? (size_t)((n + 127) / 128) * (k / 128)
                 : type == TD_W_FP4 ? (size_t)n * (k / 32) : 1;
    s.bytes = data + scale;
    s.ncopies = (int)((256u << 20) / s.bytes) + 1;
    if (s.ncopies > MAXCOPIES)
        s.ncopies = MAXCOPIES;
    for (int c = 0; c < s.ncopies; c++) {
        uint8_t *d = aligned_alloc(64, (data + 63) & ~(size_t)63);
        uint8_t *sc = malloc(scale);
        for (size_t i = 0; i < data; i++) {
            d[i] = rnd8();
            if (type == TD_W_FP8 && (d[i] & 0x7f) == 0x7f)
                d[i] = 0x3f;
        }
        /* finite bf16 / f32 values of moderate size (no inf/NaN patterns) */
        if (type == TD_W_BF16)
            for (size_t i = 1; i < data; i += 2)
                d[i] = (uint8_t)((d[i] & 0x80) | (0x3c + (d[i] & 3)));
        if (type == TD_W_F32)
            for (size_t i = 3; i < data; i += 4)
                d[i] = (uint8_t)((d[i] & 0x80) | (0x3c + (d[i] & 3)));
        for (size_t i = 0; i < scale; i++)
            sc[i] = (uint8_t)(120 + rnd8() % 8);
        s.w[c] = (td_weight){.type = type, .n = n, .k = k, .data = d, .scale = sc};
    }
    return s;
}

typedef struct {
    const uint8_t *src;
    uint8_t *dst;
    size_t len;
    int parts;
    double sink[64];
} copy_job;

static void copy_part(void *arg, int i)
{
    copy_job *j = arg;
    size_t a = j->len * (size_t)i / (size_t)j->parts, b = j->len * (size_t)(i + 1) / (size_t)j->parts;
    memcpy(j->dst + a, j->src + a, b - a);
}

__attribute__((target("avx2"))) static void read_part(void *arg, int i)
{
    copy_job *j = arg;
    size_t a = (j->len * (size_t)i / (size_t)j->parts) & ~(size_t)31;
    size_t b = (j->len * (size_t)(i + 1) / (size_t)j->parts) & ~(size_t)31;
    __m256i s0 = _mm256_setzero_si256(), s1 = s0;
    for (size_t p = a; p + 64 <= b; p += 64) {
        s0 = _mm256_xor_si256(s0, _mm256_load_si256((const __m256i *)(j->src + p)));
        s1 = _mm256_xor_si256(s1, _mm256_load_si256((const __m256i *)(j->src + p + 32)));
    }
    s0 = _mm256_xor_si256(s0, s1);
    j->sink[i] = (double)_mm256_extract_epi32(s0, 0);
}

/* GB/s of memcpy (bytes read) and of a read-only sweep over the set. */
static void bench_mem(td_pool *pool, const wset *s, double *copy_gbs, double *read_gbs)
{
    size_t len = s->bytes - (s->bytes & 63);
    uint8_t *dst = aligned_alloc(64, len);
    memset(dst, 1, len);
    copy_job j = {.dst = dst, .len = len, .parts = td_pool_size(pool)};
    double best_c = 1e9, best_r = 1e9;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        for (int c = 0; c < s->ncopies; c++) {
            j.src = s->w[c].data;
            td_pool_run(pool, copy_part, &j, j.parts);
        }
        double t1 = now();
        for (int c = 0; c < s->ncopies; c++) {
            j.src = s->w[c].data;
            td_pool_run(pool, read_part, &j, j.parts);
        }
        double t2 = now();
        best_c = t1 - t0 < best_c ? t1 - t0 : best_c;
        best_r = t2 - t1 < best_r ? t2 - t1 : best_r;
    }
    *copy_gbs = (double)len * s->ncopies / best_c * 1e-9;
    *read_gbs = (double)len * s->ncopies / best_r * 1e-9;
    free(dst);
}

/* Seconds per call (best of a few sweeps over the copies). */
static double bench_gemm(td_pool *pool, const wset *s, int M, int sweeps)
{
    int K = s->w[0].k, N = s->w[0].n;
    float *x = malloc((size_t)M * K * 4), *y = malloc((size_t)M * N * 4);
    uint8_t *q = malloc((size_t)M * K);
    int8_t *e = malloc((size_t)M * K / 128);
    for (size_t i = 0; i < (size_t)M * K; i++)
        x[i] = (float)((int)rnd8() - 128) / 64.0f;
    td_act_quant_fp8(x, M, K, q, e);
    int calls = M >= 64 ? 2 : s->ncopies;
    double best = 1e9, wall0 = now(), cpu0 = cpu_now();
    int quant = s->w[0].type == TD_W_FP8 || s->w[0].type == TD_W_FP4;
    for (int rep = 0; rep < sweeps; rep++) {
        double t0 = now();
        for (int c = 0; c < calls; c++) {
            if (quant)
                td_gemm_q(pool, &s->w[c], q, e, M, y, N);
            else
                td_gemm_f(pool, &s->w[c], x, M, y, N);
        }
        double t = (now() - t0) / calls;
        best = t < best ? t : best;
    }
    g_cpu_share = (cpu_now() - cpu0) / ((now() - wall0) * td_pool_size(pool));
    free(x); free(y); free(q); free(e);
    return best;
}

int main(int argc, char **argv)
{
    int force = argc > 1 ? atoi(argv[1]) : -1;
    int threads = argc > 2 ? atoi(argv[2]) : 1;
    td_isa isa = td_kernels_init(force);
    td_pool *pool = NULL;
    if (threads > 1 && td_pool_create(&pool, threads) != TD_OK)
        return 1;
    printf("isa %s, threads %d\n", td_isa_name(isa), threads);
    struct { const char *name; td_wtype t; int n, k; } cases[] = {
        {"FP8 4096x4096", TD_W_FP8, 4096, 4096},
        {"FP4 2048x4096", TD_W_FP4, 2048, 4096},
        {"BF16 129280x1024", TD_W_BF16, 129280, 1024},
        {"F32 4096x1024", TD_W_F32, 4096, 1024},
    };
    for (int c = 0; c < 4; c++) {
        wset s = make_set(cases[c].t, cases[c].n, cases[c].k);
        double cp, rd;
        bench_mem(pool, &s, &cp, &rd);
        double t1 = bench_gemm(pool, &s, 1, 3);
        printf("%s: GEMV M=1 %.3f ms, %.2f GB/s of weights (memcpy %.2f GB/s, read-only %.2f GB/s; cpu share %.2f)\n",
               cases[c].name, t1 * 1e3, (double)s.bytes / t1 * 1e-9, cp, rd, g_cpu_share);
        for (int M = 2; M <= 4; M += 2) {
            double t = bench_gemm(pool, &s, M, 3);
            printf("%s: GEMV M=%d %.3f ms, %.2f GB/s of weights (cpu share %.2f)\n", cases[c].name, M,
                   t * 1e3, (double)s.bytes / t * 1e-9, g_cpu_share);
        }
        int Ms[] = {8, 128};
        for (int i = 0; i < (cases[c].t == TD_W_BF16 ? 1 : 2); i++) {
            double t = bench_gemm(pool, &s, Ms[i], 2);
            double flops = 2.0 * Ms[i] * cases[c].n * cases[c].k;
            printf("%s: M=%d %.3f ms, %.2f GFLOP/s (cpu share %.2f)\n", cases[c].name, Ms[i], t * 1e3,
                   flops / t * 1e-9, g_cpu_share);
        }
        for (int i = 0; i < s.ncopies; i++) {
            free((void *)s.w[i].data);
            free((void *)s.w[i].scale);
        }
    }
    td_pool_destroy(pool);
    return 0;
}
