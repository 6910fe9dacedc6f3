/* session_spill_bench: what an agent session costs the disk, turn by turn,
 * with states filed whole and in token ranges.
 *
 *   BUILD/engine/session_spill_bench MODEL_DIR STORE_DIR N TURN [RANGE]
 *
 * A session grows to N tokens in turns of TURN; after each turn its state
 * goes to disk through the tier (as an idle agent's does), once into a
 * store that files states whole (--kv-store-range-tokens 0) and once into
 * one that files them in ranges of RANGE tokens (default 16384). The states
 * are td_v4_seq_fill_synthetic's (no prefill; of one seed, so the state at
 * n tokens holds the records of the state at m < n, as a real session's
 * does); raise max_position_embeddings in a copy of the model for a big N.
 * Then each store is reopened and the last turn resumed from it, and the
 * sequence's saved bytes compared with the state's. Prints a table row per
 * way: bytes written over the session, in its last turn, the store's bytes
 * in use at the end, the spills' time, the resume's time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "engine/prefix_cache.h"
#include "engine/spill.h"
#include "kvstore/kvstore.h"
#include "model/model.h"
#include "model/state.h"
#include "model/weights.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "session_spill_bench: %s: %s\n", what, err);
    exit(1);
}

static double metric(td_spill *s, const char *name)
{
    td_prom_buf b = {0};
    td_spill_metrics(s, &b);
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = b.p ? strstr(b.p, key) : NULL;
    double v = p ? atof(p + strlen(key)) : -1;
    free(b.p);
    return v;
}

static uint64_t state_hash(const td_v4_seq *s)
{
    size_t len = td_v4_seq_state_size(s), w = 0;
    uint8_t *b = malloc(len);
    if (!b || td_v4_seq_save(s, b, len, &w))
        die("save", "failed");
    uint64_t h = XXH3_64bits(b, w);
    free(b);
    return h;
}

typedef struct {
    size_t resumed;
    int done;
} resume_rec;

static void on_done(void *arg, void *tag, size_t tokens)
{
    (void)tag;
    resume_rec *r = arg;
    r->resumed = tokens;
    r->done = 1;
}

static void run(const td_v4_model *m, const char *dir, const int32_t *toks, size_t n,
                size_t turn, int64_t range, const char *name)
{
    td_pcache *c;
    td_spill *sp;
    td_spill_opts so = {.dir = dir, .range_tokens = range};
    if (td_pcache_create(&c, 4096, NULL, NULL) || td_spill_create(&sp, &so, m, c) ||
        !td_spill_up(sp))
        die(dir, "cannot open the disk tier");
    char err[256];
    td_v4_seq *s;
    if (td_v4_seq_create(&s, m, (int64_t)n + 8, err, sizeof err))
        die("sequence", err);
    double last_before = 0, spill_s = 0;
    uint64_t want = 0;
    for (size_t k = turn; k <= n; k += turn) {
        td_v4_seq_fill_synthetic(s, (int64_t)k, 4242);
        if (k + turn > n)
            want = state_hash(s);
        double spills = metric(sp, "tandem_kv_spills_total");
        last_before = metric(sp, "tandem_kv_spill_bytes_total");
        double t0 = now_s();
        if (td_pcache_put(c, s, toks, k))   /* larger than the cache: to disk */
            die("spill", "failed");
        while (metric(sp, "tandem_kv_spills_total") == spills) {  /* one at a time */
            td_spill_poll(sp, c, NULL, NULL);
            usleep(200);
        }
        td_spill_poll(sp, c, NULL, NULL);
        spill_s += now_s() - t0;
    }
    double written = metric(sp, "tandem_kv_spill_bytes_total");
    double used = metric(sp, "tandem_kvstore_bytes_used");
    td_spill_destroy(sp, c);
    td_pcache_destroy(c);
    size_t last = n / turn * turn;

    /* a restarted worker: the next turn resumes from disk */
    if (td_pcache_create(&c, 4096, NULL, NULL) || td_spill_create(&sp, &so, m, c) ||
        !td_spill_up(sp))
        die(dir, "cannot reopen the disk tier");
    td_v4_seq_reset(s);
    bool queued = false;
    resume_rec r = {0};
    double t0 = now_s();
    size_t mem = td_spill_restore_begin(sp, c, s, toks, last + 1, s, &queued);
    while (queued && !r.done) {
        if (td_spill_news(sp))
            td_spill_poll(sp, c, on_done, &r);
        else
            usleep(100);
    }
    double resume_s = now_s() - t0;
    size_t got = queued ? r.resumed : mem;
    int same = got == last && state_hash(s) == want;
    td_spill_destroy(sp, c);
    td_pcache_destroy(c);
    td_v4_seq_destroy(s);
    printf("| %s | %zu | %zu | %.1f MB | %.1f MB | %.1f MB | %.2f s | %.1f ms | %s |\n", name,
           last, turn, written / 1e6, (written - last_before) / 1e6, used / 1e6, spill_s,
           resume_s * 1000, same ? "yes" : "NO");
    fflush(stdout);
    if (!same)
        exit(1);
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s MODEL_DIR STORE_DIR N TURN [RANGE]\n", argv[0]);
        return 2;
    }
    size_t n = strtoull(argv[3], NULL, 10), turn = strtoull(argv[4], NULL, 10);
    int64_t range = argc > 5 ? strtoll(argv[5], NULL, 10) : 16384;
    if (!turn || turn > n || range <= 0)
        die("arguments", "need 0 < TURN <= N and RANGE > 0");
    td_v4_weights *w;
    td_v4_model *m;
    char err[512];
    td_v4_model_opts mo = {.nthreads = 1};
    if (td_v4_weights_load(&w, argv[1], err, sizeof err) ||
        td_v4_model_create(&m, w, &mo, err, sizeof err))
        die(argv[1], err);
    int32_t *toks = malloc((n + 1) * sizeof *toks);
    if (!toks)
        die("tokens", "out of memory");
    uint32_t x = 777;
    for (size_t i = 0; i <= n; i++) {
        x = x * 1103515245u + 12345u;
        toks[i] = 2 + (int32_t)((x >> 8) % (uint32_t)(w->cfg.vocab_size - 2));
    }
    char whole[600], ranged[600];
    snprintf(whole, sizeof whole, "%s/whole", argv[2]);
    snprintf(ranged, sizeof ranged, "%s/ranges", argv[2]);
    printf("| states | tokens | turn | written | written, last turn | on disk | spills | resume "
           "| identical |\n|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    run(m, whole, toks, n, turn, -1, "whole");
    char label[64];
    snprintf(label, sizeof label, "ranges of %lld", (long long)range);
    run(m, ranged, toks, n, turn, range, label);
    free(toks);
    td_v4_model_destroy(m);
    td_v4_weights_destroy(w);
    return 0;
}
