/* tandem bench kvstore: put and get GB/s of one large value through td_kv,
 * next to fio on the same disk with the same block size and queue depth.
 *
 *   tandem bench kvstore [--dir DIR] [--bytes N] [--block-bytes N]
 *                        [--queue-depth N] [--fio]
 *
 * The value: 3,688,172,544 bytes by default (a 1M-token V4-Flash state,
 * `tandem kv-size --config tests/data/configs/deepseek-v4-flash.config.json
 * --tokens 1M`), synthetic (state bytes do not change the cost), in a
 * scratch store under DIR (default /tmp; room for three copies), removed at
 * the end. put = td_kv_put (block copies, checksums, writes, fdatasync, log
 * record), first into segments being preallocated, then into space written
 * before (the steady state); get = td_kv_get (reads, verification, copies),
 * checked against the put by XXH3-64. --fio runs fio's io_uring engine with
 * O_DIRECT over a file of the same size in the same directory (write, then
 * read) and prints the ratios. Numbers go to docs/benchmarks.md, not to a
 * timed test. */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "bench/bench.h"
#include "kvstore/kvstore.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int rm_one(const char *p, const struct stat *s, int flag, struct FTW *f)
{
    (void)s, (void)flag, (void)f;
    return remove(p);
}

/* fio's bandwidth in GB/s for rw ("write" or "read"), -1 if it failed. */
static double fio_gbps(const char *file, const char *rw, size_t bytes, uint32_t bs,
                       uint32_t qd)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "fio --name=kv --filename='%s' --ioengine=io_uring --direct=1 --rw=%s --bs=%u "
             "--iodepth=%u --size=%zu --fallocate=native --end_fsync=1 --output-format=terse "
             "--terse-version=3 2>/dev/null", file, rw, bs, qd, bytes);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[8192] = "";
    if (!fgets(line, sizeof line, p))
        line[0] = '\0';
    if (pclose(p) != 0)
        return -1;
    /* terse v3: field 7 is the read bandwidth (KiB/s), field 48 the write's */
    int want = !strcmp(rw, "read") ? 7 : 48, field = 1;
    for (char *c = line; *c; c++)
        if (*c == ';' && ++field == want)
            return strtod(c + 1, NULL) * 1024 / 1e9;
    return -1;
}

/* A whole number in [lo, hi]: 0, else -1. */
static int number(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: tandem bench kvstore [--dir DIR] [--bytes N] [--block-bytes N] "
                    "[--queue-depth N] [--fio]\n");
    return 2;
}

int td_bench_kvstore(int argc, char **argv)
{
    const char *parent = "/tmp";
    long bytes_l = 3688172544L, block_l = 1L << 20, depth_l = 16;
    int with_fio = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--fio")) {
            with_fio = 1;
            continue;
        }
        int bad = !v;
        if (!bad && !strcmp(o, "--dir"))
            parent = v;
        else if (!bad && !strcmp(o, "--bytes"))
            bad = number(v, 1, 1L << 40, &bytes_l);
        else if (!bad && !strcmp(o, "--block-bytes"))
            bad = number(v, 8192, 64L << 20, &block_l) || block_l % 4096;
        else if (!bad && !strcmp(o, "--queue-depth"))
            bad = number(v, 1, 1024, &depth_l);
        else
            return usage();
        if (bad) {
            fprintf(stderr, "tandem bench kvstore: bad value for %s\n", o);
            return 2;
        }
        i++;
    }
    size_t bytes = (size_t)bytes_l;
    uint32_t block = (uint32_t)block_l, depth = (uint32_t)depth_l;
    char work[1024], dir[1100];
    snprintf(work, sizeof work, "%s/td-kvbench-XXXXXX", parent);
    if (!mkdtemp(work)) {
        perror("tandem bench kvstore: mkdtemp");
        return 1;
    }
    snprintf(dir, sizeof dir, "%s/store", work);
    /* Room for two copies: a replacing put keeps the old value until the
     * new one is durable. */
    uint64_t seg = 1ull << 30;
    uint64_t cap = ((2 * (uint64_t)bytes * 1.01) / seg + 2) * seg;
    td_kv_opts o = {.dir = dir, .create = 1, .fingerprint = 1, .block_bytes = block,
                    .segment_bytes = seg, .capacity_bytes = cap, .queue_depth = depth};
    char err[512];
    td_kv *kv = NULL;
    uint8_t *buf = malloc(bytes);
    int rc = 0;
    if (!buf) {
        fprintf(stderr, "tandem bench kvstore: cannot allocate %zu bytes\n", bytes);
        rc = 1;
    } else if (td_kv_open(&kv, &o, err, sizeof(err))) {
        fprintf(stderr, "tandem bench kvstore: %s\n", err);
        rc = 1;
    }
    uint64_t sum = 0;
    if (!rc) {
        uint64_t s = 88172645463325252ull;
        for (size_t i = 0; i + 8 <= bytes; i += 8) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            memcpy(buf + i, &s, 8);
        }
        sum = XXH3_64bits(buf, bytes);
    }
    td_kv_key key = {1, 2};
    double t[5] = {0};
    /* Pass 0 writes fresh segments, pass 1 (the replacement) more fresh
     * space, pass 2 the pages pass 0 wrote: the steady state. */
    for (int pass = 0; pass < 3 && !rc; pass++) {
        double t0 = now_s();
        if (td_kv_put(kv, key, 0, 1048576, buf, bytes, err, sizeof(err))) {
            fprintf(stderr, "tandem bench kvstore: put: %s\n", err);
            rc = 1;
        }
        t[pass] = now_s() - t0;
    }
    for (int pass = 0; pass < 2 && !rc; pass++) {
        memset(buf, 0, bytes);
        size_t len;
        double t0 = now_s();
        if (td_kv_get(kv, key, 0, buf, bytes, &len, err, sizeof(err))) {
            fprintf(stderr, "tandem bench kvstore: get: %s\n", err);
            rc = 1;
        }
        t[3 + pass] = now_s() - t0;
        if (!rc && (len != bytes || XXH3_64bits(buf, bytes) != sum)) {
            fprintf(stderr, "tandem bench kvstore: get returned other bytes\n");
            rc = 1;
        }
    }
    td_kv_stats st = {0};
    if (kv) {
        td_kv_stats_get(kv, &st);
        td_kv_close(kv);
    }
    free(buf);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    double fw = -1, fr = -1;
    if (!rc && with_fio) {
        char file[1100];
        snprintf(file, sizeof file, "%s/fio.dat", work);
        fio_gbps(file, "write", bytes, block, depth);  /* lays the file out */
        fw = fio_gbps(file, "write", bytes, block, depth);
        fr = fio_gbps(file, "read", bytes, block, depth);
        if (fw < 0 || fr < 0)
            fprintf(stderr, "tandem bench kvstore: fio failed (is it installed? "
                            "scripts/install-deps.sh)\n");
        unlink(file);
    }
    rmdir(work);
    if (rc)
        return rc;
    double gb = bytes / 1e9;
    printf("%zu bytes, blocks of %u, queue depth %u (registered buffers %s, fixed files %s, "
           "O_DIRECT %s)\n\n", bytes, block, depth, st.buffers_registered ? "yes" : "no",
           st.files_registered ? "yes" : "no", st.direct_io ? "yes" : "no");
    printf("| | kvstore GB/s | time |%s\n|---|---:|---:|%s\n", with_fio ? " fio GB/s | ratio |" : "",
           with_fio ? "---:|---:|" : "");
    const char *names[5] = {"put, new segments", "put, replacing", "put, space written before",
                            "get", "get, again"};
    for (int i = 0; i < 5; i++) {
        double f = i == 2 ? fw : i == 3 ? fr : -1;
        printf("| %s | %.2f | %.2f s |", names[i], gb / t[i], t[i]);
        if (with_fio && f > 0)
            printf(" %.2f | %.0f %% |", f, 100 * gb / t[i] / f);
        else if (with_fio)
            printf(" | |");
        printf("\n");
    }
    return 0;
}
