/* kvstore_resume_bench: resume from the store vs recompute, one sequence;
 * or, with --stream, resume read-then-load vs streamed.
 *
 *   BUILD/kvstore/kvstore_resume_bench MODEL_DIR STORE_DIR N [threads]
 *   BUILD/kvstore/kvstore_resume_bench --stream MODEL_DIR STORE_DIR N [reps]
 *
 * Prefills N tokens (recompute: what a session without the store pays on
 * its next turn), saves the state and puts it into a fresh store (spill),
 * closes and reopens the store (a worker restart), then finds the longest
 * stored prefix of the same tokens, gets it and loads it into a fresh
 * sequence (resume), and checks that the next token's logits agree. Prints
 * one line of name=value pairs. STORE_DIR must not hold a store.
 *
 * --stream fills a sequence of N tokens with td_v4_seq_fill_synthetic (no
 * prefill: the cost of reading and loading depends on the bytes, not their
 * values; raise max_position_embeddings in a copy of the model for a big
 * N), puts its state, reopens the store, then reps times each: td_kv_get
 * followed by td_v4_seq_load (what a resume did before), and
 * td_kv_get_progress feeding td_v4_seq_load_feed, then td_v4_seq_load_end.
 * Each result is checked by saving the loaded sequence again. Prints a
 * table of the medians. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "kernels/kernels.h"
#include "kvstore/kvstore.h"
#include "model/model.h"
#include "model/state.h"
#include "model/weights.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "kvstore_resume_bench: %s: %s\n", what, err);
    exit(1);
}

static int stream_main(int argc, char **argv);

/* The model in dir, with the kernels picked. */
static td_v4_model *open_model(const char *dir, int max_rows, int threads, td_v4_weights **w)
{
    char err[512];
    td_v4_model *m;
    if (td_v4_weights_load(w, dir, err, sizeof(err)))
        die("weights", err);
    td_kernels_init(-1);
    td_v4_model_opts mo = {.max_rows = max_rows, .nthreads = threads};
    if (td_v4_model_create(&m, *w, &mo, err, sizeof(err)))
        die("model", err);
    return m;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--stream") == 0)
        return stream_main(argc - 1, argv + 1);
    if (argc < 4) {
        fprintf(stderr, "usage: kvstore_resume_bench MODEL_DIR STORE_DIR N [threads]\n");
        return 2;
    }
    int n = atoi(argv[3]), threads = argc > 4 ? atoi(argv[4]) : 0;
    char err[512];
    td_v4_weights *w;
    td_v4_model *m = open_model(argv[1], 256, threads, &w);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)(n + 1));
    uint32_t x = 4242;
    for (int i = 0; i <= n; i++) {
        x = x * 1103515245u + 12345u;
        tok[i] = (int32_t)((x >> 8) % (uint32_t)w->cfg.vocab_size);
    }
    size_t V = (size_t)w->cfg.vocab_size;
    float *la = malloc(sizeof(float) * V), *lb = malloc(sizeof(float) * V);
    td_v4_seq *s = NULL, *r = NULL;
    if (td_v4_seq_create(&s, m, n + 1, err, sizeof(err)) || td_v4_seq_create(&r, m, n + 1, err, sizeof(err)))
        die("seq", err);

    double t0 = now_s();
    td_v4_step st = {.seq = s, .tokens = tok, .n = n};
    if (td_v4_forward(m, &st, 1, err, sizeof(err)))
        die("prefill", err);
    double recompute = now_s() - t0;

    uint64_t fp = td_v4_layout_fingerprint(td_v4_model_config(m));
    uint32_t bt = 128;
    int whole = n / (int)bt * (int)bt;   /* state is stored at a block boundary */
    if (whole != n)
        die("N", "must be a multiple of 128");
    td_kv_opts o = {.dir = argv[2], .fingerprint = fp, .create = 1, .block_tokens = bt,
                    .block_bytes = 1u << 20, .queue_depth = 16, .segment_bytes = 1ull << 30,
                    .capacity_bytes = 8ull << 30};
    td_kv *kv;
    if (td_kv_open(&kv, &o, err, sizeof(err)))
        die("open", err);
    size_t bytes = td_v4_seq_state_size(s), wrote = 0;
    uint8_t *buf = malloc(bytes);
    td_kv_key *keys = malloc(sizeof(td_kv_key) * (size_t)(n / (int)bt));
    t0 = now_s();
    if (td_v4_seq_save(s, buf, bytes, &wrote))
        die("save", "buffer");
    size_t nk = td_kv_chain(fp, bt, tok, (size_t)n, keys, (size_t)(n / (int)bt));
    if (td_kv_put(kv, keys[nk - 1], TD_KV_SECTION_STATE, (uint64_t)n, buf, wrote, err, sizeof(err)))
        die("put", err);
    double spill = now_s() - t0;
    td_kv_close(kv);

    o.create = 0;
    if (td_kv_open(&kv, &o, err, sizeof(err)))
        die("reopen", err);
    memset(buf, 0, bytes);
    t0 = now_s();
    uint64_t have;
    td_kv_key key;
    size_t len;
    td_kv_longest_prefix(kv, tok, (size_t)n, TD_KV_SECTION_STATE, &have, &key);
    if (have != (uint64_t)n || td_kv_get(kv, key, TD_KV_SECTION_STATE, buf, bytes, &len, err, sizeof(err)) ||
        td_v4_seq_load(r, buf, len, err, sizeof(err)))
        die("resume", have != (uint64_t)n ? "prefix not found" : err);
    double resume = now_s() - t0;
    td_kv_close(kv);

    td_v4_step sa = {.seq = s, .tokens = tok + n, .n = 1, .logits = la};
    td_v4_step sb = {.seq = r, .tokens = tok + n, .n = 1, .logits = lb};
    if (td_v4_forward(m, &sa, 1, err, sizeof(err)) || td_v4_forward(m, &sb, 1, err, sizeof(err)))
        die("next token", err);
    int same = memcmp(la, lb, sizeof(float) * V) == 0;
    printf("model=%s tokens=%d state_bytes=%zu recompute_s=%.3f spill_s=%.3f resume_s=%.3f "
           "speedup=%.1f next_logits_identical=%s\n",
           argv[1], n, wrote, recompute, spill, resume, recompute / resume, same ? "yes" : "NO");
    free(keys);
    free(buf);
    free(tok);
    free(la);
    free(lb);
    td_v4_seq_destroy(s);
    td_v4_seq_destroy(r);
    td_v4_model_destroy(m);
    td_v4_weights_destroy(w);
    return same ? 0 : 1;
}

/* ---- --stream ---------------------------------------------------------- */

typedef struct {
    td_v4_seq_loader *ld;
    const uint8_t *buf;
    size_t len;
    td_err r;
    int reports;
    double last;                 /* when the last bytes arrived */
    char err[512];
} feeder;

static void feed(void *arg, size_t k)
{
    feeder *f = arg;
    f->reports++;
    if (k == f->len)
        f->last = now_s();
    if (!f->r)
        f->r = td_v4_seq_load_feed(f->ld, f->buf, k, f->err, sizeof(f->err));
}

/* The state of r saved again: its hash, to compare with the original. */
static uint64_t saved_hash(const td_v4_seq *r, uint8_t *buf, size_t bytes)
{
    size_t w = 0;
    if (td_v4_seq_save(r, buf, bytes, &w) || w != bytes)
        die("save after load", "size");
    return XXH3_64bits(buf, bytes);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#define MAX_REPS 16

static int stream_main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: kvstore_resume_bench --stream MODEL_DIR STORE_DIR N [reps]\n");
        return 2;
    }
    int64_t n = atoll(argv[3]);
    int reps = argc > 4 ? atoi(argv[4]) : 3;
    if (reps < 1 || reps > MAX_REPS)
        die("reps", "1..16");
    char err[512];
    td_v4_weights *w;
    td_v4_model *m = open_model(argv[1], 16, 1, &w);
    td_v4_seq *s = NULL, *r = NULL;
    if (td_v4_seq_create(&s, m, n, err, sizeof(err)))
        die("seq", err);
    td_v4_seq_fill_synthetic(s, n, 4242);
    size_t bytes = td_v4_seq_state_size(s), wrote = 0;
    uint8_t *buf = malloc(bytes);
    if (!buf)
        die("state buffer", "out of memory");
    if (td_v4_seq_save(s, buf, bytes, &wrote))
        die("save", "buffer");
    uint64_t want = XXH3_64bits(buf, bytes);
    td_v4_seq_destroy(s);

    uint64_t seg = 1ull << 30;
    td_kv_opts o = {.dir = argv[2], .fingerprint = td_v4_layout_fingerprint(td_v4_model_config(m)),
                    .create = 1, .block_bytes = 1u << 20, .queue_depth = 16, .segment_bytes = seg,
                    .capacity_bytes = (bytes / seg + 2) * seg};
    td_kv *kv;
    if (td_kv_open(&kv, &o, err, sizeof(err)))
        die("open", err);
    td_kv_key key = {1, 2};
    double t0 = now_s();
    if (td_kv_put(kv, key, TD_KV_SECTION_STATE, (uint64_t)n, buf, bytes, err, sizeof(err)))
        die("put", err);
    double put = now_s() - t0;
    td_kv_close(kv);
    o.create = 0;
    if (td_kv_open(&kv, &o, err, sizeof(err)))
        die("reopen", err);
    if (td_v4_seq_create(&r, m, n, err, sizeof(err)))
        die("seq", err);
    /* Fault the sequence's pages in once, untimed: otherwise the first
     * variant to run pays for them. */
    if (td_v4_seq_load(r, buf, bytes, err, sizeof(err)))
        die("warm-up load", err);
    td_v4_seq_reset(r);

    double get[MAX_REPS], load[MAX_REPS], both[MAX_REPS], streamed[MAX_REPS], tail[MAX_REPS];
    int reports = 0;
    for (int i = 0; i < reps; i++) {
        size_t len = 0;
        /* Read, then load. */
        memset(buf, 0, bytes);
        t0 = now_s();
        if (td_kv_get(kv, key, TD_KV_SECTION_STATE, buf, bytes, &len, err, sizeof(err)))
            die("get", err);
        double t1 = now_s();
        if (td_v4_seq_load(r, buf, len, err, sizeof(err)))
            die("load", err);
        double t2 = now_s();
        get[i] = t1 - t0;
        load[i] = t2 - t1;
        both[i] = t2 - t0;
        if (saved_hash(r, buf, bytes) != want)
            die("read then load", "the loaded state differs");
        td_v4_seq_reset(r);

        /* Streamed. */
        memset(buf, 0, bytes);
        feeder f = {.buf = buf, .len = bytes};
        t0 = now_s();
        if (td_v4_seq_load_begin(&f.ld, r, bytes))
            die("load_begin", "out of memory");
        td_err g = td_kv_get_progress(kv, key, TD_KV_SECTION_STATE, buf, bytes, &len, feed, &f,
                                      err, sizeof(err));
        if (g || f.r) {
            td_v4_seq_load_abort(f.ld);
            die("streamed", g ? err : f.err);
        }
        if (td_v4_seq_load_end(f.ld, err, sizeof(err)))
            die("load_end", err);
        t2 = now_s();
        streamed[i] = t2 - t0;
        tail[i] = t2 - f.last;
        reports = f.reports;
        if (saved_hash(r, buf, bytes) != want)
            die("streamed", "the loaded state differs");
        td_v4_seq_reset(r);
    }
    td_kv_close(kv);
    double mg = median(get, reps), ml = median(load, reps), mb = median(both, reps);
    double ms = median(streamed, reps), mt = median(tail, reps);
    printf("model %s, %lld tokens (synthetic), state %zu bytes (%.2f GiB), put %.2f s, "
           "1 MiB blocks, queue depth 16, median of %d\n",
           argv[1], (long long)n, bytes, bytes / 1073741824.0, put, reps);
    printf("%-36s %9s %9s\n", "resume", "seconds", "GB/s");
    printf("%-36s %9.3f %9.2f\n", "get (td_kv_get)", mg, bytes / 1e9 / mg);
    printf("%-36s %9.3f %9.2f\n", "load (td_v4_seq_load)", ml, bytes / 1e9 / ml);
    printf("%-36s %9.3f %9.2f\n", "get then load", mb, bytes / 1e9 / mb);
    printf("%-36s %9.3f %9.2f\n", "streamed get + load", ms, bytes / 1e9 / ms);
    printf("%-36s %9.3f   (%.1f ms)\n", "  of which after the last byte", mt, mt * 1e3);
    printf("streamed / (get then load): %.2f; %d progress reports\n", ms / mb, reports);
    free(buf);
    td_v4_seq_destroy(r);
    td_v4_model_destroy(m);
    td_v4_weights_destroy(w);
    return 0;
}
