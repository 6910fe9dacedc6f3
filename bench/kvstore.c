/* kvstore_bench: put and get GB/s of one large value through td_kv.
 *
 *   BUILD/kvstore/kvstore_bench DIR [bytes] [block_bytes] [queue_depth]
 *
 * Defaults: 3,688,172,544 bytes (a 1M-token V4-Flash state, `tandem kv-size`),
 * 1 MiB blocks, queue depth 16. DIR must not hold a store (it is created and
 * removed). The value is synthetic (state bytes do not change the cost); the
 * get is checked against the put by XXH3-64. Timings: put = td_kv_put (block
 * copies, checksums, writes, fdatasync, log record), first into segments
 * being preallocated, then into space written before (the steady state);
 * get = td_kv_get (reads, verification, copies). bench/kvstore.sh runs it
 * next to fio. Numbers go to docs/benchmarks.md, not to a timed test. */
#define XXH_INLINE_ALL
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "kvstore/kvstore.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: kvstore_bench DIR [bytes] [block_bytes] [queue_depth]\n");
        return 2;
    }
    size_t bytes = argc > 2 ? strtoull(argv[2], NULL, 10) : 3688172544ull;
    uint32_t block = argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 10) : 1u << 20;
    uint32_t depth = argc > 4 ? (uint32_t)strtoul(argv[4], NULL, 10) : 16;
    /* Room for two copies: a replacing put keeps the old value until the
     * new one is durable. */
    uint64_t seg = 1ull << 30;
    uint64_t cap = ((2 * (uint64_t)bytes * 1.01) / seg + 2) * seg;
    td_kv_opts o = {.dir = argv[1], .create = 1, .fingerprint = 1, .block_bytes = block,
                    .segment_bytes = seg, .capacity_bytes = cap, .queue_depth = depth};
    char err[512];
    td_kv *kv;
    if (td_kv_open(&kv, &o, err, sizeof(err))) {
        fprintf(stderr, "kvstore_bench: %s\n", err);
        return 1;
    }
    uint8_t *buf = malloc(bytes);
    if (!buf) {
        fprintf(stderr, "kvstore_bench: cannot allocate %zu bytes\n", bytes);
        return 1;
    }
    uint64_t s = 88172645463325252ull;
    for (size_t i = 0; i + 8 <= bytes; i += 8) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        memcpy(buf + i, &s, 8);
    }
    uint64_t sum = XXH3_64bits(buf, bytes);
    td_kv_key key = {1, 2};
    double t[5];
    int rc = 0;
    /* Pass 0 writes fresh segments, pass 1 (the replacement) more fresh
     * space, pass 2 the pages pass 0 wrote: the steady state. */
    for (int pass = 0; pass < 3 && !rc; pass++) {
        double t0 = now_s();
        if (td_kv_put(kv, key, 0, 1048576, buf, bytes, err, sizeof(err))) {
            fprintf(stderr, "kvstore_bench: put: %s\n", err);
            rc = 1;
        }
        t[pass] = now_s() - t0;
    }
    for (int pass = 0; pass < 2 && !rc; pass++) {
        memset(buf, 0, bytes);
        size_t len;
        double t0 = now_s();
        if (td_kv_get(kv, key, 0, buf, bytes, &len, err, sizeof(err))) {
            fprintf(stderr, "kvstore_bench: get: %s\n", err);
            rc = 1;
        }
        t[3 + pass] = now_s() - t0;
        if (!rc && (len != bytes || XXH3_64bits(buf, bytes) != sum)) {
            fprintf(stderr, "kvstore_bench: get returned other bytes\n");
            rc = 1;
        }
    }
    td_kv_stats st;
    td_kv_stats_get(kv, &st);
    td_kv_close(kv);
    if (!rc) {
        double gb = bytes / 1e9;
        printf("bytes %zu block_bytes %u queue_depth %u registered_buffers %d fixed_files %d direct_io %d\n",
               bytes, block, depth, st.buffers_registered, st.files_registered, st.direct_io);
        printf("put_first_s %.3f put_first_GBps %.2f\n", t[0], gb / t[0]);
        printf("put_s %.3f put_GBps %.2f\n", t[2], gb / t[2]);
        printf("get_s %.3f get_GBps %.2f\n", t[3], gb / t[3]);
        printf("get2_s %.3f get2_GBps %.2f\n", t[4], gb / t[4]);
    }
    free(buf);
    return rc;
}
