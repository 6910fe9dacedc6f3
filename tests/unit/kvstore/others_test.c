/* td_kv: batches (put_many, get_many), a peer reading a store its owner
 * writes, and the faults that need privileges to arrange (an unwritable
 * directory as another user, a real full disk on a tmpfs): skipped where
 * not permitted. */
#include <fcntl.h>
#include <sched.h>
#include <grp.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/unit/kvstore/kvcheck.h"

/* As an unprivileged user (a child that drops root, or the test's own user):
 * registration beyond RLIMIT_MEMLOCK falls back cleanly, and a directory
 * without write permission is a clear error. */
static void unprivileged_child(const char *base)
{
    if (geteuid() == 0 && (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0))
        _exit(77);
    char dir[300], err[512] = "";
    snprintf(dir, sizeof(dir), "%s/open/s", base);
    td_kv_opts o = kvt_opts(dir);
    o.block_bytes = 1u << 20;
    o.queue_depth = 16;   /* a 16 MiB pool: over the 8 MiB memlock limit */
    td_kv *kv = open_ok(&o);
    if (!kv)
        _exit(1);
    struct rlimit rl;
    td_kv_stats st;
    td_kv_stats_get(kv, &st);
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur < (16u << 20))
        TD_CHECK_EQ_INT(st.buffers_registered, 0);
    fprintf(stderr, "  unprivileged: buffers registered %d, files registered %d\n",
            st.buffers_registered, st.files_registered);
    put_ok(kv, 1, 3000000);
    get_ok(kv, 1, 3000000);
    td_kv_close(kv);
    snprintf(dir, sizeof(dir), "%s/closed/s", base);
    o = kvt_opts(dir);
    kv = NULL;
    TD_CHECK_EQ_INT(td_kv_open(&kv, &o, err, sizeof(err)), TD_EIO);
    fprintf(stderr, "  (expected) %s\n", err);
    TD_CHECK(strstr(err, "Permission denied") != NULL);
    _exit(td_test_failures ? 1 : 0);
}

static void test_unprivileged(void)
{
    char base[256], sub[300];
    kvt_dir(base, sizeof(base), "u");
    mkdir(base, 0755);
    snprintf(sub, sizeof(sub), "%s/open", base);
    mkdir(sub, 0777);
    chmod(sub, 0777);
    snprintf(sub, sizeof(sub), "%s/closed", base);
    mkdir(sub, 0555);
    /* The scratch parent is 0700 (mkdtemp): let the child through. */
    char parent[256];
    snprintf(parent, sizeof(parent), "%s", base);
    *strrchr(parent, '/') = '\0';
    chmod(parent, 0755);
    pid_t pid = fork();
    if (pid == 0)
        unprivileged_child(base);
    int status = 0;
    waitpid(pid, &status, 0);
    kvt_cleanup(base);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
        TD_SKIP("unprivileged: cannot drop to uid 65534");
    TD_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void on_ready(size_t item, void *arg)
{
    ((int *)arg)[item]++;
}

/* A state's layer sections in one batch; all or none. */
static void test_put_many(void)
{
    char dir[256];
    td_kv_opts o;
    td_kv *kv = fresh(dir, &o);
    if (!kv)
        return;
    enum { N = 12 };
    static uint8_t v[N][30000];
    td_kv_item it[N];
    td_kv_key key = kvt_key(42);
    for (int i = 0; i < N; i++) {
        kvt_fill(v[i], sizeof(v[i]), 100 + (uint64_t)i);
        it[i] = (td_kv_item){.key = key, .section = 1 + (uint32_t)i, .tokens = 64,
                             .value = v[i], .len = sizeof(v[i]) - (size_t)i * 1000};
    }
    char err[512] = "";
    TD_CHECK_EQ_INT(td_kv_put_many(kv, it, N, err, sizeof(err)), TD_OK);
    uint8_t got[30000];
    for (int i = 0; i < N; i++) {
        size_t n = 0;
        TD_CHECK_EQ_INT(td_kv_get(kv, key, 1 + (uint32_t)i, got, sizeof(got), &n, err, sizeof(err)), TD_OK);
        TD_CHECK(n == it[i].len && memcmp(got, v[i], n) == 0);
    }
    /* Read back as one stream, each section announced once when whole. */
    static uint8_t back[N][30000];
    td_kv_get_item gi[N];
    for (int i = 0; i < N; i++)
        gi[i] = (td_kv_get_item){.key = key, .section = 1 + (uint32_t)i, .buf = back[i],
                                 .cap = sizeof(back[i])};
    int seen[N + 1] = {0};
    TD_CHECK_EQ_INT(td_kv_get_many(kv, gi, N, on_ready, seen, err, sizeof(err)), TD_OK);
    for (int i = 0; i < N; i++) {
        TD_CHECK_EQ_INT(seen[i], 1);
        TD_CHECK(gi[i].len == it[i].len && memcmp(back[i], v[i], gi[i].len) == 0);
    }
    gi[3].section = 99;   /* missing: nothing is read */
    TD_CHECK_EQ_INT(td_kv_get_many(kv, gi, N, on_ready, seen, err, sizeof(err)), TD_ENOENT);
    TD_CHECK_EQ_INT(seen[0], 1);
    td_kv_stats st;
    td_kv_stats_get(kv, &st);
    TD_CHECK_EQ_INT(st.puts, N);
    TD_CHECK_EQ_INT(st.gets, 2 * N);
    TD_CHECK_EQ_INT(st.recovered_records, 0);
    /* A duplicate (key, section): refused, nothing stored. */
    it[1].section = it[0].section;
    it[0].key = kvt_key(43);
    it[1].key = kvt_key(43);
    TD_CHECK_EQ_INT(td_kv_put_many(kv, it, 2, err, sizeof(err)), TD_EINVAL);
    fprintf(stderr, "  (expected) %s\n", err);
    /* More than the capacity in total: refused, nothing stored or lost. */
    td_kv_item big[3];
    static uint8_t huge[3u << 20];
    for (int i = 0; i < 3; i++)
        big[i] = (td_kv_item){.key = kvt_key(44), .section = (uint32_t)i, .value = huge,
                              .len = sizeof(huge)};
    TD_CHECK_EQ_INT(td_kv_put_many(kv, big, 3, err, sizeof(err)), TD_ENOSPC);
    fprintf(stderr, "  (expected) %s\n", err);
    td_kv_entry_info info;
    TD_CHECK_EQ_INT(td_kv_stat_entry(kv, kvt_key(44), 0, &info), TD_ENOENT);
    TD_CHECK_EQ_INT(td_kv_stat_entry(kv, kvt_key(43), it[0].section, &info), TD_ENOENT);
    td_kv_stats_get(kv, &st);
    TD_CHECK_EQ_INT(st.entries, N);
    td_kv_close(kv);
    kvt_cleanup(dir);
}

/* A real full disk: a 1200 KiB tmpfs in a private mount namespace (needs
 * root; skipped elsewhere) holds two 512 KiB segments and the manifest. */
static void disk_full_child(const char *mnt)
{
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", mnt, "tmpfs", 0, "size=1200k") != 0)
        _exit(77);
    char dir[300], err[512] = "";
    snprintf(dir, sizeof(dir), "%s/s", mnt);
    td_kv_opts o = kvt_opts(dir);
    o.segment_bytes = 512u << 10;
    o.capacity_bytes = 4u << 20;   /* more than the disk holds */
    td_kv *kv = open_ok(&o);
    if (!kv)
        _exit(1);
    td_err r = TD_OK;
    uint64_t i = 0;
    for (; i < 40 && !r; i++) {
        uint8_t v[100000];
        kvt_fill(v, sizeof(v), i);
        r = td_kv_put(kv, kvt_key(i), 0, i, v, sizeof(v), err, sizeof(err));
        if (!r)
            TD_CHECK_EQ_INT(td_kv_pin(kv, kvt_key(i), 0, 1, NULL, 0), TD_OK);
    }
    fprintf(stderr, "  (expected) %s\n", err);
    TD_CHECK_EQ_INT(r, TD_ENOSPC);
    TD_CHECK(strstr(err, "No space left on device") != NULL);
    TD_CHECK(i > 5);
    for (uint64_t k = 0; k + 1 < i; k++)   /* nothing else lost */
        get_ok(kv, k, 100000);
    /* Unpinning one makes room by eviction, inside the existing segments. */
    TD_CHECK_EQ_INT(td_kv_pin(kv, kvt_key(0), 0, 0, NULL, 0), TD_OK);
    put_ok(kv, 100, 100000);
    get_ok(kv, 100, 100000);
    td_kv_close(kv);
    kv = open_ok(&o);
    if (kv) {
        get_ok(kv, 1, 100000);
        td_kv_close(kv);
    }
    _exit(td_test_failures ? 1 : 0);
}

static void test_disk_full(void)
{
    char mnt[256];
    kvt_dir(mnt, sizeof(mnt), "mnt");
    mkdir(mnt, 0755);
    pid_t pid = fork();
    if (pid == 0)
        disk_full_child(mnt);
    int status = 0;
    waitpid(pid, &status, 0);
    kvt_cleanup(mnt);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
        TD_SKIP("disk_full: cannot mount a tmpfs here (not root?)");
    TD_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* A peer (another worker reading this store on a shared volume) opens it
 * while the owner runs, sees what was put, learns of later changes through
 * td_kv_stale, and never serves bytes the owner has since overwritten. */
static void test_peer(void)
{
    char dir[256];
    kvt_dir(dir, sizeof(dir), "s");
    td_kv_opts o = kvt_opts(dir);
    o.capacity_bytes = o.segment_bytes = 256u << 10;   /* 64 pages: room for 4 */
    o.block_bytes = 8192;
    td_kv *kv = open_ok(&o);
    if (!kv)
        return;
    const size_t len = 8 * (8192 - 128);
    for (uint64_t i = 0; i < 4; i++)
        put_ok(kv, i, len);
    td_kv_opts po = o;
    po.create = 0;
    td_kv *inspect = NULL;
    char err[512];
    po.read_only = 1;   /* an inspector waits for the owner's lock */
    TD_CHECK_EQ_INT(td_kv_open(&inspect, &po, err, sizeof(err)), TD_EBUSY);
    po.read_only = 0;
    po.peer = 1;
    td_kv *peer = open_ok(&po);
    if (!peer) {
        td_kv_close(kv);
        return;
    }
    get_ok(peer, 2, len);
    TD_CHECK(!td_kv_stale(peer));
    /* The owner evicts 0..3 to store 4..7 in the same pages. */
    for (uint64_t i = 4; i < 8; i++)
        put_ok(kv, i, len);
    TD_CHECK(td_kv_stale(peer));
    td_kv_stats st;
    td_kv_stats_get(peer, &st);
    uint64_t fails = st.checksum_failures;
    TD_CHECK_EQ_INT(get_check(peer, 1, len, err, sizeof(err)), TD_ECORRUPT);
    fprintf(stderr, "  (expected) %s\n", err);
    td_kv_stats_get(peer, &st);
    TD_CHECK_EQ_INT(st.checksum_failures, fails + 1);
    TD_CHECK_EQ_INT(get_check(peer, 1, len, err, sizeof(err)), TD_ENOENT);  /* dropped */
    TD_CHECK_EQ_INT(get_check(peer, 5, len, err, sizeof(err)), TD_ENOENT);  /* not seen yet */
    TD_CHECK_EQ_INT(td_kv_put(peer, kvt_key(9), 0, 9, "x", 1, err, sizeof(err)), TD_EINVAL);
    td_kv_close(peer);
    peer = open_ok(&po);   /* reopened: the owner's present */
    if (peer) {
        get_ok(peer, 5, len);
        TD_CHECK_EQ_INT(get_check(peer, 1, len, err, sizeof(err)), TD_ENOENT);
        td_kv_close(peer);
    }
    td_kv_close(kv);
    kvt_cleanup(dir);
}

TD_TEST_MAIN({"put_many", test_put_many}, {"peer", test_peer}, {"unprivileged", test_unprivileged},
             {"disk_full", test_disk_full})
