/* xfer_bench: td_xfer throughput between two processes on this host.
 *
 *   BUILD/transport/xfer/xfer_bench [-s BYTES]... [-n RUNS] [-w WARMUP]
 *                                    [-k SECTIONS] [-m host|ucx] [-M host|ucx]
 *                                    [-r] [-H] [-p]
 *
 * The parent receives, a forked child sends. Per size (default 1 MiB to
 * 1 GiB by fours) it times RUNS transfers (after WARMUP untimed ones) on
 * the sender, from td_xfer_send_open to the receiver's acknowledgement: the
 * puts, the per-section notes, the receiver's checks and the ack are all
 * inside. It prints the overall rate (bytes of the timed transfers over
 * their total time: what ucx_perftest's overall_bw means) and the median.
 *
 *   -k  sections per transfer (default 43, one per layer of a V4 state)
 *   -m  sender memory: host (ordinary, malloc: the default, what a prefill
 *       worker's state buffer is) or ucx (UCX allocates it, as perftest's)
 *   -M  receiver memory: ucx (default, a decode worker's region) or host
 *   -r  register the sender's buffer per transfer (td_xfer_send_open)
 *       instead of once (td_xfer_send_open_at on a region)
 *   -H  the sender passes each section's XXH3 (computed before timing, as
 *       a producer that hashed while writing would) instead of td_xfer
 *       hashing it: separates the sender's hashing cost
 *   -p  peer error handling (what two hosts use; with it UCX 1.13 takes tcp)
 * Transports: whatever UCX_TLS selects. A line per size:
 *   RESULT <bytes> <runs> <overall GB/s> <median GB/s>
 * Numbers go to the report (bench/run-transfer.sh), not to a timed test. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "transport/xfer/xfer.h"

typedef struct {
    size_t sizes[16];
    int nsizes, runs, warmup;
    uint32_t sections;
    int send_ucx, recv_ucx, per_transfer, sums_given, peer_errors;
} bench_opts;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void xread(int fd, void *p, size_t n)
{
    for (char *c = p; n;) {
        ssize_t r = read(fd, c, n);
        if (r <= 0)
            exit(2);
        c += r, n -= (size_t)r;
    }
}

static void xwrite(int fd, const void *p, size_t n)
{
    for (const char *c = p; n;) {
        ssize_t w = write(fd, c, n);
        if (w <= 0)
            exit(2);
        c += w, n -= (size_t)w;
    }
}

static void die(const char *who, const char *err)
{
    fprintf(stderr, "xfer_bench: %s: %s\n", who, err);
    exit(3);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static size_t max_size(const bench_opts *o)
{
    size_t m = 0;
    for (int i = 0; i < o->nsizes; i++)
        m = o->sizes[i] > m ? o->sizes[i] : m;
    return m;
}

static void sender(int rd, int wr, const bench_opts *o)
{
    char err[256];
    uint32_t alen;
    xread(rd, &alen, 4);
    uint8_t *addr = malloc(alen);
    xread(rd, addr, alen);
    td_xfer_ctx *ctx;
    td_xfer_peer *peer;
    td_xfer_opts xo = { .peer_errors = o->peer_errors };
    if (td_xfer_ctx_create(&xo, &ctx, err, sizeof err) ||
        td_xfer_connect(ctx, addr, alen, 10000, &peer, err, sizeof err))
        die("sender", err);
    size_t max = max_size(o);
    /* The state buffer: registered once (a prefill worker's), unless -r. */
    uint8_t *own = o->send_ucx ? NULL : malloc(max);
    td_xfer_region *region = NULL;
    if (!o->per_transfer && td_xfer_region_create(ctx, own, max, &region, err, sizeof err))
        die("sender", err);
    uint8_t *buf = region ? td_xfer_region_data(region) : own;
    if (!buf)
        die("sender", "-m ucx needs a region (drop -r)");
    for (size_t i = 0; i < max; i++)
        buf[i] = (uint8_t)(i * 131 + (i >> 12));
    uint64_t *sums = calloc(o->sections + 1, sizeof *sums);
    for (;;) {
        uint64_t size;
        uint32_t tlen;
        xread(rd, &size, 8);
        if (size == 0)
            break;
        xread(rd, &tlen, 4);
        uint8_t ticket[4096];
        xread(rd, ticket, tlen);
        uint64_t id;
        memcpy(&id, ticket + 8, 8);  /* the ticket's transfer id (xfer_int.h) */
        td_xfer_desc d = { .transfer_id = id, .layout_version = 1, .fingerprint = 1,
                           .tokens = 1, .total_bytes = size };
        size_t sec = (size + o->sections - 1) / o->sections;
        if (o->sums_given)
            for (size_t off = 0, k = 0; off < size; off += sec, k++)
                sums[k] = td_xfer_checksum(buf + off, off + sec > size ? size - off : sec);
        double t0 = now_s();
        td_xfer_send *s;
        td_err e = region ? td_xfer_send_open_at(peer, ticket, tlen, region, 0, size, &s, err,
                                                 sizeof err)
                          : td_xfer_send_open(peer, ticket, tlen, buf, size, &s, err,
                                              sizeof err);
        if (e)
            die("sender", err);
        for (size_t off = 0, k = 0; off < size; off += sec, k++)
            td_xfer_send_section(s, off, off + sec > size ? size - off : sec,
                                 o->sums_given ? &sums[k] : NULL);
        e = td_xfer_send_finish(s, &d, 60000, err, sizeof err);
        double t = now_s() - t0;
        td_xfer_send_close(s);
        if (e)
            die("sender", err);
        xwrite(wr, &t, sizeof t);
    }
    td_xfer_peer_close(peer);
    td_xfer_region_destroy(region);
    td_xfer_ctx_destroy(ctx);
    free(sums);
    free(own);
    free(addr);
}

static int parse(int argc, char **argv, bench_opts *o)
{
    *o = (bench_opts){ .runs = 0, .warmup = 1, .sections = 43, .recv_ucx = 1 };
    int c;
    while ((c = getopt(argc, argv, "s:n:w:k:m:M:rHp")) != -1) {
        switch (c) {
        case 's':
            if (o->nsizes < 16)
                o->sizes[o->nsizes++] = strtoull(optarg, NULL, 10);
            break;
        case 'n': o->runs = atoi(optarg); break;
        case 'w': o->warmup = atoi(optarg); break;
        case 'k': o->sections = (uint32_t)atoi(optarg); break;
        case 'm': o->send_ucx = strcmp(optarg, "ucx") == 0; break;
        case 'M': o->recv_ucx = strcmp(optarg, "ucx") == 0; break;
        case 'r': o->per_transfer = 1; break;
        case 'H': o->sums_given = 1; break;
        case 'p': o->peer_errors = 1; break;
        default: return -1;
        }
    }
    if (!o->nsizes)
        for (size_t s = 1 << 20; s <= (1u << 30); s *= 4)
            o->sizes[o->nsizes++] = s;
    for (int i = 0; i < o->nsizes; i++)
        if (!o->sizes[i])
            return -1;
    return o->sections ? 0 : -1;
}

int main(int argc, char **argv)
{
    bench_opts o;
    if (parse(argc, argv, &o)) {
        fprintf(stderr, "usage: xfer_bench [-s BYTES]... [-n RUNS] [-w WARMUP] [-k SECTIONS] "
                        "[-m host|ucx] [-M host|ucx] [-r] [-H] [-p]\n");
        return 1;
    }
    size_t max = max_size(&o);
    int a[2], b[2];
    if (pipe(a) || pipe(b))
        return 1;
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        close(a[1]), close(b[0]);
        sender(a[0], b[1], &o);
        exit(0);
    }
    close(a[0]), close(b[1]);
    char err[256];
    td_xfer_ctx *ctx;
    td_xfer_opts xo = { .peer_errors = o.peer_errors };
    if (td_xfer_ctx_create(&xo, &ctx, err, sizeof err))
        die("receiver", err);
    const void *addr;
    size_t alen;
    td_xfer_ctx_address(ctx, &addr, &alen);
    uint32_t l = (uint32_t)alen;
    xwrite(a[1], &l, 4);
    xwrite(a[1], addr, alen);
    /* One region registered up front, as a decode worker's KV arena is;
     * touched once so no page faults land in the timings. */
    uint8_t *own = o.recv_ucx ? NULL : malloc(max);
    td_xfer_region *region;
    if (td_xfer_region_create(ctx, own, max, &region, err, sizeof err))
        die("receiver", err);
    memset(td_xfer_region_data(region), 0, max);
    printf("# sender %s memory%s%s, receiver %s memory, %u sections\n",
           o.send_ucx ? "UCX" : "ordinary", o.per_transfer ? " registered per transfer" : "",
           o.sums_given ? ", sums given" : "", o.recv_ucx ? "UCX" : "ordinary", o.sections);
    printf("%12s %6s %14s %14s\n", "bytes", "runs", "overall GB/s", "median GB/s");
    uint64_t id = 1;
    for (int si = 0; si < o.nsizes; si++) {
        size_t size = o.sizes[si];
        /* About 512 MiB per size unless told: enough to steady the rate. */
        int runs = o.runs ? o.runs : (int)((512u << 20) / size);
        runs = runs < 3 ? 3 : runs > 200 ? 200 : runs;
        double *t = calloc((size_t)runs, sizeof *t), total = 0;
        for (int r = -o.warmup; r < runs; r++, id++) {
            td_xfer_desc expect = { .layout_version = 1, .fingerprint = 1 };
            td_xfer_recv *rv;
            if (td_xfer_recv_open_at(ctx, id, region, 0, size, &expect, &rv, err, sizeof err))
                die("receiver", err);
            const void *tk;
            size_t tl;
            td_xfer_recv_ticket(rv, &tk, &tl);
            uint64_t sz = size;
            uint32_t tl32 = (uint32_t)tl;
            xwrite(a[1], &sz, 8);
            xwrite(a[1], &tl32, 4);
            xwrite(a[1], tk, tl);
            if (td_xfer_recv_wait(rv, 60000, NULL, err, sizeof err))
                die("receiver", err);
            /* The sender's close may need us to progress: poll the pipe. */
            for (;;) {
                td_xfer_progress(ctx);
                fd_set fds;
                FD_ZERO(&fds);
                FD_SET(b[0], &fds);
                struct timeval tv = { 0, 100 };
                if (select(b[0] + 1, &fds, NULL, NULL, &tv) > 0)
                    break;
            }
            double tm;
            xread(b[0], &tm, sizeof tm);
            td_xfer_recv_close(rv);
            if (r >= 0) {
                t[r] = tm;
                total += tm;
            }
        }
        qsort(t, (size_t)runs, sizeof *t, cmp);
        double overall = (double)size * runs / total / 1e9, median = size / t[runs / 2] / 1e9;
        printf("%12zu %6d %14.2f %14.2f\n", size, runs, overall, median);
        printf("RESULT %zu %d %.4f %.4f\n", size, runs, overall, median);
        fflush(stdout);
        free(t);
    }
    uint64_t zero = 0;
    xwrite(a[1], &zero, 8);
    for (int i = 0; i < 2000 && waitpid(child, NULL, WNOHANG) != child; i++) {
        td_xfer_progress(ctx);
        usleep(1000);
    }
    td_xfer_region_destroy(region);
    td_xfer_ctx_destroy(ctx);
    free(own);
    return 0;
}
