/* The disk tier's two threads (engine/spill.c) on the tiny model, with a
 * real store: a state handed to the tier is still found in memory until
 * the engine thread collects the finished write; a restore that needs the
 * disk is queued and answered through td_spill_poll with the sequence
 * loaded (and continuing bit-identically); a prompt with nothing on disk
 * is answered at once without the KV thread; a state the disk refuses
 * comes back to the memory cache. argv[1] is the model directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/prefix_cache.h"
#include "engine/spill.h"
#include "engine/spill_index.h"
#include "kvstore/kvstore.h"
#include "model/model.h"
#include "model/state.h"
#include "model/weights.h"
#include "tests/td_test.h"
#include "tests/unit/engine/tiny_model.h"


enum { NTOK = 340, NSTATE = 300 };
static int32_t toks[NTOK];

static td_v4_seq *seq_after(const int32_t *t, int n) { return tm_seq_after(t, n, NTOK + 8); }

static float *finish(td_v4_seq *s, int from)
{
    float *lg = malloc(sizeof(float) * (size_t)W->cfg.vocab_size);
    char err[256];
    td_v4_step st = {.seq = s, .tokens = toks + from, .n = NTOK - from, .logits = lg};
    TD_CHECK(td_v4_forward(M, &st, 1, err, sizeof err) == TD_OK);
    return lg;
}

static int wakes;
static void on_wake(void *arg)
{
    (void)arg;
    __atomic_add_fetch(&wakes, 1, __ATOMIC_SEQ_CST);
}

/* Waits (bounded) for the KV thread to finish something, then collects. */
static void collect(td_spill *s, td_pcache *c, done_rec *d)
{
    for (int i = 0; i < 10000 && !td_spill_news(s); i++)
        usleep(1000);
    TD_CHECK(td_spill_news(s));
    td_spill_poll(s, c, on_done, d);
}

static bool has_metric(td_spill *s, const char *line)
{
    td_prom_buf b = {0};
    td_spill_metrics(s, &b);
    bool ok = b.p && strstr(b.p, line);
    if (!ok)
        fprintf(stderr, "no \"%s\" in:\n%s\n", line, b.p ? b.p : "");
    free(b.p);
    return ok;
}

static void hand_off_then_background_read(void)
{
    char dir[64];
    tm_tmpdir(dir, sizeof dir);
    td_pcache *c;
    TD_CHECK(td_pcache_create(&c, 4096, NULL, NULL) == TD_OK);  /* every state: too big */
    td_spill *s;
    td_spill_opts o = {.dir = dir, .wake = on_wake};
    TD_CHECK(td_spill_create(&s, &o, M, c) == TD_OK && td_spill_up(s));

    td_v4_seq *full = seq_after(toks, NSTATE);
    TD_CHECK(td_pcache_put(c, full, toks, NSTATE) == TD_OK);  /* straight to the tier */
    bool queued = true;
    td_v4_seq *a = seq_after(toks, 0);
    /* not collected yet: found in memory, whatever the KV thread is at */
    TD_CHECK_EQ_INT((int)td_spill_restore_begin(s, c, a, toks, NTOK, NULL, &queued), NSTATE);
    TD_CHECK(!queued && td_v4_seq_len(a) == NSTATE);
    done_rec d = {0};
    collect(s, c, &d);
    TD_CHECK_EQ_INT(d.calls, 0);
    TD_CHECK(has_metric(s, "tandem_kv_spills_total 1\n"));

    /* on disk only now: the KV thread reads it, the caller goes on */
    td_v4_seq *b = seq_after(toks, 0);
    int tag;
    TD_CHECK_EQ_INT((int)td_spill_restore_begin(s, c, b, toks, NTOK, &tag, &queued), 0);
    TD_CHECK(queued && td_spill_resuming(s) == 1);
    collect(s, c, &d);
    TD_CHECK(d.calls == 1 && d.tag == &tag && d.tokens == NSTATE);
    TD_CHECK(td_spill_resuming(s) == 0 && td_v4_seq_len(b) == NSTATE);
    TD_CHECK(__atomic_load_n(&wakes, __ATOMIC_SEQ_CST) >= 2);
    float *lb = finish(b, NSTATE), *lf = finish(full, NSTATE);
    TD_CHECK(!memcmp(lb, lf, sizeof(float) * (size_t)W->cfg.vocab_size));
    TD_CHECK(has_metric(s, "tandem_kv_resumes_total 1\n"));

    /* another prompt: nothing on disk, answered without the KV thread */
    int32_t other[NTOK];
    memcpy(other, toks, sizeof other);
    other[5] ^= 1;
    td_v4_seq *x = seq_after(toks, 0);
    TD_CHECK_EQ_INT((int)td_spill_restore_begin(s, c, x, other, NTOK, &tag, &queued), 0);
    TD_CHECK(!queued && td_spill_resuming(s) == 0);
    /* (the first restore asked the set too: its state was in memory) */
    TD_CHECK(has_metric(s, "tandem_kv_resume_misses_total 2\n"));

    td_spill_destroy(s, c);
    td_pcache_destroy(c);
    free(lb);
    free(lf);
    td_v4_seq_destroy(a);
    td_v4_seq_destroy(b);
    td_v4_seq_destroy(x);
    td_v4_seq_destroy(full);
    tm_rmrf(dir);
}

/* A store full of pinned entries: the write fails (counted as nospc) and
 * the idle state goes back to memory, still restorable, not offered again. */
static void refused_state_comes_back(void)
{
    char dir[64];
    tm_tmpdir(dir, sizeof dir);
    td_kv *kv;
    char err[256];
    td_kv_opts ko = {.dir = dir, .create = 1, .capacity_bytes = 256 << 10,
                     .fingerprint = td_v4_layout_fingerprint(td_v4_model_config(M))};
    TD_CHECK(td_kv_open(&kv, &ko, err, sizeof err) == TD_OK);
    static uint8_t filler[200 << 10];
    td_kv_key k = {1, 2};
    TD_CHECK(td_kv_put(kv, k, 0, 128, filler, sizeof filler, err, sizeof err) == TD_OK);
    TD_CHECK(td_kv_pin(kv, k, 0, 1, err, sizeof err) == TD_OK);
    td_kv_close(kv);
    td_pcache *c;
    TD_CHECK(td_pcache_create(&c, 64u << 20, NULL, NULL) == TD_OK);
    td_spill *s;
    td_spill_opts o = {.dir = dir};
    TD_CHECK(td_spill_create(&s, &o, M, c) == TD_OK && td_spill_up(s));
    td_v4_seq *full = seq_after(toks, NSTATE);
    TD_CHECK(td_pcache_put(c, full, toks, NSTATE) == TD_OK);
    usleep(5000);
    struct timespec until;
    TD_CHECK(!td_spill_idle(s, c, 1, &until));  /* handed over: nothing left to wait for */
    TD_CHECK(td_pcache_get_stats(c).entries == 0);
    done_rec d = {0};
    collect(s, c, &d);
    TD_CHECK(td_pcache_get_stats(c).entries == 1);
    TD_CHECK(has_metric(s, "tandem_kv_spill_errors_total{op=\"spill\",reason=\"nospc\"} 1\n"));
    usleep(5000);
    TD_CHECK(!td_spill_idle(s, c, 1, &until));  /* kept: not offered again */
    TD_CHECK(!td_spill_news(s) && td_pcache_get_stats(c).entries == 1);
    td_v4_seq *a = seq_after(toks, 0);
    bool queued;
    TD_CHECK_EQ_INT((int)td_spill_restore_begin(s, c, a, toks, NTOK, NULL, &queued), NSTATE);
    TD_CHECK(!queued);
    td_spill_destroy(s, c);
    td_pcache_destroy(c);
    td_v4_seq_destroy(a);
    td_v4_seq_destroy(full);
    tm_rmrf(dir);
}

static size_t held_n, dropped_n;
static int held_calls, dropped_calls;
static void on_held(void *arg, bool stored, const int32_t *t, size_t n)
{
    (void)arg;
    TD_CHECK(!memcmp(t, toks, n * sizeof *t));
    if (stored)
        held_n = n, held_calls++;
    else
        dropped_n = n, dropped_calls++;
}

/* Nine states that end in one 128-token block: the block's index keeps
 * eight, the oldest is deleted, and the engine told it is gone. A new
 * tier on the same store announces the eight that are left. */
static void told_what_disk_holds(void)
{
    char dir[64];
    tm_tmpdir(dir, sizeof dir);
    td_pcache *c;
    TD_CHECK(td_pcache_create(&c, 4096, NULL, NULL) == TD_OK);
    td_spill *s;
    td_spill_opts o = {.dir = dir, .on_held = on_held};
    TD_CHECK(td_spill_create(&s, &o, M, c) == TD_OK);
    td_v4_seq *q = seq_after(toks, NSTATE);
    done_rec d = {0};
    char err[256];
    for (int i = 0; i < 9; i++) {
        if (i) {
            td_v4_step st = {.seq = q, .tokens = toks + NSTATE + i - 1, .n = 1};
            TD_CHECK(td_v4_forward(M, &st, 1, err, sizeof err) == TD_OK);
        }
        TD_CHECK(td_pcache_put(c, q, toks, NSTATE + i) == TD_OK);
        collect(s, c, &d);
    }
    TD_CHECK(dropped_calls == 1 && dropped_n == NSTATE && held_calls == 0);
    td_spill_destroy(s, c);
    TD_CHECK(td_spill_create(&s, &o, M, c) == TD_OK);
    for (int i = 0; i < 2000 && held_calls < 8; i++) {
        usleep(1000);
        td_spill_poll(s, c, on_done, &d);
    }
    TD_CHECK(held_calls == 8 && held_n > NSTATE && held_n <= NSTATE + 8);
    td_spill_destroy(s, c);
    td_pcache_destroy(c);
    td_v4_seq_destroy(q);
    tm_rmrf(dir);
}

typedef struct {
    td_kv_key keys[64];
    size_t n;
} index_list;

static int list_index(const td_kv_entry_info *e, void *arg)
{
    index_list *l = arg;
    if (e->section == 0x7461 && l->n < 64)
        l->keys[l->n++] = e->key;
    return 0;
}

static int32_t first_dropped = -1;
static int evicted_calls;
static void on_evicted(void *arg, bool stored, const int32_t *t, size_t n)
{
    (void)arg;
    TD_CHECK(!stored && n == NSTATE && !memcmp(t + 1, toks + 1, (n - 1) * sizeof *t));
    if (first_dropped < 0)
        first_dropped = t[0];
    evicted_calls++;
}

/* A store with room for a few states: when it evicts one for room, the
 * engine hears it is gone (the router stops sending its conversation
 * here), and the oldest goes first. */
static void told_what_store_evicts(void)
{
    char dir[64];
    tm_tmpdir(dir, sizeof dir);
    td_pcache *c;
    TD_CHECK(td_pcache_create(&c, 4096, NULL, NULL) == TD_OK);
    td_spill *s;
    td_spill_opts o = {.dir = dir, .capacity_bytes = 512 << 10, .on_held = on_evicted};
    TD_CHECK(td_spill_create(&s, &o, M, c) == TD_OK);
    int32_t p[NSTATE];
    memcpy(p, toks, sizeof p);
    done_rec d = {0};
    for (int i = 0; i < 8; i++) {
        p[0] = 100 + i;  /* eight conversations (states of the right size; no
                          * prefill: what is evicted does not depend on the values) */
        td_v4_seq *q = seq_after(p, 0);
        td_v4_seq_fill_synthetic(q, NSTATE, (uint64_t)i);
        TD_CHECK(td_pcache_put(c, q, p, NSTATE) == TD_OK);
        collect(s, c, &d);
        td_v4_seq_destroy(q);
    }
    for (int i = 0; i < 100 && !td_spill_news(s); i++)
        usleep(1000);
    td_spill_poll(s, c, on_done, &d);
    TD_CHECK(evicted_calls >= 1 && first_dropped == 100);
    TD_CHECK(has_metric(s, "tandem_kvstore_evictions_total"));
    td_spill_destroy(s, c);
    td_pcache_destroy(c);
    /* The index records left name only states that are there (an evicted
     * state's entry is pruned, its record deleted when it named nothing
     * else). */
    td_kv *kv;
    td_kv_opts ko = {.dir = dir, .fingerprint = td_v4_layout_fingerprint(&W->cfg)};
    char err[256];
    TD_CHECK(td_kv_open(&kv, &ko, err, sizeof err) == TD_OK);
    index_list l = {0};
    td_kv_foreach(kv, list_index, &l);
    TD_CHECK(l.n >= 1);
    for (size_t i = 0; i < l.n; i++) {
        uint8_t rec[TD_SPILL_IDX_CAP];
        size_t len = 0, ne = 0;
        td_spill_index_entry ents[TD_SPILL_IDX_MAX_STATES];
        TD_CHECK(td_kv_get(kv, l.keys[i], 0x7461, rec, sizeof rec, &len, err, sizeof err) == TD_OK);
        TD_CHECK(td_spill_index_parse(rec, len, 128, ents, &ne) == TD_OK && ne >= 1);
        for (size_t k = 0; k < ne; k++) {
            td_kv_entry_info info;
            TD_CHECK(td_kv_stat_entry(kv, ents[k].key, 0, &info) == TD_OK);
        }
    }
    td_kv_close(kv);
    tm_rmrf(dir);
}

/* Idle after a write, the KV thread reclaims: a checkpoint empties the
 * manifest log (down to its 64-byte header). Once: nothing changed since. */
static void reclaims_when_idle(void)
{
    char dir[64], log[128];
    tm_tmpdir(dir, sizeof dir);
    td_pcache *c;
    TD_CHECK(td_pcache_create(&c, 4096, NULL, NULL) == TD_OK);
    td_spill *s;
    td_spill_opts o = {.dir = dir, .gc_idle_ms = 50};
    TD_CHECK(td_spill_create(&s, &o, M, c) == TD_OK);
    td_v4_seq *q = seq_after(toks, NSTATE);
    TD_CHECK(td_pcache_put(c, q, toks, NSTATE) == TD_OK);
    done_rec d = {0};
    collect(s, c, &d);
    snprintf(log, sizeof log, "%s/manifest.log", dir);
    struct stat st;
    TD_CHECK(stat(log, &st) == 0 && st.st_size > 64);
    bool gc = false;
    for (int i = 0; i < 400 && !gc; i++) {
        usleep(5000);
        td_prom_buf b = {0};
        td_spill_metrics(s, &b);
        gc = b.p && strstr(b.p, "tandem_kv_spill_gc_total 1\n");
        free(b.p);
    }
    TD_CHECK(gc);
    TD_CHECK(stat(log, &st) == 0 && st.st_size == 64);
    usleep(200000);
    TD_CHECK(has_metric(s, "tandem_kv_spill_gc_total 1\n"));  /* idle, and clean */
    td_spill_destroy(s, c);
    td_pcache_destroy(c);
    td_v4_seq_destroy(q);
    tm_rmrf(dir);
}

int main(int argc, char **argv)
{
    static const td_test_case cases[] = {
        {"hand_off_then_background_read", hand_off_then_background_read},
        {"refused_state_comes_back", refused_state_comes_back},
        {"told_what_disk_holds", told_what_disk_holds},
        {"reclaims_when_idle", reclaims_when_idle},
        {"told_what_store_evicts", told_what_store_evicts},
        {NULL, NULL},
    };
    return tm_main(argc, argv, cases, toks, NTOK);
}
