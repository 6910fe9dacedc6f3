/* td_kv eviction policies (kvstore/evict.c): the cost policy keeps what saves
 * the most prefill per page and still ages out what is not used, frequency
 * counts, tiny index records outlive the states they name, the order survives
 * a restart (and a checkpoint from before the eviction table), and on_evict
 * reports every eviction and nothing else. LRU's own behaviour is
 * kvstore_test.c's (unchanged). */
#include <unistd.h>

#include <sys/wait.h>

#include "kvstore/format.h"
#include "tests/td_test.h"
#include "tests/unit/kvstore/kvtest.h"

/* Pages of a value of len bytes at block_bytes 8192: 8064 payload bytes per
 * 2-page block. */
#define BLOCK_PAYLOAD (8192 - 128)
static size_t len_of_pages(uint32_t pages)
{
    return (size_t)(pages / 2) * BLOCK_PAYLOAD + (pages % 2 ? 100 : 0);
}

/* What on_evict saw, in order. */
typedef struct {
    td_kv_key keys[4096];
    uint32_t sections[4096];
    uint64_t n, tokens, bytes;
} evlog;

static void on_evict(void *arg, const td_kv_entry_info *e)
{
    evlog *l = arg;
    if (l->n < 4096) {
        l->keys[l->n] = e->key;
        l->sections[l->n] = e->section;
    }
    l->n++;
    l->tokens += e->tokens;
    l->bytes += e->value_bytes;
}

/* 64 pages in one segment, 2-page blocks; policy as given. */
static td_kv_opts small_opts(const char *dir, td_kv_evict policy, evlog *l)
{
    td_kv_opts o = kvt_opts(dir);
    o.capacity_bytes = o.segment_bytes = 256u << 10;
    o.block_bytes = 8192;
    o.eviction = policy;
    o.on_evict = l ? on_evict : NULL;
    o.on_evict_arg = l;
    return o;
}

static td_kv *open_store(const td_kv_opts *o)
{
    td_kv *kv = NULL;
    char err[512] = "";
    td_err r = td_kv_open(&kv, o, err, sizeof(err));
    if (r)
        fprintf(stderr, "open %s: %s\n", o->dir, err);
    TD_CHECK_EQ_INT(r, TD_OK);
    return kv;
}

/* A fresh 64-page store in a scratch directory, and what on_evict saw. */
typedef struct {
    char dir[256];
    evlog l;
    td_kv_opts o;
    td_kv *kv;
} rig;

static rig *rig_open(td_kv_evict policy)
{
    rig *g = calloc(1, sizeof(*g));
    kvt_dir(g->dir, sizeof(g->dir), "s");
    g->o = small_opts(g->dir, policy, &g->l);
    g->kv = open_store(&g->o);
    if (!g->kv) {
        kvt_cleanup(g->dir);
        free(g);
        return NULL;
    }
    return g;
}

static void rig_close(rig *g)
{
    td_kv_close(g->kv);
    kvt_cleanup(g->dir);
    free(g);
}

/* Entry `id` (section 0) of `pages` pages filed as the state after `tokens`. */
static void put(td_kv *kv, uint64_t id, uint64_t tokens, uint32_t pages)
{
    TD_CHECK_EQ_INT(kvt_put(kv, id, tokens, len_of_pages(pages)), TD_OK);
}

static void read_n(td_kv *kv, uint64_t id, int times)
{
    static uint8_t buf[64 * 4096];
    for (int i = 0; i < times; i++) {
        size_t n;
        TD_CHECK_EQ_INT(td_kv_get(kv, kvt_key(id), 0, buf, sizeof(buf), &n, NULL, 0), TD_OK);
    }
}

static int has(td_kv *kv, uint64_t id, uint32_t section)
{
    td_kv_entry_info i;
    return td_kv_stat_entry(kv, kvt_key(id), section, &i) == TD_OK;
}

static int same_key(td_kv_key a, td_kv_key b)
{
    return a.lo == b.lo && a.hi == b.hi;
}

/* A small value of many tokens against larger values of few: LRU lets it go
 * first, the cost policy keeps it while the big ones churn, and ages it out
 * once the clock has risen past its credit. */
static void run_small_costly(td_kv_evict policy)
{
    rig *g = rig_open(policy);
    if (!g)
        return;
    td_kv *kv = g->kv;
    evlog *l = &g->l;
    put(kv, 1, 64, 1);                  /* worth 64.25 per page */
    uint64_t id = 2, survived = 0;
    while (has(kv, 1, 0) && id < 400) {
        put(kv, id++, 16, 16);          /* worth ~1 per page; 3 fit beside it */
        survived += has(kv, 1, 0);
    }
    td_kv_stats st;
    td_kv_stats_get(kv, &st);
    TD_CHECK_EQ_INT(st.evictions, l->n);
    TD_CHECK_EQ_INT(st.evicted_tokens, l->tokens);
    TD_CHECK_EQ_INT(st.evicted_bytes, l->bytes);
    TD_CHECK_EQ_INT(st.evicted_unread, l->n);      /* nothing was read */
    TD_CHECK(!has(kv, 1, 0));                     /* ages out under either policy */
    if (policy == TD_KV_EVICT_LRU) {
        TD_CHECK_EQ_INT(survived, 3);             /* the first eviction took it */
        TD_CHECK(same_key(l->keys[0], kvt_key(1)));
    } else {
        /* It outlived about 64 / (1/3) big values: the clock rises by a
         * third of a big value's worth per eviction (three are resident). */
        fprintf(stderr, "  cost: the 1-page 64-token entry outlived %llu 16-page puts\n",
                (unsigned long long)survived);
        TD_CHECK(survived > 100 && survived < 300);
    }
    rig_close(g);
}

static void test_small_costly(void)
{
    run_small_costly(TD_KV_EVICT_LRU);
    run_small_costly(TD_KV_EVICT_COST);
}

/* Equal values: A read four times, then B and C once each (A is the least
 * recent). LRU evicts A; the cost policy first the never-read newcomer,
 * then B, keeping A. */
static void run_frequency(td_kv_evict policy)
{
    rig *g = rig_open(policy);
    if (!g)
        return;
    td_kv *kv = g->kv;
    for (uint64_t id = 1; id <= 4; id++)
        put(kv, id, 128, 16);            /* A=1 B=2 C=3 D=4: full */
    read_n(kv, 1, 4);
    read_n(kv, 2, 1);
    read_n(kv, 3, 1);
    put(kv, 5, 128, 16);
    put(kv, 6, 128, 16);
    if (policy == TD_KV_EVICT_LRU) {
        TD_CHECK(!has(kv, 1, 0));
        TD_CHECK(!has(kv, 4, 0));
        TD_CHECK(has(kv, 2, 0));
    } else {
        TD_CHECK(has(kv, 1, 0));
        TD_CHECK(!has(kv, 4, 0));         /* never read */
        TD_CHECK(!has(kv, 2, 0));         /* read once, before C */
        TD_CHECK(has(kv, 3, 0));
    }
    rig_close(g);
}

static void test_frequency(void)
{
    run_frequency(TD_KV_EVICT_LRU);
    run_frequency(TD_KV_EVICT_COST);
}

/* The engine's disk tier: a state (section 0, many pages), its token ids
 * (0x746b, one page) and an index record naming it (0x7461, one page) put
 * together, the index of every other one looked up again. Under pressure
 * neither small record goes while its state is there, and index records do
 * not outlive their states by much (priced alone, a one-page record of a
 * 12-page state would be worth 12 times as much and outlive it 12 times
 * over). */
#define SECTION_INDEX 0x7461u
#define SECTION_TOKENS 0x746bu
static void test_index_records(void)
{
    rig *g = rig_open(TD_KV_EVICT_COST);
    if (!g)
        return;
    td_kv *kv = g->kv;
    evlog *l = &g->l;
    static uint8_t v[12 * 4096];
    for (uint64_t i = 0; i < 60; i++) {
        uint64_t base = 128 * (1 + i % 4);
        size_t len = len_of_pages(12);
        kvt_fill(v, len, i);
        td_kv_item it[3] = {
            {.key = kvt_key(i), .section = 0, .tokens = base + 5, .value = v, .len = len},
            {.key = kvt_key(i), .section = SECTION_TOKENS, .tokens = base + 5, .value = v,
             .len = 4 * (base + 5)},
            {.key = kvt_key(i), .section = SECTION_INDEX, .tokens = base, .value = v, .len = 300},
        };
        char err[512] = "";
        TD_CHECK_EQ_INT(td_kv_put_many(kv, it, 3, err, sizeof(err)), TD_OK);
        size_t n;
        if (i % 2)
            TD_CHECK_EQ_INT(td_kv_get(kv, kvt_key(i), SECTION_INDEX, v, sizeof(v), &n, NULL, 0),
                            TD_OK);
    }
    TD_CHECK(l->n > 40);
    uint64_t index_evicted = 0;
    for (uint64_t k = 0; k < l->n && k < 4096; k++) {
        if (l->sections[k] == 0)
            continue;
        index_evicted += l->sections[k] == SECTION_INDEX;
        /* Its state went earlier. */
        int state_gone = 0;
        for (uint64_t j = 0; j < k; j++)
            state_gone |= l->sections[j] == 0 && same_key(l->keys[j], l->keys[k]);
        TD_CHECK(state_gone);
    }
    uint64_t states = 0, stale = 0;
    for (uint64_t i = 0; i < 60; i++) {
        states += has(kv, i, 0);
        stale += has(kv, i, SECTION_INDEX) && !has(kv, i, 0);
        if (has(kv, i, 0))
            TD_CHECK(has(kv, i, SECTION_INDEX) && has(kv, i, SECTION_TOKENS));
    }
    fprintf(stderr, "  cost: %llu states stored, %llu index records without their state, "
            "%llu index records evicted\n", (unsigned long long)states,
            (unsigned long long)stale, (unsigned long long)index_evicted);
    /* At most an eighth of the 64 pages (priced alone: 26 pages, over 40%). */
    TD_CHECK(states >= 3);
    TD_CHECK(stale <= 8);
    rig_close(g);
}

/* The same operations on a store kept open and on one closed and reopened
 * (and, with `strip`, whose checkpoint lost its eviction table as a build
 * from before it would write it: then entries restart equal, in LRU order).
 * Returns the keys evicted under later pressure. */
static void strip_table(const char *dir);
static uint64_t order_after(int reopen, int strip, td_kv_key *out, uint64_t cap)
{
    rig *g = rig_open(TD_KV_EVICT_COST);
    if (!g)
        return 0;
    td_kv *kv = g->kv;
    evlog *l = &g->l;
    /* Fill with entries of different worth, read some, evict a few so the
     * clock is not zero. */
    for (uint64_t id = 0; id < 12; id++)
        put(kv, id, 16 * (1 + id % 5), 4 + (uint32_t)(id % 3) * 2);
    for (uint64_t id = 0; id < 12; id += 3)
        if (has(kv, id, 0))
            read_n(kv, id, 1 + (int)(id % 4));
    if (reopen) {
        td_kv_close(kv);
        if (strip)
            strip_table(g->dir);
        g->o.eviction = TD_KV_EVICT_DEFAULT;   /* the checkpoint says COST */
        kv = g->kv = open_store(&g->o);
        if (!kv)
            return 0;
        td_kv_stats st;
        td_kv_stats_get(kv, &st);
        TD_CHECK_EQ_INT(st.eviction, TD_KV_EVICT_COST);
    }
    uint64_t before = l->n;
    for (uint64_t id = 100; id < 110; id++)
        put(kv, id, 16, 8);
    uint64_t n = 0;
    for (uint64_t k = before; k < l->n && n < cap; k++)
        out[n++] = l->keys[k];
    rig_close(g);
    return n;
}

static void test_restart_order(void)
{
    td_kv_key a[64], b[64], c[64];
    uint64_t na = order_after(0, 0, a, 64), nb = order_after(1, 0, b, 64);
    TD_CHECK(na >= 8);
    TD_CHECK_EQ_INT(na, nb);
    for (uint64_t i = 0; i < na && i < nb; i++)
        TD_CHECK(same_key(a[i], b[i]));
    /* Without the table the store opens (compatible) and still evicts. */
    uint64_t nc = order_after(1, 1, c, 64);
    TD_CHECK(nc >= 8);
}

/* Rewrites manifest.ckpt without its eviction table, as builds before the
 * table wrote it. */
static void strip_table(const char *dir)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/manifest.ckpt", dir);
    FILE *f = fopen(path, "rb");
    TD_CHECK(f != NULL);
    if (!f)
        return;
    static uint8_t buf[1 << 20];
    size_t len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    kv_geom g;
    const uint8_t *body;
    char err[256];
    TD_CHECK_EQ_INT(kv_ckpt_parse(buf, len, &g, &body, err, sizeof(err)), TD_OK);
    TD_CHECK(g.prio_bytes > 0);
    g.body_bytes -= g.prio_bytes;
    g.prio_bytes = 0;
    kv_ckpt_hdr_write(buf, &g);
    len = KV_CKPT_HDR + g.body_bytes;
    uint64_t sum = kv_checksum(buf, len);
    for (int i = 0; i < 8; i++)
        buf[len + i] = (uint8_t)(sum >> (8 * i));
    f = fopen(path, "wb");
    TD_CHECK(f && fwrite(buf, 1, len + 8, f) == len + 8);
    if (f)
        fclose(f);
}

/* on_evict: once per eviction, with the entry's metadata, never for
 * td_kv_del; the counters and the metrics agree. */
static void test_on_evict(void)
{
    rig *g = rig_open(TD_KV_EVICT_COST);
    if (!g)
        return;
    td_kv *kv = g->kv;
    evlog *l = &g->l;
    for (uint64_t id = 0; id < 4; id++)
        put(kv, id, 16 * (id + 1), 16);
    read_n(kv, 0, 2);                   /* 3 uses of 16 tokens: worth more than 1 */
    TD_CHECK_EQ_INT(td_kv_del(kv, kvt_key(3), 0, NULL, 0), TD_OK);
    put(kv, 4, 64, 16);                 /* into the deleted one's pages */
    TD_CHECK_EQ_INT(l->n, 0);
    put(kv, 5, 64, 16);                 /* evicts 1: 32 tokens, unread */
    TD_CHECK_EQ_INT(l->n, 1);
    TD_CHECK(same_key(l->keys[0], kvt_key(1)));
    TD_CHECK_EQ_INT(l->sections[0], 0);
    TD_CHECK_EQ_INT(l->tokens, 32);
    TD_CHECK_EQ_INT(l->bytes, len_of_pages(16));
    TD_CHECK(!has(kv, 1, 0));
    td_kv_stats st;
    td_kv_stats_get(kv, &st);
    TD_CHECK_EQ_INT(st.evictions, 1);
    TD_CHECK_EQ_INT(st.evicted_tokens, 32);
    TD_CHECK_EQ_INT(st.evicted_unread, 1);
    td_prom_buf b = {0};
    td_kv_metrics(&st, &b);
    TD_CHECK(b.p && strstr(b.p, "\ntandem_kvstore_evicted_tokens_total 32\n"));
    TD_CHECK(b.p && strstr(b.p, "tandem_kvstore_eviction_policy{policy=\"cost\"} 1\n"));
    free(b.p);
    /* Pinned entries are never victims; with all pinned, ENOSPC and no call. */
    for (uint64_t id = 0; id < 6; id++)
        td_kv_pin(kv, kvt_key(id), 0, 1, NULL, 0);
    size_t len = len_of_pages(16);
    uint8_t *v = calloc(1, len);
    char err[512];
    TD_CHECK_EQ_INT(td_kv_put(kv, kvt_key(9), 0, 9, v, len, err, sizeof(err)), TD_ENOSPC);
    TD_CHECK_EQ_INT(l->n, 1);
    /* Unpinned, their credit restarts at the clock: 0 (3 x 16 tokens in 16
     * pages) is worth the least and goes. */
    for (uint64_t id = 0; id < 6; id++)
        td_kv_pin(kv, kvt_key(id), 0, 0, NULL, 0);
    TD_CHECK_EQ_INT(td_kv_put(kv, kvt_key(9), 0, 9, v, len, err, sizeof(err)), TD_OK);
    TD_CHECK_EQ_INT(l->n, 2);
    TD_CHECK(same_key(l->keys[1], kvt_key(0)));
    free(v);
    rig_close(g);
}

/* A store just created (its first checkpoint written at create) opens as a
 * peer while its owner holds it, and records the default policy. */
static void test_fresh_peer(void)
{
    rig *g = rig_open(TD_KV_EVICT_DEFAULT);
    if (!g)
        return;
    td_kv *peer = NULL;
    td_kv_opts po = {.dir = g->dir, .fingerprint = KVT_FP, .peer = 1};
    char err[512] = "";
    td_err r = td_kv_open(&peer, &po, err, sizeof(err));
    if (r)
        fprintf(stderr, "peer open: %s\n", err);
    TD_CHECK_EQ_INT(r, TD_OK);
    td_kv_stats st;
    if (peer) {
        td_kv_stats_get(peer, &st);
        TD_CHECK_EQ_INT(st.eviction, TD_KV_EVICT_COST);
    }
    td_kv_close(peer);
    rig_close(g);
}

/* A crash (no close, so no checkpoint since the store was made): the puts
 * replayed from the log are priced as new, which still keeps the small
 * costly value over the big cheap ones. */
static void test_crash_approximation(void)
{
    rig *g = rig_open(TD_KV_EVICT_COST);
    if (!g)
        return;
    td_kv_close(g->kv);
    g->kv = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        td_kv *kv = NULL;
        if (td_kv_open(&kv, &g->o, NULL, 0))
            _exit(3);
        int bad = kvt_put(kv, 1, 64, len_of_pages(1)) != TD_OK;
        for (uint64_t id = 2; id < 5; id++)
            bad |= kvt_put(kv, id, 16, len_of_pages(16)) != TD_OK;
        _exit(bad);   /* no td_kv_close: the log is all there is */
    }
    int status = -1;
    waitpid(pid, &status, 0);
    TD_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    td_kv *kv = g->kv = open_store(&g->o);
    if (!kv) {
        kvt_cleanup(g->dir);
        free(g);
        return;
    }
    td_kv_stats st;
    td_kv_stats_get(kv, &st);
    TD_CHECK_EQ_INT(st.recovered_records, 4);
    for (uint64_t id = 10; id < 20; id++)
        put(kv, id, 16, 16);
    TD_CHECK(has(kv, 1, 0));
    TD_CHECK(!has(kv, 2, 0));
    rig_close(g);
}

/* A state made of token ranges (the disk tier's chunked states): range R
 * (16 pages, put alone with few tokens: cheap), then a state S of many
 * tokens that reuses it (td_kv_item.keep) beside a 2-page rest of its own.
 * R is then priced as part of S: cheap fillers churn while R stays, where
 * without the kept item the cost policy lets R go first (it is the cheapest
 * per page). A kept item is neither written nor counted as a put; one
 * that is absent fails the whole put before anything is written; a batch
 * of thousands with one duplicate is refused (sorted check). */
static void run_keep(int keep)
{
    rig *g = rig_open(TD_KV_EVICT_COST);
    if (!g)
        return;
    td_kv *kv = g->kv;
    char err[512] = "";
    put(kv, 1, 16, 16);                       /* R: worth 1 per page */
    static uint8_t rest[2 * BLOCK_PAYLOAD];
    kvt_fill(rest, sizeof(rest), 2);
    td_kv_item it[2] = {
        {.key = kvt_key(2), .section = 0, .tokens = 4096, .value = rest, .len = sizeof(rest)},
        {.key = kvt_key(1), .section = 0, .keep = 1},
    };
    td_kv_stats before, after;
    td_kv_stats_get(kv, &before);
    TD_CHECK_EQ_INT(td_kv_put_many(kv, it, keep ? 2 : 1, err, sizeof(err)), TD_OK);
    td_kv_stats_get(kv, &after);
    TD_CHECK_EQ_INT(after.puts - before.puts, 1);
    TD_CHECK_EQ_INT(after.put_bytes - before.put_bytes, sizeof(rest));
    TD_CHECK_EQ_INT(after.entries, 2);
    for (uint64_t id = 10; id < 30; id++)
        put(kv, id, 64, 8);                   /* worth ~8.25 per page: 4 fit beside R and S */
    if (keep) {
        TD_CHECK(has(kv, 1, 0));
        TD_CHECK(has(kv, 2, 0));
    } else {
        TD_CHECK(!has(kv, 1, 0));
        TD_CHECK(has(kv, 2, 0));
    }
    if (keep) {
        /* Absent: refused, nothing written. */
        it[1].key = kvt_key(99);
        td_kv_stats_get(kv, &before);
        TD_CHECK_EQ_INT(td_kv_put_many(kv, it, 2, err, sizeof(err)), TD_ENOENT);
        fprintf(stderr, "  (expected) %s\n", err);
        td_kv_stats_get(kv, &after);
        TD_CHECK_EQ_INT(after.puts, before.puts);
        /* Thousands of items, one duplicate pair far apart. */
        enum { N = 3000 };
        td_kv_item *many = calloc(N, sizeof(*many));
        for (uint32_t i = 0; i < N; i++)
            many[i] = (td_kv_item){.key = kvt_key(1000 + i % 7), .section = i, .value = rest,
                                   .len = 1};
        many[N - 1].section = 5;              /* same key as item 5 (i % 7 agrees) */
        many[N - 1].key = many[5].key;
        TD_CHECK_EQ_INT(td_kv_put_many(kv, many, N, err, sizeof(err)), TD_EINVAL);
        TD_CHECK(strstr(err, "items 5 and 2999") != NULL);
        fprintf(stderr, "  (expected) %s\n", err);
        free(many);
    }
    rig_close(g);
}

static void test_keep(void)
{
    run_keep(0);
    run_keep(1);
}

TD_TEST_MAIN({"crash_approximation", test_crash_approximation}, {"fresh_peer", test_fresh_peer}, {"small_costly", test_small_costly}, {"frequency", test_frequency},
             {"index_records", test_index_records}, {"restart_order", test_restart_order},
             {"on_evict", test_on_evict}, {"keep", test_keep})
