/* td_kv: round trips, prefix lookup, corruption and truncation, fingerprint,
 * eviction and pinning, reopen, errors. Batches, peers and the faults that
 * need privileges: others_test.c. Crash safety: crash_test.c. */
#include <fcntl.h>
#include <sched.h>
#include <grp.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/td_test.h"
#include "tests/unit/kvstore/kvtest.h"

#include "tests/unit/kvstore/kvcheck.h"

static const size_t sizes[] = {0, 1, 4095, 16384 - 128, 16384 - 127, 100000, (1u << 20) + 7};
#define N_SIZES (sizeof(sizes) / sizeof(sizes[0]))

static void test_roundtrip(void)
{
    char dir[256];
    td_kv_opts o;
    td_kv *kv = fresh(dir, &o);
    if (!kv)
        return;
    for (size_t i = 0; i < N_SIZES; i++)
        put_ok(kv, i, sizes[i]);
    for (size_t i = 0; i < N_SIZES; i++)
        get_ok(kv, i, sizes[i]);
    /* Replacing a value frees the old one's pages. */
    td_kv_stats a, b;
    td_kv_stats_get(kv, &a);
    put_ok(kv, 6, sizes[6]);
    td_kv_stats_get(kv, &b);
    TD_CHECK_EQ_INT(a.bytes_used, b.bytes_used);
    get_ok(kv, 6, sizes[6]);
    TD_CHECK_EQ_INT(b.puts, N_SIZES + 1);
    TD_CHECK_EQ_INT(b.entries, N_SIZES);
    /* The counters on a /metrics page. */
    td_prom_buf page = {0};
    td_kv_metrics(&b, &page);
    TD_CHECK(page.p && !page.oom);
    TD_CHECK(page.p && strstr(page.p, "\ntandem_kvstore_puts_total 8\n") != NULL);
    TD_CHECK(page.p && strstr(page.p, "# TYPE tandem_kvstore_bytes_used gauge\n") != NULL);
    free(page.p);
    /* A buffer too small: TD_ERANGE with the size. */
    uint8_t small[16];
    size_t n = 0;
    TD_CHECK_EQ_INT(td_kv_get(kv, kvt_key(5), 0, small, sizeof(small), &n, NULL, 0), TD_ERANGE);
    TD_CHECK_EQ_INT(n, sizes[5]);
    TD_CHECK_EQ_INT(td_kv_get(kv, kvt_key(99), 0, small, sizeof(small), &n, NULL, 0), TD_ENOENT);
    td_kv_close(kv);
    kvt_cleanup(dir);
}

/* Fallback path: plain buffers and descriptors, queue depth 1. */
static void test_no_register(void)
{
    char dir[256];
    kvt_dir(dir, sizeof(dir), "s");
    td_kv_opts o = kvt_opts(dir);
    o.no_register = 1;
    o.queue_depth = 1;
    td_kv *kv = open_ok(&o);
    if (!kv)
        return;
    td_kv_stats st;
    td_kv_stats_get(kv, &st);
    TD_CHECK_EQ_INT(st.buffers_registered, 0);
    TD_CHECK_EQ_INT(st.files_registered, 0);
    for (size_t i = 0; i < N_SIZES; i++)
        put_ok(kv, i, sizes[i]);
    for (size_t i = 0; i < N_SIZES; i++)
        get_ok(kv, i, sizes[i]);
    td_kv_close(kv);
    kvt_cleanup(dir);
}

static void test_prefix(void)
{
    char dir[256];
    kvt_dir(dir, sizeof(dir), "s");
    td_kv_opts o = kvt_opts(dir);   /* 16 tokens per block */
    td_kv *kv = open_ok(&o);
    if (!kv)
        return;
    int32_t a[200], b[200];
    for (int i = 0; i < 200; i++)
        a[i] = b[i] = i * 7 + 3;
    b[70] = -1;   /* b shares a's first 70 tokens: 4 whole blocks */
    td_kv_key ka[12], kb[12];
    TD_CHECK_EQ_INT(td_kv_chain(KVT_FP, 16, a, 200, ka, 12), 12);
    TD_CHECK_EQ_INT(td_kv_chain(KVT_FP, 16, b, 200, kb, 12), 12);
    for (int i = 0; i < 4; i++)
        TD_CHECK(ka[i].lo == kb[i].lo && ka[i].hi == kb[i].hi);
    TD_CHECK(ka[4].lo != kb[4].lo);
    td_kv_key other;
    td_kv_chain(KVT_FP + 1, 16, a, 16, &other, 1);
    TD_CHECK(other.lo != ka[0].lo);   /* another model never shares keys */
    /* State stored at 48 tokens (block 3) and at 160 (block 10). */
    uint8_t v[100] = {1};
    TD_CHECK_EQ_INT(td_kv_put(kv, ka[2], 0, 48, v, sizeof(v), NULL, 0), TD_OK);
    TD_CHECK_EQ_INT(td_kv_put(kv, ka[9], 0, 160, v, sizeof(v), NULL, 0), TD_OK);
    uint64_t got;
    td_kv_key k;
    TD_CHECK_EQ_INT(td_kv_longest_prefix(kv, a, 200, 0, &got, &k), TD_OK);
    TD_CHECK_EQ_INT(got, 160);
    TD_CHECK(k.lo == ka[9].lo && k.hi == ka[9].hi);
    TD_CHECK_EQ_INT(td_kv_longest_prefix(kv, a, 159, 0, &got, &k), TD_OK);
    TD_CHECK_EQ_INT(got, 48);
    TD_CHECK_EQ_INT(td_kv_longest_prefix(kv, b, 200, 0, &got, &k), TD_OK);
    TD_CHECK_EQ_INT(got, 48);
    TD_CHECK_EQ_INT(td_kv_longest_prefix(kv, a, 200, 1, &got, &k), TD_OK);
    TD_CHECK_EQ_INT(got, 0);   /* another section */
    td_kv_entry_info info;
    TD_CHECK_EQ_INT(td_kv_stat_entry(kv, ka[9], 0, &info), TD_OK);
    TD_CHECK_EQ_INT(info.tokens, 160);
    td_kv_stats st;
    td_kv_stats_get(kv, &st);
    /* blocks looked up: 12 + 9 + 12 + 12; hit 10 + 3 + 3 + 0 */
    TD_CHECK_EQ_INT(st.hit_blocks, 16);
    TD_CHECK_EQ_INT(st.miss_blocks, 45 - 16);
    TD_CHECK_EQ_INT(st.hit_tokens, 16 * 16);
    TD_CHECK_EQ_INT(st.miss_tokens, 200 + 159 + 200 + 200 - 16 * 16);
    /* The scheme is an on-disk format (docs/kvstore.md): pin it. */
    int32_t g[8] = {1, 2, 3, 4, 5, 6, 7, -8};
    td_kv_key gk[2];
    char hex[33];
    TD_CHECK_EQ_INT(td_kv_chain(0x1234, 4, g, 8, gk, 2), 2);
    td_kv_key_hex(gk[0], hex);
    TD_CHECK_STR(hex, "e3882f8bc440d7cb08da86bcf2b3b99a");
    td_kv_key_hex(gk[1], hex);
    TD_CHECK_STR(hex, "566b55e7b2634423f801949ec2fde3f1");
    td_kv_key_hex(ka[3], hex);
    TD_CHECK_EQ_INT(td_kv_key_parse(hex, &k), TD_OK);
    TD_CHECK(k.lo == ka[3].lo && k.hi == ka[3].hi);
    td_kv_close(kv);
    kvt_cleanup(dir);
}

static void flip_byte(const char *dir, const char *file, off_t off)
{
    TD_CHECK_EQ_INT(kvt_flip_byte(dir, file, off), 0);
}

static void test_corrupt(void)
{
    char dir[256];
    td_kv_opts o;
    td_kv *kv = fresh(dir, &o);
    if (!kv)
        return;
    put_ok(kv, 1, 50000);   /* first: pages 0..12 of segment 0 */
    put_ok(kv, 2, 50000);
    td_kv_close(kv);
    flip_byte(dir, "seg-000000.dat", 16384 + 500);   /* payload of block 1 of value 1 */
    kv = open_ok(&o);
    if (!kv)
        return;
    char err[512] = "";
    TD_CHECK_EQ_INT(get_check(kv, 1, 50000, err, sizeof(err)), TD_ECORRUPT);
    fprintf(stderr, "  (expected) %s\n", err);
    TD_CHECK(strstr(err, "checksum") != NULL);
    TD_CHECK(strstr(err, "seg-000000.dat") != NULL);
    td_kv_stats st;
    td_kv_stats_get(kv, &st);
    TD_CHECK_EQ_INT(st.checksum_failures, 1);
    /* Dropped: not served again, not found by lookups, and the other entry
     * is untouched. */
    TD_CHECK_EQ_INT(get_check(kv, 1, 50000, err, sizeof(err)), TD_ENOENT);
    get_ok(kv, 2, 50000);
    /* verify finds a damaged header too. */
    td_kv_close(kv);
    flip_byte(dir, "seg-000000.dat", 13 * 4096 + 20);   /* key field, value 2 block 0 */
    kv = open_ok(&o);
    if (!kv)
        return;
    uint64_t ok = 9, bad = 9;
    TD_CHECK_EQ_INT(td_kv_verify(kv, &ok, &bad, err, sizeof(err)), TD_ECORRUPT);
    fprintf(stderr, "  (expected) %s\n", err);
    TD_CHECK_EQ_INT(ok, 0);
    TD_CHECK_EQ_INT(bad, 1);
    td_kv_close(kv);
    kv = open_ok(&o);   /* the drop was logged */
    if (kv) {
        td_kv_stats_get(kv, &st);
        TD_CHECK_EQ_INT(st.entries, 0);
        td_kv_close(kv);
    }
    kvt_cleanup(dir);
}

static void truncate_file(const char *dir, const char *file, off_t delta)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    struct stat sb;
    TD_CHECK_EQ_INT(stat(path, &sb), 0);
    TD_CHECK_EQ_INT(truncate(path, delta < 0 ? sb.st_size + delta : delta), 0);
}

/* Puts in a child that exits without closing: the log keeps the records
 * (no closing checkpoint), as after a crash. */
static void put_and_vanish(const td_kv_opts *o, int first, int n, size_t len)
{
    pid_t pid = fork();
    if (pid == 0) {
        td_kv *kv = NULL;
        if (td_kv_open(&kv, o, NULL, 0))
            _exit(1);
        for (int i = first; i < first + n; i++) {
            uint8_t *v = malloc(len);
            kvt_fill(v, len, (uint64_t)i);
            if (td_kv_put(kv, kvt_key((uint64_t)i), 0, 1, v, len, NULL, 0))
                _exit(2);
            free(v);
        }
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    TD_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_truncated(void)
{
    char dir[256];
    kvt_dir(dir, sizeof(dir), "s");
    td_kv_opts o = kvt_opts(dir);
    put_and_vanish(&o, 0, 3, 40000);
    truncate_file(dir, "manifest.log", -5);   /* tears the last record */
    td_kv *kv = open_ok(&o);
    if (!kv)
        return;
    td_kv_stats st;
    td_kv_stats_get(kv, &st);
    TD_CHECK_EQ_INT(st.recovered_records, 2);
    TD_CHECK(st.torn_bytes > 0);
    get_ok(kv, 0, 40000);
    get_ok(kv, 1, 40000);
    char err[512];
    TD_CHECK_EQ_INT(get_check(kv, 2, 40000, err, sizeof(err)), TD_ENOENT);
    put_ok(kv, 7, 300000);   /* the log continues after the cut */
    td_kv_close(kv);
    /* A segment cut short: the blocks past the end are reported, not served. */
    truncate_file(dir, "seg-000000.dat", 12 * 4096);
    kv = open_ok(&o);
    if (!kv)
        return;
    get_ok(kv, 0, 40000);
    TD_CHECK_EQ_INT(get_check(kv, 7, 300000, err, sizeof(err)), TD_ECORRUPT);
    fprintf(stderr, "  (expected) %s\n", err);
    td_kv_close(kv);
    /* A damaged checkpoint: refused with its name. */
    truncate_file(dir, "manifest.ckpt", -3);
    kv = NULL;
    TD_CHECK_EQ_INT(td_kv_open(&kv, &o, err, sizeof(err)), TD_ECORRUPT);
    fprintf(stderr, "  (expected) %s\n", err);
    TD_CHECK(strstr(err, "manifest.ckpt") != NULL);
    TD_CHECK(kv == NULL);
    kvt_cleanup(dir);
}

/* A damaged record in the middle of the log: replay stops there (the
 * records after it are lost, never misread), the log is cut, and the store
 * goes on. */
static void test_log_damage(void)
{
    char dir[256], path[512], err[512];
    kvt_dir(dir, sizeof(dir), "s");
    td_kv_opts o = kvt_opts(dir);
    put_and_vanish(&o, 0, 3, 40000);
    snprintf(path, sizeof(path), "%s/manifest.log", dir);
    struct stat sb;
    TD_CHECK_EQ_INT(stat(path, &sb), 0);
    off_t rec = (sb.st_size - 64) / 3;   /* three PUT records of one size */
    flip_byte(dir, "manifest.log", 64 + rec + 30);
    td_kv *kv = open_ok(&o);
    if (!kv)
        return;
    td_kv_stats st;
    td_kv_stats_get(kv, &st);
    TD_CHECK_EQ_INT(st.recovered_records, 1);
    TD_CHECK_EQ_INT(st.torn_bytes, 2 * rec);
    get_ok(kv, 0, 40000);
    TD_CHECK_EQ_INT(get_check(kv, 1, 40000, err, sizeof(err)), TD_ENOENT);
    TD_CHECK_EQ_INT(get_check(kv, 2, 40000, err, sizeof(err)), TD_ENOENT);
    put_ok(kv, 3, 40000);
    td_kv_close(kv);
    kv = open_ok(&o);
    if (kv) {
        get_ok(kv, 0, 40000);
        get_ok(kv, 3, 40000);
        td_kv_stats_get(kv, &st);
        TD_CHECK_EQ_INT(st.entries, 2);
        td_kv_close(kv);
    }
    kvt_cleanup(dir);
}

static void test_fingerprint(void)
{
    char dir[256];
    td_kv_opts o;
    td_kv *kv = fresh(dir, &o);
    if (!kv)
        return;
    put_ok(kv, 1, 1000);
    td_kv_close(kv);
    o.fingerprint = KVT_FP ^ 1;
    char err[512] = "";
    kv = NULL;
    TD_CHECK_EQ_INT(td_kv_open(&kv, &o, err, sizeof(err)), TD_EFORMAT);
    fprintf(stderr, "  (expected) %s\n", err);
    TD_CHECK(strstr(err, "fingerprint") != NULL);
    o.fingerprint = 0;   /* inspection accepts any */
    o.read_only = 1;
    kv = open_ok(&o);
    if (kv) {
        get_ok(kv, 1, 1000);
        TD_CHECK_EQ_INT(td_kv_put(kv, kvt_key(2), 0, 0, "x", 1, NULL, 0), TD_EINVAL);
        td_kv_close(kv);
    }
    kvt_cleanup(dir);
}

static int collect(const td_kv_entry_info *i, void *arg)
{
    uint64_t *out = arg;
    out[out[0] + 1] = i->tokens;   /* tests put id as tokens */
    out[0]++;
    return 0;
}

static void test_eviction(void)
{
    char dir[256];
    kvt_dir(dir, sizeof(dir), "s");
    td_kv_opts o = kvt_opts(dir);
    o.capacity_bytes = o.segment_bytes = 256u << 10;   /* 64 pages */
    o.block_bytes = 8192;
    td_kv *kv = open_ok(&o);
    if (!kv)
        return;
    const size_t len = 8 * (8192 - 128);   /* 8 blocks of 2 pages: a quarter */
    for (uint64_t i = 0; i < 4; i++)
        put_ok(kv, i, len);
    get_ok(kv, 0, len);                     /* LRU now 1 2 3 0 */
    TD_CHECK_EQ_INT(td_kv_pin(kv, kvt_key(1), 0, 1, NULL, 0), TD_OK);
    put_ok(kv, 4, len);                     /* evicts 2 */
    put_ok(kv, 5, len);                     /* evicts 3 */
    put_ok(kv, 6, len);                     /* evicts 0 */
    char err[512];
    TD_CHECK_EQ_INT(get_check(kv, 2, len, err, sizeof(err)), TD_ENOENT);
    TD_CHECK_EQ_INT(get_check(kv, 3, len, err, sizeof(err)), TD_ENOENT);
    TD_CHECK_EQ_INT(get_check(kv, 0, len, err, sizeof(err)), TD_ENOENT);
    get_ok(kv, 1, len);
    get_ok(kv, 4, len);
    td_kv_stats st;
    td_kv_stats_get(kv, &st);
    TD_CHECK_EQ_INT(st.evictions, 3);
    TD_CHECK_EQ_INT(st.pinned, 1);
    TD_CHECK_EQ_INT(st.bytes_free, 0);
    /* Everything pinned: a clear ENOSPC, nothing lost. */
    for (uint64_t i = 4; i < 7; i++)
        TD_CHECK_EQ_INT(td_kv_pin(kv, kvt_key(i), 0, 1, NULL, 0), TD_OK);
    uint8_t *v = calloc(1, len);
    TD_CHECK_EQ_INT(td_kv_put(kv, kvt_key(9), 0, 9, v, len, err, sizeof(err)), TD_ENOSPC);
    fprintf(stderr, "  (expected) %s\n", err);
    TD_CHECK(strstr(err, "pinned") != NULL);
    TD_CHECK_EQ_INT(td_kv_put(kv, kvt_key(9), 0, 9, v, 1u << 20, err, sizeof(err)), TD_ENOSPC);
    free(v);
    get_ok(kv, 6, len);
    /* Unpin and reopen: pins and LRU order survive. */
    TD_CHECK_EQ_INT(td_kv_pin(kv, kvt_key(4), 0, 0, NULL, 0), TD_OK);
    uint64_t before[8] = {0}, after[8] = {0};
    td_kv_foreach(kv, collect, before);
    td_kv_close(kv);
    kv = open_ok(&o);
    if (!kv)
        return;
    td_kv_foreach(kv, collect, after);
    TD_CHECK_EQ_INT(after[0], 4);
    TD_CHECK(memcmp(before, after, sizeof(before)) == 0);
    td_kv_stats_get(kv, &st);
    TD_CHECK_EQ_INT(st.pinned, 3);
    put_ok(kv, 10, len);                    /* only 4 is evictable */
    TD_CHECK_EQ_INT(get_check(kv, 4, len, err, sizeof(err)), TD_ENOENT);
    td_kv_close(kv);
    kvt_cleanup(dir);
}

/* Enough free pages by count but no run long enough: eviction goes on
 * until a run forms, and the value lands whole. */
static void test_fragmented(void)
{
    char dir[256];
    kvt_dir(dir, sizeof(dir), "s");
    td_kv_opts o = kvt_opts(dir);
    o.capacity_bytes = o.segment_bytes = 256u << 10;   /* 64 pages */
    o.block_bytes = 8192;                              /* blocks of 1 or 2 pages */
    td_kv *kv = open_ok(&o);
    if (!kv)
        return;
    for (uint64_t i = 0; i < 64; i++)
        put_ok(kv, i, 100);                            /* one page each */
    for (uint64_t i = 0; i < 64; i += 2)
        TD_CHECK_EQ_INT(td_kv_del(kv, kvt_key(i), 0, NULL, 0), TD_OK);
    td_kv_stats st;
    td_kv_stats_get(kv, &st);
    TD_CHECK_EQ_INT(st.bytes_free, 32 * 4096);
    put_ok(kv, 100, 8000);                             /* one block of 2 pages */
    get_ok(kv, 100, 8000);
    td_kv_stats_get(kv, &st);
    TD_CHECK_EQ_INT(st.evictions, 1);                  /* entry 1: pages 0..2 free */
    char err[512];
    TD_CHECK_EQ_INT(get_check(kv, 1, 100, err, sizeof(err)), TD_ENOENT);
    get_ok(kv, 3, 100);
    td_kv_close(kv);
    kvt_cleanup(dir);
}

static void test_reopen(void)
{
    char dir[256];
    kvt_dir(dir, sizeof(dir), "s");
    td_kv_opts o = kvt_opts(dir);
    o.checkpoint_every = 5;   /* several checkpoints along the way */
    td_kv *kv = open_ok(&o);
    if (!kv)
        return;
    for (uint64_t i = 0; i < 40; i++)
        put_ok(kv, i, 1000 + i * 977);
    for (uint64_t i = 0; i < 40; i += 3)
        TD_CHECK_EQ_INT(td_kv_del(kv, kvt_key(i), 0, NULL, 0), TD_OK);
    td_kv_stats a;
    td_kv_stats_get(kv, &a);
    td_kv_close(kv);
    /* Reopen with other creation parameters: the store keeps its own. */
    o.block_bytes = 65536;
    o.create = 0;
    kv = open_ok(&o);
    if (!kv)
        return;
    td_kv_stats b;
    td_kv_stats_get(kv, &b);
    TD_CHECK_EQ_INT(b.block_bytes, 16384);
    TD_CHECK_EQ_INT(b.entries, a.entries);
    TD_CHECK_EQ_INT(b.bytes_used, a.bytes_used);
    for (uint64_t i = 0; i < 40; i++) {
        char err[512];
        if (i % 3 == 0)
            TD_CHECK_EQ_INT(get_check(kv, i, 1000 + i * 977, err, sizeof(err)), TD_ENOENT);
        else
            get_ok(kv, i, 1000 + i * 977);
    }
    /* gc: delete everything, the segment files go away. */
    for (uint64_t i = 0; i < 40; i++)
        td_kv_del(kv, kvt_key(i), 0, NULL, 0);
    TD_CHECK_EQ_INT(td_kv_gc(kv, NULL, 0), TD_OK);
    td_kv_stats_get(kv, &b);
    TD_CHECK_EQ_INT(b.segments, 0);
    TD_CHECK_EQ_INT(b.bytes_used, 0);
    put_ok(kv, 100, 5000);
    get_ok(kv, 100, 5000);
    td_kv_close(kv);
    kvt_cleanup(dir);
}

static void test_errors(void)
{
    char dir[256], err[512] = "";
    kvt_dir(dir, sizeof(dir), "s");
    td_kv_opts o = kvt_opts(dir);
    o.create = 0;
    td_kv *kv = NULL;
    TD_CHECK_EQ_INT(td_kv_open(&kv, &o, err, sizeof(err)), TD_ENOENT);
    fprintf(stderr, "  (expected) %s\n", err);
    /* A second writer is refused while the first holds the store. */
    o.create = 1;
    td_kv *a = open_ok(&o);
    TD_CHECK_EQ_INT(td_kv_open(&kv, &o, err, sizeof(err)), TD_EBUSY);
    fprintf(stderr, "  (expected) %s\n", err);
    td_kv_close(a);
    /* The directory is a file. */
    char file[300];
    snprintf(file, sizeof(file), "%s/plain", dir);
    FILE *f = fopen(file, "w");
    fclose(f);
    o.dir = file;
    TD_CHECK(td_kv_open(&kv, &o, err, sizeof(err)) != TD_OK);
    fprintf(stderr, "  (expected) %s\n", err);
    TD_CHECK(strstr(err, file) != NULL);
    /* Bad geometry. */
    o = kvt_opts(dir);
    snprintf(file, sizeof(file), "%s/geom", dir);
    o.dir = file;
    o.block_bytes = 5000;
    TD_CHECK_EQ_INT(td_kv_open(&kv, &o, err, sizeof(err)), TD_EINVAL);
    fprintf(stderr, "  (expected) %s\n", err);
    /* A capacity below a segment and not a whole number of pages (as
     * --kv-store-gib 0.004 gives) is one segment of its whole pages. */
    o = kvt_opts(dir);
    snprintf(file, sizeof(file), "%s/small", dir);
    o.dir = file;
    o.segment_bytes = 0;
    o.capacity_bytes = 4294967;   /* 0.004 GiB */
    kv = open_ok(&o);
    if (kv) {
        td_kv_stats st;
        td_kv_stats_get(kv, &st);
        TD_CHECK_EQ_INT(st.capacity_bytes, 4294967 - 4294967 % 4096);
        TD_CHECK_EQ_INT(st.segment_bytes, st.capacity_bytes);
        put_ok(kv, 1, 100000);
        get_ok(kv, 1, 100000);
        td_kv_close(kv);
    }
    /* Permissions: root ignores mode bits, so only as another user. */
    if (geteuid() != 0) {
        snprintf(file, sizeof(file), "%s/ro", dir);
        mkdir(file, 0555);
        o = kvt_opts(file);
        TD_CHECK_EQ_INT(td_kv_open(&kv, &o, err, sizeof(err)), TD_EIO);
        fprintf(stderr, "  (expected) %s\n", err);
        TD_CHECK(strstr(err, "ermission") != NULL);
    }
    kvt_cleanup(dir);
}

TD_TEST_MAIN({"roundtrip", test_roundtrip}, {"no_register", test_no_register},
             {"prefix", test_prefix}, {"corrupt", test_corrupt},
             {"truncated", test_truncated}, {"log_damage", test_log_damage},
             {"fingerprint", test_fingerprint}, {"eviction", test_eviction},
             {"fragmented", test_fragmented}, {"reopen", test_reopen}, {"errors", test_errors})
