/* tandem bench decode: decode speed of the CPU runtime.
 *
 * Decode at small batch is bound by memory bandwidth: each step streams the
 * active weights once. So next to tokens/s the table shows the weight bytes
 * a step streamed divided by its time, as a share of this machine's copy
 * bandwidth measured in the same run (memcpy over all threads, read + write
 * bytes counted). Then decode step time at long contexts, where compressed
 * attention should keep it nearly flat: the state there is synthetic
 * (valid random records), because prefilling 128K tokens on a CPU takes
 * hours and decode cost depends on the amount of state, not its values.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "model/state.h"
#include "model/weights.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    char *src, *dst;
    size_t per;
} copy_job;

static void copy_part(void *arg, int i)
{
    copy_job *j = arg;
    memcpy(j->dst + (size_t)i * j->per, j->src + (size_t)i * j->per, j->per);
}

/* Best-of-5 memcpy bandwidth over the pool's threads, read + write bytes. */
static double copy_bandwidth(td_pool *pool)
{
    size_t bytes = (size_t)256 << 20;
    int parts = td_pool_size(pool);
    copy_job j = {malloc(bytes), malloc(bytes), bytes / (size_t)parts};
    if (!j.src || !j.dst) {
        free(j.src);
        free(j.dst);
        return 0.0;
    }
    memset(j.src, 1, bytes);
    memset(j.dst, 2, bytes);
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t = now();
        td_pool_run(pool, copy_part, &j, parts);
        t = now() - t;
        if (t < best)
            best = t;
    }
    free(j.src);
    free(j.dst);
    return 2.0 * (double)bytes / best / 1e9;
}

typedef struct {
    const char *model_dir;
    const char *out;
    int threads;
    int steps;
} bench_opts;

static void fill_tokens(int32_t *t, int n, int vocab, uint32_t seed)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        t[i] = (int32_t)((seed >> 8) % (uint32_t)vocab);
    }
}

/* Times `steps` decode steps of `batch` sequences that have `ctx` tokens
 * (real prefill when real_prefill, synthetic state otherwise).
 * Returns seconds per step; *bytes gets weight bytes per step. */
static double time_decode(td_v4_model *m, int batch, int64_t ctx, int real_prefill,
                          int steps, double *bytes)
{
    const td_v4_config *c = td_v4_model_config(m);
    td_v4_seq *seq[64];
    td_v4_step st[64];
    int32_t tok[64];
    float *logits = malloc(sizeof(float) * (size_t)c->vocab_size * (size_t)batch);
    char err[256];
    double per = -1.0;
    int made = 0;
    for (; made < batch; made++)
        if (td_v4_seq_create(&seq[made], m, ctx + steps + 1, err, sizeof err))
            goto out;
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)(real_prefill ? ctx : 1));
    for (int b = 0; b < batch; b++) {
        if (real_prefill) {
            fill_tokens(prompt, (int)ctx, c->vocab_size, 7u + (uint32_t)b);
            td_v4_step p = {.seq = seq[b], .tokens = prompt, .n = (int)ctx};
            if (td_v4_forward(m, &p, 1, err, sizeof err))
                goto out_prompt;
        } else {
            td_v4_seq_fill_synthetic(seq[b], ctx, 99u + (uint64_t)b);
        }
        tok[b] = (int32_t)(b * 31 % c->vocab_size);
    }
    /* One warm-up step, then the timed ones. */
    for (int s = -1; s < steps; s++) {
        if (s == 0) {
            *bytes = (double)td_v4_model_weight_bytes(m);
            per = now();
        }
        for (int b = 0; b < batch; b++)
            st[b] = (td_v4_step){.seq = seq[b], .tokens = &tok[b], .n = 1,
                                 .logits = logits + (size_t)b * c->vocab_size};
        if (td_v4_forward(m, st, batch, err, sizeof err)) {
            per = -1.0;
            goto out_prompt;
        }
        for (int b = 0; b < batch; b++)
            tok[b] = (int32_t)((tok[b] * 7 + 13 + s) % c->vocab_size);
    }
    per = (now() - per) / steps;
    *bytes = ((double)td_v4_model_weight_bytes(m) - *bytes) / steps;
out_prompt:
    free(prompt);
out:
    if (per < 0)
        fprintf(stderr, "bench: %s\n", err);
    for (int b = 0; b < made; b++)
        td_v4_seq_destroy(seq[b]);
    free(logits);
    return per;
}

static void cpu_name(char *buf, size_t len)
{
    snprintf(buf, len, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10)) {
            char *p = strchr(line, ':');
            if (p) {
                snprintf(buf, len, "%s", p + 2);
                buf[strcspn(buf, "\n")] = 0;
            }
            break;
        }
    }
    fclose(f);
}

/* The 1-minute load average: these machines are shared, so the table says
 * how busy the machine was while it ran. */
static double load_average(void)
{
    double l = -1.0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1.0;
        fclose(f);
    }
    return l;
}

static int parse(int argc, char **argv, bench_opts *o)
{
    o->model_dir = NULL;
    o->out = NULL;
    o->threads = 0;
    o->steps = 16;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) {
            fprintf(stderr, "tandem bench decode: %s needs a value\n", argv[i]);
            return -1;
        }
        if (!strcmp(argv[i], "--model")) o->model_dir = argv[++i];
        else if (!strcmp(argv[i], "--out")) o->out = argv[++i];
        else if (!strcmp(argv[i], "--threads")) o->threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps")) o->steps = atoi(argv[++i]);
        else {
            fprintf(stderr, "tandem bench decode: unknown option %s\n", argv[i]);
            return -1;
        }
    }
    if (!o->model_dir || o->steps <= 0) {
        fprintf(stderr, "usage: tandem bench decode --model DIR [--threads N] [--steps N] "
                        "[--out FILE.md]\n(bench/run-decode.sh makes the small model "
                        "and calls this)\n");
        return -1;
    }
    return 0;
}

int td_bench_decode(int argc, char **argv)
{
    bench_opts o;
    if (parse(argc, argv, &o))
        return 2;
    td_isa isa = td_kernels_init(-1);
    char err[512];
    td_v4_weights *w = NULL;
    if (td_v4_weights_load(&w, o.model_dir, err, sizeof err)) {
        fprintf(stderr, "tandem bench decode: %s\n", err);
        return 1;
    }
    td_v4_model *m = NULL;
    td_v4_model_opts mo = {.max_rows = 64, .nthreads = o.threads};
    if (td_v4_model_create(&m, w, &mo, err, sizeof err)) {
        fprintf(stderr, "tandem bench decode: %s\n", err);
        td_v4_weights_destroy(w);
        return 1;
    }
    td_pool *pool = NULL;
    td_pool_create(&pool, o.threads);
    double copy = copy_bandwidth(pool);
    int nthreads = td_pool_size(pool);
    td_pool_destroy(pool);

    char cpu[256];
    cpu_name(cpu, sizeof cpu);
    char table[8192];
    int n = 0;
    n += snprintf(table + n, sizeof table - (size_t)n,
                  "Machine: %s, %d threads, kernels %s, load average %.1f at start. "
                  "Model: %s. Copy bandwidth (memcpy, read + write): %.1f GB/s.\n\n"
                  "| batch | context | step ms | tokens/s | weight GB/step | GB/s | %% of copy |\n"
                  "|---|---|---|---|---|---|---|\n",
                  cpu, nthreads, td_isa_name(isa), load_average(), o.model_dir, copy);
    int batches[] = {1, 8};
    for (int i = 0; i < 2; i++) {
        double bytes = 0;
        double t = time_decode(m, batches[i], 64, 1, o.steps, &bytes);
        if (t < 0)
            goto fail;
        double gbs = bytes / t / 1e9;
        n += snprintf(table + n, sizeof table - (size_t)n,
                      "| %d | 64 | %.2f | %.1f | %.3f | %.1f | %.0f %% |\n", batches[i],
                      t * 1e3, batches[i] / t, bytes / 1e9, gbs, 100.0 * gbs / copy);
        fprintf(stderr, "batch %d done\n", batches[i]);
    }
    n += snprintf(table + n, sizeof table - (size_t)n,
                  "\nDecode step time (batch 1) against context length (synthetic state):\n\n"
                  "| context | step ms | vs 4K |\n|---|---|---|\n");
    int64_t ctxs[] = {4096, 32768, 131072};
    double base = 0;
    for (int i = 0; i < 3; i++) {
        double bytes = 0;
        double t = time_decode(m, 1, ctxs[i], 0, o.steps, &bytes);
        if (t < 0)
            goto fail;
        if (i == 0)
            base = t;
        n += snprintf(table + n, sizeof table - (size_t)n, "| %lldK | %.2f | %.2fx |\n",
                      (long long)(ctxs[i] / 1024), t * 1e3, t / base);
        fprintf(stderr, "context %lld done\n", (long long)ctxs[i]);
    }
    fputs(table, stdout);
    if (o.out) {
        FILE *f = fopen(o.out, "w");
        if (!f) {
            fprintf(stderr, "tandem bench decode: cannot write %s\n", o.out);
        } else {
            fprintf(f, "## Decode (`tandem bench decode`)\n\n%s", table);
            fclose(f);
        }
    }
    td_v4_model_destroy(m);
    td_v4_weights_destroy(w);
    return 0;
fail:
    td_v4_model_destroy(m);
    td_v4_weights_destroy(w);
    return 1;
}
