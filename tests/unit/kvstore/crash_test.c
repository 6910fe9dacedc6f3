/* kill -9 at random instants: a child puts, replaces, deletes and pins
 * entries in a loop and reports each acknowledged put on a pipe; the parent
 * kills it, reopens the store and checks every entry it returns.
 *
 *   strict  (no eviction): every acknowledged put must be there, byte for
 *           byte (or the one put in flight to the same slot, which may have
 *           become durable without its acknowledgement);
 *   evict   (tiny capacity): whatever is returned must be exactly a value
 *           that was put to that slot; evict_cost the same with the cost
 *           policy (its eviction table in every checkpoint).
 * No read may fail its checksum: a torn write must never be referenced.
 *
 * Usage: kvstore_crash [ITERATIONS per mode] (default 6; bench/stress runs
 * more). */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/td_test.h"
#include "tests/unit/kvstore/kvtest.h"

#define SLOTS 24
#define MAX_LEN 200000
#define DEL_BIT (1ull << 63)

static int iterations = 6;

/* Put number i goes to slot i % SLOTS with a length that varies with i. */
static size_t len_of(uint64_t i) { return (size_t)((i * 7919u) % MAX_LEN); }

/* The child: never returns. Each message is the number of a put that
 * td_kv_put or td_kv_del acknowledged (deletes with DEL_BIT set). */
static void child(const td_kv_opts *o, uint64_t first, int fd)
{
    td_kv *kv = NULL;
    char err[512];
    if (td_kv_open(&kv, o, err, sizeof(err))) {
        fprintf(stderr, "child open: %s\n", err);
        _exit(3);
    }
    uint8_t *v = malloc(MAX_LEN);
    for (uint64_t i = first;; i++) {
        uint64_t slot = i % SLOTS;
        if (i % 13 == 5) {
            td_err r = td_kv_del(kv, kvt_key(slot), 0, err, sizeof(err));
            if (r && r != TD_ENOENT)
                _exit(4);
            uint64_t msg = i | DEL_BIT;
            if (write(fd, &msg, 8) != 8)
                _exit(5);
            continue;
        }
        if (i % 11 == 3)
            td_kv_pin(kv, kvt_key(slot), 0, (int)(i & 1), NULL, 0);
        size_t len = len_of(i);
        kvt_fill(v, len, i);
        td_err r;
        if (i % 5 == 1) {
            /* A batch: the value in section 0 plus two more sections, so
             * kills also land in multi-record log writes. */
            td_kv_item it[3] = {
                {.key = kvt_key(slot), .section = 0, .tokens = i, .value = v, .len = len},
                {.key = kvt_key(slot), .section = 1, .tokens = i, .value = v, .len = len / 2},
                {.key = kvt_key(slot), .section = 2, .tokens = i, .value = v, .len = len / 3},
            };
            r = td_kv_put_many(kv, it, 3, err, sizeof(err));
        } else {
            r = td_kv_put(kv, kvt_key(slot), 0, i, v, len, err, sizeof(err));
        }
        if (r == TD_ENOSPC)
            continue;   /* evict mode with everything pinned */
        if (r) {
            fprintf(stderr, "child put: %s\n", err);
            _exit(6);
        }
        if (write(fd, &i, 8) != 8)
            _exit(5);
    }
}

/* state[slot]: last acknowledged put number, UINT64_MAX if none (or deleted). */
static void check(const td_kv_opts *o, const uint64_t *state, uint64_t inflight, int strict,
                  uint64_t *found)
{
    td_kv *kv = NULL;
    char err[512] = "";
    td_err r = td_kv_open(&kv, o, err, sizeof(err));
    if (r) {
        fprintf(stderr, "reopen after kill: %s\n", err);
        TD_CHECK_EQ_INT(r, TD_OK);
        return;
    }
    uint8_t *got = malloc(MAX_LEN), *want = malloc(MAX_LEN);
    for (uint64_t slot = 0; slot < SLOTS; slot++) {
        size_t n = 0;
        r = td_kv_get(kv, kvt_key(slot), 0, got, MAX_LEN, &n, err, sizeof(err));
        int inflight_here = inflight % SLOTS == slot;
        if (r == TD_ENOENT) {
            /* Absent is fine unless an acknowledged put is missing (and the
             * put in flight was not a delete of this slot). */
            if (strict && state[slot] != UINT64_MAX && !inflight_here) {
                fprintf(stderr, "slot %llu: acknowledged put %llu lost\n",
                        (unsigned long long)slot, (unsigned long long)state[slot]);
                TD_CHECK(0);
            }
            continue;
        }
        if (r) {
            fprintf(stderr, "slot %llu: %s: %s\n", (unsigned long long)slot, td_strerror(r), err);
            TD_CHECK_EQ_INT(r, TD_OK);
            continue;
        }
        td_kv_entry_info info;
        TD_CHECK_EQ_INT(td_kv_stat_entry(kv, kvt_key(slot), 0, &info), TD_OK);
        uint64_t id = info.tokens;   /* the put number, checked by content below */
        int allowed = id % SLOTS == slot &&
                      (strict ? id == state[slot] || (inflight_here && id == inflight) : 1);
        kvt_fill(want, len_of(id), id);
        if (!allowed || n != len_of(id) || memcmp(got, want, n) != 0) {
            fprintf(stderr, "slot %llu: served put %llu (%zu bytes), acknowledged %llu, in flight %llu\n",
                    (unsigned long long)slot, (unsigned long long)id, n,
                    (unsigned long long)state[slot], (unsigned long long)inflight);
            TD_CHECK(0);
        }
        (*found)++;
    }
    td_kv_stats st;
    td_kv_stats_get(kv, &st);
    TD_CHECK_EQ_INT(st.checksum_failures, 0);
    TD_CHECK_EQ_INT(st.dropped_records, 0);
    free(got);
    free(want);
    td_kv_close(kv);
}

static void run_mode(int strict, td_kv_evict policy)
{
    char dir[256];
    const char *name = strict ? "strict" : policy == TD_KV_EVICT_COST ? "evict_cost" : "evict";
    kvt_dir(dir, sizeof(dir), name);
    td_kv_opts o = kvt_opts(dir);
    o.eviction = policy;
    o.checkpoint_every = 7;   /* kills land in checkpoints too */
    if (!strict)
        o.capacity_bytes = o.segment_bytes = 1u << 20;   /* ~10 values fit */
    else
        o.capacity_bytes = 16u << 20;
    uint64_t state[SLOTS];
    for (int s = 0; s < SLOTS; s++)
        state[s] = UINT64_MAX;
    uint64_t next = 0, found = 0, acked_total = 0;
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    fprintf(stderr, "  %s: seed %u\n", name, seed);
    srand(seed);
    for (int it = 0; it < iterations; it++) {
        int p[2];
        if (pipe(p) != 0) {
            TD_CHECK(0);
            return;
        }
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            child(&o, next, p[1]);
        }
        close(p[1]);
        /* 1-150 ms: the first instants include open and recovery. */
        struct timespec ts = {0, (long)(1 + rand() % 150) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
            fprintf(stderr, "child exited on its own (status %d)\n", status);
            TD_CHECK(0);
        }
        uint64_t msg, last = next == 0 ? UINT64_MAX : next - 1;
        while (read(p[0], &msg, 8) == 8) {
            last = msg & ~DEL_BIT;
            state[last % SLOTS] = msg & DEL_BIT ? UINT64_MAX : last;
            acked_total++;
        }
        close(p[0]);
        uint64_t inflight = last == UINT64_MAX ? 0 : last + 1;
        check(&o, state, inflight, strict, &found);
        /* The in-flight op may have landed: resolve it by what is there now
         * (the next child starts after it). */
        td_kv *kv = NULL;
        o.read_only = 1;
        if (!td_kv_open(&kv, &o, NULL, 0)) {
            td_kv_entry_info info;
            uint64_t slot = inflight % SLOTS;
            if (td_kv_stat_entry(kv, kvt_key(slot), 0, &info) == TD_OK)
                state[slot] = info.tokens;
            else
                state[slot] = UINT64_MAX;
            td_kv_close(kv);
        }
        o.read_only = 0;
        next = inflight + 1;
    }
    fprintf(stderr, "  %s: %d kills, %llu acknowledged ops, %llu entries checked\n",
            name, iterations, (unsigned long long)acked_total,
            (unsigned long long)found);
    kvt_cleanup(dir);
}

static void test_strict(void) { run_mode(1, TD_KV_EVICT_LRU); }
static void test_evict(void) { run_mode(0, TD_KV_EVICT_LRU); }
static void test_evict_cost(void) { run_mode(0, TD_KV_EVICT_COST); }

int main(int argc, char **argv)
{
    if (argc > 1 && atoi(argv[1]) > 0) {
        iterations = atoi(argv[1]);
        argc--;
        argv++;
    }
    static const td_test_case cases[] = {{"strict", test_strict}, {"evict", test_evict},
                                         {"evict_cost", test_evict_cost}, {NULL, NULL}};
    return td_test_run(cases, argc, argv);
}
