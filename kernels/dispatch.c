/* ISA selection and the GEMM entry points.
 *
 * td_kernels_init fills one static table of function pointers, once; every
 * GEMM call looks its path up there (per call, never per element) and splits
 * the N output features over the pool. A row of y is computed by the same
 * code whichever rows, threads or ISA share the call (kernels_impl.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels_impl.h"

static const td_kernel_ops ops_generic = {
    td_gemm_fp8_rows_generic, td_gemm_fp4_rows_generic,
    td_gemm_f32_rows_generic, td_gemm_bf16_rows_generic,
    td_i8_dot32_generic,
};
#ifdef TD_HAVE_X86_KERNELS
static const td_kernel_ops ops_avx2 = {
    td_gemm_fp8_rows_avx2, td_gemm_fp4_rows_avx2,
    td_gemm_f32_rows_avx2, td_gemm_bf16_rows_avx2,
    td_i8_dot32_avx2,
};
/* AVX-512 machines run the AVX2 integer dot (a 32-byte block is one ymm). */
static const td_kernel_ops ops_avx512 = {
    td_gemm_fp8_rows_avx512, td_gemm_fp4_rows_avx512,
    td_gemm_f32_rows_avx512, td_gemm_bf16_rows_avx512,
    td_i8_dot32_avx2,
};
#endif

static td_kernel_ops g_ops = {
    td_gemm_fp8_rows_generic, td_gemm_fp4_rows_generic,
    td_gemm_f32_rows_generic, td_gemm_bf16_rows_generic,
    td_i8_dot32_generic,
};

#ifdef TD_HAVE_X86_KERNELS
#include <cpuid.h>
/* clang 14's __builtin_cpu_supports does not know "f16c": ask CPUID. */
static int has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}
#endif

static int isa_supported(td_isa isa)
{
    switch (isa) {
    case TD_ISA_SCALAR:
        return 1;
#ifdef TD_HAVE_X86_KERNELS
    case TD_ISA_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               has_f16c();
    case TD_ISA_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
               isa_supported(TD_ISA_AVX2);
#endif
    default:
        return 0;
    }
}

/* Runs every GEMM of ops on a small fixed problem (partial FP8 tile, K tail
 * for F32/BF16, M = 3) and compares with the scalar reference bit for bit.
 * A guard for paths that could not be run where they were written (the
 * AVX-512 file was developed on a machine without AVX-512). ~50 us. */
static int ops_self_check(const td_kernel_ops *ops)
{
    enum { M = 3, N = 9, K = 256, KF = 21 };
    static uint8_t w8[N * K], w4[N * K / 2], s8[2], s4[N * K / 32], q[M * K];
    static float wf[N * KF], x[M * K], xf[M * KF], y0[M * N], y1[M * N];
    static uint16_t wh[N * KF];
    static int8_t e[M * K / 128];
    uint32_t r = 12345;
    for (int i = 0; i < M * K; i++) {
        r = r * 1103515245u + 12345u;
        x[i] = (float)((int)(r >> 16 & 0xff) - 128) * 0.03125f;
        w8[i % (N * K)] = (uint8_t)((r >> 8) % 0x7f) | (uint8_t)(r & 0x80);
        w4[i % (N * K / 2)] = (uint8_t)(r >> 20);
    }
    for (int i = 0; i < N * KF; i++) {
        wf[i] = (float)(i % 17) * 0.37f - 2.9f;
        wh[i] = td_f32_to_bf16(wf[i] * 1.3f);
    }
    for (int i = 0; i < M * KF; i++)
        xf[i] = x[i] * 1.7f;
    s8[0] = 120, s8[1] = 131;
    for (int i = 0; i < N * K / 32; i++)
        s4[i] = (uint8_t)(118 + i % 13);
    td_act_quant_fp8(x, M, K, q, e);
    const td_weight ws[4] = {
        {TD_W_FP8, N, K, w8, s8}, {TD_W_FP4, N, K, w4, s4},
        {TD_W_F32, N, KF, wf, NULL}, {TD_W_BF16, N, KF, wh, NULL},
    };
    const td_gemm_rows_fn fn[4] = {ops->fp8, ops->fp4, ops->f32, ops->bf16};
    const td_gemm_rows_fn ref[4] = {ops_generic.fp8, ops_generic.fp4, ops_generic.f32, ops_generic.bf16};
    /* M = 3 takes the small-M decode path, M = 1 the GEMV one: check both. */
    for (int rows = 1; rows <= M; rows += 2)
        for (int t = 0; t < 4; t++) {
            td_gemm_job job = {.w = &ws[t], .q = q, .e = e, .x = xf, .M = rows,
                               .y = y0, .ldy = N};
            ref[t](&job, 0, N);
            job.y = y1;
            fn[t](&job, 0, 5);
            fn[t](&job, 5, N);
            if (memcmp(y0, y1, sizeof(float) * (size_t)rows * N) != 0)
                return 0;
        }
    /* The integer block dot, extreme values included. */
    int8_t qi[3 * 64], ki[64];
    int32_t d0[6], d1[6];
    for (int i = 0; i < 3 * 64; i++)
        qi[i] = (int8_t)((i * 37) % 255 - 127);
    for (int i = 0; i < 64; i++)
        ki[i] = (int8_t)(i % 2 ? 127 : -127 + i);
    ops_generic.i8dot32(qi, 3, ki, 64, d0);
    ops->i8dot32(qi, 3, ki, 64, d1);
    return memcmp(d0, d1, sizeof d0) == 0;
}

td_isa td_kernels_init(int force)
{
    td_isa isa = TD_ISA_SCALAR;
    if (force >= 0 && isa_supported((td_isa)force))
        isa = (td_isa)force;
    else if (isa_supported(TD_ISA_AVX512))
        isa = TD_ISA_AVX512;
    else if (isa_supported(TD_ISA_AVX2))
        isa = TD_ISA_AVX2;

    switch (isa) {
#ifdef TD_HAVE_X86_KERNELS
    case TD_ISA_AVX2:
        g_ops = ops_avx2;
        break;
    case TD_ISA_AVX512:
        g_ops = ops_avx512;
        break;
#endif
    default:
        g_ops = ops_generic;
        isa = TD_ISA_SCALAR;
        break;
    }
    if (isa != TD_ISA_SCALAR && !ops_self_check(&g_ops)) {
        fprintf(stderr, "tandem: %s kernels disagree with the scalar reference; "
                "falling back\n", td_isa_name(isa));
        return td_kernels_init(isa == TD_ISA_AVX512 ? TD_ISA_AVX2 : TD_ISA_SCALAR);
    }
    return isa;
}

const char *td_isa_name(td_isa isa)
{
    switch (isa) {
    case TD_ISA_SCALAR: return "scalar";
    case TD_ISA_AVX2:   return "avx2";
    case TD_ISA_AVX512: return "avx512";
    }
    return "unknown";
}

typedef struct {
    td_gemm_rows_fn fn;
    const td_gemm_job *job;
    int n;
} gemm_task;

static void gemm_task_run(void *arg, int i)
{
    const gemm_task *t = arg;
    int n0 = i * t->job->rows_per_task;
    int n1 = n0 + t->job->rows_per_task;
    t->fn(t->job, n0, n1 < t->n ? n1 : t->n);
}

/* About 4 tasks per thread so a descheduled thread does not stall the call;
 * at least 16 rows per task (a row of a decode GEMV is a few microseconds). */
static void gemm_run(td_pool *pool, td_gemm_rows_fn fn, td_gemm_job *job)
{
    int N = job->w->n;
    if (N <= 0 || job->M <= 0)
        return;
    int threads = td_pool_size(pool);
    /* Below ~64K multiply-adds a hand-off to other threads costs more than
     * it saves (the tiny model's GEMMs, the gate, small decode GEMVs). */
    double work = (double)N * job->w->k * job->M;
    if (work < 65536.0)
        threads = 1;
    int rows = (N + threads * 4 - 1) / (threads * 4);
    rows = (rows + 15) & ~15;
    if (threads == 1 || rows >= N)
        rows = N;
    job->rows_per_task = rows;
    gemm_task t = {fn, job, N};
    td_pool_run(pool, gemm_task_run, &t, (N + rows - 1) / rows);
}

void td_gemm_q(td_pool *pool, const td_weight *w, const uint8_t *q,
               const int8_t *e, int M, float *y, int ldy)
{
    td_gemm_job job = {.w = w, .q = q, .e = e, .M = M, .y = y, .ldy = ldy};
    if (w->type == TD_W_FP8)
        gemm_run(pool, g_ops.fp8, &job);
    else if (w->type == TD_W_FP4)
        gemm_run(pool, g_ops.fp4, &job);
    else
        abort();   /* a programming error: the loader assigns the type */
}

void td_gemm_f(td_pool *pool, const td_weight *w, const float *x, int M,
               float *y, int ldy)
{
    td_gemm_job job = {.w = w, .x = x, .M = M, .y = y, .ldy = ldy};
    if (w->type == TD_W_F32)
        gemm_run(pool, g_ops.f32, &job);
    else if (w->type == TD_W_BF16)
        gemm_run(pool, g_ops.bf16, &job);
    else
        abort();
}

void td_i8_dot32(const int8_t *q, int nq, const int8_t *k, int d, int32_t *out)
{
    g_ops.i8dot32(q, nq, k, d, out);
}
