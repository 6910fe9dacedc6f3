/* resume_batch_bench: does the batch wait while a session resumes from disk?
 *
 *   BUILD/engine/resume_batch_bench MODEL_DIR STORE_DIR N [threads]
 *
 * Files the state of an N-token session in a fresh disk tier at STORE_DIR
 * (td_v4_seq_fill_synthetic: reading and loading cost depends on the
 * bytes, not their values; raise max_position_embeddings in a copy of the
 * model for a big N), closes it, and starts an engine on that store. A
 * stream A decodes; once it is going, B arrives whose prompt extends the
 * N-token session, so B resumes from disk (the KV thread reads and loads
 * it) while A keeps decoding. Reported: B's resume on the KV thread (the
 * engine's tandem_kv_resume_duration_seconds), A's tokens and longest gap
 * inside that window, and A's median gap before B. Before the KV thread,
 * the engine thread did the read and the load between two steps: A got no
 * token for the whole resume. B is cancelled once it joined (its prefill
 * over N tokens of context is compute, not disk). Prints a table row. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "engine/engine.h"
#include "engine/prefix_cache.h"
#include "engine/spill.h"
#include "model/model.h"
#include "model/state.h"
#include "model/weights.h"

enum { A_TOKENS = 4000, B_NEW = 8 };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "resume_batch_bench: %s: %s\n", what, err);
    exit(1);
}

static int32_t *session_tokens(size_t n, int vocab)
{
    int32_t *t = malloc(n * sizeof *t);
    if (!t)
        die("tokens", "out of memory");
    uint32_t x = 777;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        t[i] = 2 + (int32_t)((x >> 8) % (uint32_t)(vocab - 2));
    }
    return t;
}

/* Writes the N-token session's state through the disk tier itself (so the
 * index records and token entries are the engine's own). */
static size_t file_session(const char *model, const char *store, const int32_t *toks, size_t n)
{
    td_v4_weights *w;
    td_v4_model *m;
    char err[512];
    td_v4_model_opts mo = {.nthreads = 1};
    if (td_v4_weights_load(&w, model, err, sizeof err) ||
        td_v4_model_create(&m, w, &mo, err, sizeof err))
        die(model, err);
    td_v4_seq *s;
    if (td_v4_seq_create(&s, m, (int64_t)n, err, sizeof err))
        die("sequence", err);
    td_v4_seq_fill_synthetic(s, (int64_t)n, 4242);
    size_t bytes = td_v4_seq_state_size(s);
    td_pcache *c;
    td_spill *sp;
    td_spill_opts so = {.dir = store};
    if (td_pcache_create(&c, 4096, NULL, NULL) || td_spill_create(&sp, &so, m, c) ||
        !td_spill_up(sp))
        die(store, "cannot open the disk tier");
    if (td_pcache_put(c, s, toks, n))  /* larger than the cache: straight to disk */
        die("spill", "failed");
    td_spill_destroy(sp, c);           /* waits for the write */
    td_pcache_destroy(c);
    td_v4_seq_destroy(s);
    td_v4_model_destroy(m);
    td_v4_weights_destroy(w);
    return bytes;
}

typedef struct {
    uv_loop_t *loop;
    td_engine *e;
    double t[A_TOKENS + 1];      /* A's token times */
    int na;
    bool a_done, b_done, loaded;
    double b_submit, b_joined;
    size_t b_cached;
    uint64_t b_id;
    const int32_t *b_prompt;
    size_t nb;
} bench;

static void a_token(void *arg, int32_t t)
{
    bench *b = arg;
    (void)t;
    if (b->na <= A_TOKENS)
        b->t[b->na++] = now_s();
}
static void a_finish(void *arg, td_router_finish why, td_err err)
{
    (void)why;
    (void)err;
    ((bench *)arg)->a_done = true;
}
static void b_token(void *arg, int32_t t)
{
    (void)arg;
    (void)t;
}
static void b_finish(void *arg, td_router_finish why, td_err err)
{
    (void)why;
    (void)err;
    ((bench *)arg)->b_done = true;
}
static void b_cached(void *arg, size_t n)
{
    bench *b = arg;
    b->b_joined = now_s();
    b->b_cached = n;
    td_engine_interface(b->e).cancel(b->e, b->b_id);
}
static void on_loaded(void *arg, const char *err)
{
    if (err)
        die("engine", err);
    ((bench *)arg)->loaded = true;
}
static void on_closed(void *arg) { (void)arg; }


int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL_DIR STORE_DIR N [threads]\n", argv[0]);
        return 2;
    }
    const char *model = argv[1], *store = argv[2];
    size_t n = strtoull(argv[3], NULL, 10);
    int threads = argc > 4 ? atoi(argv[4]) : 2;
    td_v4_weights *w;
    char err[512];
    if (td_v4_weights_load(&w, model, err, sizeof err))
        die(model, err);
    int vocab = w->cfg.vocab_size;
    td_v4_weights_destroy(w);
    int32_t *toks = session_tokens(n + B_NEW, vocab);
    double t0 = now_s();
    size_t bytes = file_session(model, store, toks, n);
    double spill_s = now_s() - t0;
    system("sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null");  /* best effort */

    uv_loop_t loop;
    uv_loop_init(&loop);
    static bench b;
    b.loop = &loop;
    td_engine_opts eo = {.model_dir = model, .max_batch = 4, .nthreads = threads,
                         .kv_store_dir = store, .on_loaded = on_loaded, .arg = &b};
    if (td_engine_create(&b.e, &loop, &eo, err, sizeof err))
        die("engine", err);
    while (!b.loaded)
        uv_run(&loop, UV_RUN_ONCE);
    td_router_engine ri = td_engine_interface(b.e);
    int32_t a_prompt[16];
    memcpy(a_prompt, toks + n, sizeof a_prompt[0] * B_NEW);
    memcpy(a_prompt + B_NEW, toks, sizeof a_prompt[0] * B_NEW);
    td_router_gen_req ra = {.prompt = a_prompt, .n_prompt = 16, .max_tokens = A_TOKENS,
                            .sampling = {.temperature = 0, .top_p = 1}};
    td_router_gen_cb ca = {.on_token = a_token, .on_finish = a_finish, .arg = &b};
    uint64_t id;
    if (ri.submit(b.e, &ra, &ca, &id))
        die("submit", "A");
    while (b.na < 100)  /* A is decoding steadily */
        uv_run(&loop, UV_RUN_ONCE);
    int a_before = b.na;
    td_router_gen_req rb = {.prompt = toks, .n_prompt = n + B_NEW, .max_tokens = 4,
                            .sampling = {.temperature = 0, .top_p = 1}};
    td_router_gen_cb cbb = {.on_token = b_token, .on_finish = b_finish, .on_cached = b_cached,
                            .arg = &b};
    b.b_submit = now_s();
    if (ri.submit(b.e, &rb, &cbb, &b.b_id))
        die("submit", "B");
    while (!b.b_joined && !b.b_done)
        uv_run(&loop, UV_RUN_ONCE);
    while (!b.b_done)
        uv_run(&loop, UV_RUN_ONCE);
    int a_during_end = b.na;
    td_prom_buf pb = {0};
    td_engine_metrics(b.e, &pb);
    const char *h = pb.p ? strstr(pb.p, "tandem_kv_resume_duration_seconds_sum ") : NULL;
    double resume_s = h ? strtod(h + strlen("tandem_kv_resume_duration_seconds_sum "), NULL) : 0;
    free(pb.p);
    ri.cancel(b.e, id);
    while (!b.a_done)
        uv_run(&loop, UV_RUN_ONCE);
    td_engine_destroy(b.e, on_closed, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);

    double max_during = 0, end = b.b_submit + resume_s;
    int n_during = 0;
    for (int i = a_before; i < a_during_end; i++) {
        if (b.t[i] <= b.b_submit || b.t[i] > end)
            continue;  /* A's tokens that arrived while B's state was read */
        double lo = b.t[i - 1] > b.b_submit ? b.t[i - 1] : b.b_submit;
        n_during++;
        if (b.t[i] - lo > max_during)
            max_during = b.t[i] - lo;
    }
    double rate_before = (a_before - 11) / (b.t[a_before - 1] - b.t[10]);
    double rate_during = resume_s > 0 ? n_during / resume_s : 0;
    printf("| tokens | state bytes | spill | B's resume (KV thread) | A's tokens meanwhile | "
           "A's longest gap meanwhile | A's tokens/s before | meanwhile |\n"
           "|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    printf("| %zu | %zu | %.2f s | %.1f ms | %d | %.1f ms | %.0f | %.0f |\n", n, bytes, spill_s,
           resume_s * 1e3, n_during, max_during * 1e3, rate_before, rate_during);
    free(toks);
    return b.b_cached == n ? 0 : 1;
}
