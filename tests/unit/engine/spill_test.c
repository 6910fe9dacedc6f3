/* The engine's disk tier (engine/spill.c) on the tiny model, with a real
 * store (io_uring, files in a temporary directory): an agent's next turn
 * (the last prompt + the generated tokens + a new message) resumes from
 * the state saved at the previous turn's finish, across an engine restart,
 * and continues token-identically to an engine that never caches. Both
 * ways into the tier: everything in memory at stop, and a state too large
 * for the memory cache. A damaged store costs a recompute, nothing else.
 * argv[1] is the model directory. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "engine/engine.h"
#include "tests/td_test.h"
#include "tests/unit/engine/tiny_model.h"

static const char *MODEL;

enum { NP = 700, NG = 24, NM = 9 };

typedef struct {
    int32_t toks[64];
    int n;
    size_t cached;
    bool done;
    td_router_finish why;
} run;

static void on_token(void *arg, int32_t t)
{
    run *r = arg;
    if (r->n < 64)
        r->toks[r->n++] = t;
}

static void on_finish(void *arg, td_router_finish why, td_err err)
{
    run *r = arg;
    (void)err;
    r->why = why;
    r->done = true;
}

static void on_cached(void *arg, size_t n)
{
    ((run *)arg)->cached = n;
}

static bool loaded;
static void on_loaded(void *arg, const char *err)
{
    (void)arg;
    if (err)
        fprintf(stderr, "load: %s\n", err);
    loaded = true;
}

static bool closed;
static void on_closed(void *arg)
{
    (void)arg;
    closed = true;
}

typedef struct {
    uv_loop_t loop;
    td_engine *e;
} eng;

/* The cache's events (a worker's KvEvents): the last stored of each length. */
static size_t stored_n[NP + NG + NM + 1];
static void on_cache(void *arg, bool stored, const int32_t *tokens, size_t n)
{
    (void)arg;
    if (n < sizeof stored_n / sizeof *stored_n)
        stored_n[n] += stored ? 1 : 0;
    (void)tokens;
}

static void start(eng *g, int64_t cache_bytes, const char *store)
{
    uv_loop_init(&g->loop);
    memset(stored_n, 0, sizeof stored_n);
    td_engine_opts o = {.model_dir = MODEL, .max_batch = 2, .nthreads = 1,
                        .prefix_cache_bytes = cache_bytes, .kv_store_dir = store,
                        .on_loaded = on_loaded, .on_cache = on_cache};
    char err[256];
    loaded = false;
    TD_CHECK(td_engine_create(&g->e, &g->loop, &o, err, sizeof err) == TD_OK);
    while (!loaded)
        uv_run(&g->loop, UV_RUN_ONCE);
}

static void stop(eng *g)
{
    closed = false;
    td_engine_destroy(g->e, on_closed, NULL);
    while (!closed)
        uv_run(&g->loop, UV_RUN_ONCE);
    uv_run(&g->loop, UV_RUN_DEFAULT);
    TD_CHECK(uv_loop_close(&g->loop) == 0);
}

static run gen(eng *g, const int32_t *prompt, size_t n, int max)
{
    run r = {0};
    td_engine_req q = {.gen = {.prompt = prompt, .n_prompt = n, .max_tokens = max,
                               .sampling = {.temperature = 0, .top_p = 1}}};
    td_router_gen_cb cb = {.on_token = on_token, .on_finish = on_finish,
                           .on_cached = on_cached, .arg = &r};
    uint64_t id;
    TD_CHECK(td_engine_submit(g->e, &q, &cb, &id) == TD_OK);
    while (!r.done)
        uv_run(&g->loop, UV_RUN_ONCE);
    TD_CHECK(r.why == TD_ROUTER_FINISH_LENGTH);
    return r;
}

static int32_t turn1[NP], turn2[NP + NG + NM];
static run want1, want2;

/* turn 2 = turn 1 + its answer + a new message; the answers of an engine
 * that never caches. */
static void reference(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    uint32_t x = 12345;
    for (int i = 0; i < NP + NG + NM; i++) {
        x = x * 1103515245u + 12345u;
        turn2[i] = 2 + (int32_t)((x >> 8) % 498);
    }
    memcpy(turn1, turn2, sizeof turn1);
    eng g;
    start(&g, -1, NULL);
    want1 = gen(&g, turn1, NP, NG);
    memcpy(turn2 + NP, want1.toks, NG * sizeof(int32_t));
    want2 = gen(&g, turn2, NP + NG + NM, NG);
    stop(&g);
}


/* The turn-1 session leaves memory when the engine stops and the next
 * turn, in a new engine, resumes from the state at its finish. */
static void test_restart_resumes_finish_state(void)
{
    reference();
    char dir[64];
    tm_tmpdir(dir, sizeof dir);
    eng g;
    start(&g, 0, dir);
    run r1 = gen(&g, turn1, NP, NG);
    TD_CHECK(!memcmp(r1.toks, want1.toks, sizeof r1.toks));
    stop(&g);
    start(&g, 0, dir);
    /* The restarted engine announces what its disk holds (a worker tells
     * the router, so the next turn comes back here): the prompt's state
     * and the finish state. */
    for (int i = 0; i < 400 && !(stored_n[NP] && stored_n[NP + NG - 1]); i++)
        uv_run(&g.loop, UV_RUN_NOWAIT), usleep(5000);
    TD_CHECK(stored_n[NP] == 1 && stored_n[NP + NG - 1] == 1);
    run r2 = gen(&g, turn2, NP + NG + NM, NG);
    /* the finish state: the prompt and the generated tokens fed back (the
     * last one never is) */
    TD_CHECK_EQ_INT((int)r2.cached, NP + NG - 1);
    TD_CHECK(r2.n == NG && !memcmp(r2.toks, want2.toks, sizeof r2.toks));
    stop(&g);
    tm_rmrf(dir);
}

/* A fresh store holding turn 1's states (written when its engine stopped). */
static void turn1_on_disk(eng *g, char *dir, size_t cap)
{
    reference();
    tm_tmpdir(dir, cap);
    start(g, 0, dir);
    gen(g, turn1, NP, NG);
    stop(g);
}

/* Cancels while the state may be on its way from disk (the request then
 * sits in the loading list, its sequence the KV thread's): the cancel is
 * applied when the read ends, the finish says so, nothing leaks (ASan),
 * and the engine stops cleanly with a read in flight. Timing decides
 * where each cancel lands; every place must be clean. */
static void test_cancel_while_resuming(void)
{
    char dir[64];
    eng g;
    turn1_on_disk(&g, dir, sizeof dir);
    td_router_gen_cb cb = {.on_token = on_token, .on_finish = on_finish, .on_cached = on_cached};
    td_engine_req q = {.gen = {.prompt = turn2, .n_prompt = NP + NG + NM, .max_tokens = NG,
                               .sampling = {.temperature = 0, .top_p = 1}}};
    static const int delay_us[] = {0, 150, 400, 800, 1500, 3000, 0, 300, 600};
    for (int i = 0; i < 9; i++) {
        start(&g, 0, dir);
        run r = {0};
        cb.arg = &r;
        uint64_t id;
        TD_CHECK(td_engine_submit(g.e, &q, &cb, &id) == TD_OK);
        usleep((useconds_t)delay_us[i]);  /* the read takes about a millisecond */
        if (i < 6) {
            td_engine_interface(g.e).cancel(g.e, id);
            while (!r.done)
                uv_run(&g.loop, UV_RUN_ONCE);
            TD_CHECK(r.why == TD_ROUTER_FINISH_CANCELLED || r.why == TD_ROUTER_FINISH_LENGTH);
        }
        stop(&g);  /* i >= 6: stops with the request (perhaps its read) in flight */
        TD_CHECK(r.done);
    }
    tm_rmrf(dir);
}

/* Waits (bounded) until the engine's /metrics page has line. */
static void wait_metric(eng *g, const char *line)
{
    bool found = false;
    for (int i = 0; i < 2000 && !found; i++) {
        td_prom_buf b = {0};
        td_engine_metrics(g->e, &b);
        found = b.p && strstr(b.p, line);
        free(b.p);
        if (!found)
            usleep(5000);
    }
    TD_CHECK(found);
}

/* A memory cache too small for any state: every state goes to disk as it
 * is put, and the next turn still resumes. */
static void test_too_big_for_memory(void)
{
    reference();
    char dir[64];
    tm_tmpdir(dir, sizeof dir);
    eng g;
    start(&g, 1, dir);
    run r1 = gen(&g, turn1, NP, NG);
    /* Until the write is collected, turn 2 would find the state in
     * memory (on its way to disk); this case is about the disk. */
    wait_metric(&g, "tandem_kv_spill_pending_bytes 0\n");
    run r2 = gen(&g, turn2, NP + NG + NM, NG);
    TD_CHECK(!memcmp(r1.toks, want1.toks, sizeof r1.toks));
    TD_CHECK_EQ_INT((int)r2.cached, NP + NG - 1);
    TD_CHECK(!memcmp(r2.toks, want2.toks, sizeof r2.toks));
    td_prom_buf b = {0};
    td_engine_metrics(g.e, &b);
    TD_CHECK(b.p && strstr(b.p, "tandem_kv_resumes_total 1\n"));
    TD_CHECK(strstr(b.p, "tandem_requests_loading 0\n"));  /* back in the batch, and done */
    free(b.p);
    stop(&g);
    tm_rmrf(dir);
}

/* Every segment byte flipped: the next turn recomputes, identically. */
static void test_damaged_store_recomputes(void)
{
    char dir[64];
    eng g;
    turn1_on_disk(&g, dir, sizeof dir);
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (!strncmp(de->d_name, "seg-", 4)) {
            char path[512];
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            FILE *f = fopen(path, "r+b");
            for (long off = 300; f && off < (8l << 20); off += 4096) {
                if (fseek(f, off, SEEK_SET) != 0)
                    break;
                int c = fgetc(f);
                if (c == EOF || fseek(f, off, SEEK_SET) != 0)
                    break;
                fputc(c ^ 0xa5, f);
            }
            if (f)
                fclose(f);
        }
    if (d)
        closedir(d);
    start(&g, 0, dir);
    run r2 = gen(&g, turn2, NP + NG + NM, NG);
    TD_CHECK_EQ_INT((int)r2.cached, 0);
    TD_CHECK(!memcmp(r2.toks, want2.toks, sizeof r2.toks));
    td_prom_buf b = {0};
    td_engine_metrics(g.e, &b);
    TD_CHECK(b.p && strstr(b.p, "tandem_kv_spill_errors_total{op=\"resume\",reason=\"corrupt\"} ") &&
             !strstr(b.p, "tandem_kv_spill_errors_total{op=\"resume\",reason=\"corrupt\"} 0\n"));
    free(b.p);
    stop(&g);
    tm_rmrf(dir);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [case]\n", argv[0]);
        return 2;
    }
    MODEL = argv[1];
    static const td_test_case cases[] = {
        {"restart_resumes_finish_state", test_restart_resumes_finish_state},
        {"too_big_for_memory", test_too_big_for_memory},
        {"damaged_store_recomputes", test_damaged_store_recomputes},
        {"cancel_while_resuming", test_cancel_while_resuming},
        {NULL, NULL},
    };
    return td_test_run(cases, argc - 1, argv + 1);
}
