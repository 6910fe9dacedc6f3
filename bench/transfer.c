/* xfer_bench: td_xfer throughput between two processes on this host.
 *
 *   BUILD/transport/xfer/xfer_bench [max_mib] [sections]
 *
 * The parent receives, a forked child sends; for sizes 1 MiB .. max_mib
 * (default 1024) it reports the median of several transfers, timed on the
 * sender from the first put to the receiver's acknowledgement (so the
 * receiver's XXH3 pass is included), and separately with the registration
 * of the send buffer (td_xfer_send_open). Transports: whatever UCX_TLS
 * selects. The receiver registers one region up front (ordinary memory,
 * or with TD_XFER_UCX_MEMORY=1 memory UCX allocates).
 * Numbers go to the report, not to a timed test. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "transport/xfer/xfer.h"

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

/* TD_XFER_PEER_ERRORS=1: peer error handling (what two hosts would use). */
static td_xfer_opts opts(void)
{
    const char *e = getenv("TD_XFER_PEER_ERRORS");
    return (td_xfer_opts){ .peer_errors = e && atoi(e) };
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void sender(int rd, int wr, size_t max, uint32_t sections)
{
    char err[256];
    uint32_t alen;
    xread(rd, &alen, 4);
    uint8_t *addr = malloc(alen);
    xread(rd, addr, alen);
    td_xfer_ctx *ctx;
    td_xfer_peer *peer;
    td_xfer_opts o = opts();
    if (td_xfer_ctx_create(&o, &ctx, err, sizeof err) ||
        td_xfer_connect(ctx, addr, alen, 10000, &peer, err, sizeof err)) {
        fprintf(stderr, "sender: %s\n", err);
        exit(3);
    }
    uint8_t *buf = malloc(max);
    for (size_t i = 0; i < max; i++)
        buf[i] = (uint8_t)(i * 131 + (i >> 12));
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
        memcpy(&id, ticket + 8, 8);  /* the ticket's transfer id (xfer.c) */
        td_xfer_desc d = { .transfer_id = id, .layout_version = 1, .fingerprint = 1,
                           .tokens = 1, .total_bytes = size,
                           .checksum = td_xfer_checksum(buf, size) };
        double t0 = now_s();
        td_xfer_send *s;
        if (td_xfer_send_open(peer, ticket, tlen, buf, size, &s, err, sizeof err)) {
            fprintf(stderr, "sender: %s\n", err);
            exit(3);
        }
        double t1 = now_s();
        size_t sec = (size + sections - 1) / sections;
        for (size_t off = 0; off < size; off += sec)
            td_xfer_send_section(s, off, off + sec > size ? size - off : sec);
        td_err e = td_xfer_send_finish(s, &d, 60000, err, sizeof err);
        double t2 = now_s();
        td_xfer_send_close(s);
        if (e) {
            fprintf(stderr, "sender: %s\n", err);
            exit(3);
        }
        double t[2] = { t2 - t1, t2 - t0 };
        xwrite(wr, t, sizeof t);
    }
    td_xfer_peer_close(peer);
    td_xfer_ctx_destroy(ctx);
    free(buf);
    free(addr);
}

int main(int argc, char **argv)
{
    size_t max = (argc > 1 ? strtoull(argv[1], NULL, 10) : 1024) << 20;
    uint32_t sections = argc > 2 ? (uint32_t)atoi(argv[2]) : 43;
    int a[2], b[2];
    if (pipe(a) || pipe(b))
        return 1;
    pid_t child = fork();
    if (child == 0) {
        close(a[1]), close(b[0]);
        sender(a[0], b[1], max, sections);
        exit(0);
    }
    close(a[0]), close(b[1]);
    char err[256];
    td_xfer_ctx *ctx;
    td_xfer_opts o = opts();
    if (td_xfer_ctx_create(&o, &ctx, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const void *addr;
    size_t alen;
    td_xfer_ctx_address(ctx, &addr, &alen);
    uint32_t l = (uint32_t)alen;
    xwrite(a[1], &l, 4);
    xwrite(a[1], addr, alen);
    /* One region registered up front, as a decode worker's KV arena
     * would be; touched once so no page faults land in the timings. */
    const char *um = getenv("TD_XFER_UCX_MEMORY");
    uint8_t *buf = um && atoi(um) ? NULL : malloc(max);
    td_xfer_region *region;
    if (td_xfer_region_create(ctx, buf, max, &region, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    memset(td_xfer_region_data(region), 0, max);
    printf("%10s %8s %12s %12s\n", "bytes", "runs", "GB/s", "GB/s+reg");
    uint64_t id = 1;
    for (size_t size = 1 << 20; size <= max; size *= 4) {
        int runs = size <= (64u << 20) ? 20 : 5;
        double put[20], all[20];
        for (int r = 0; r < runs; r++, id++) {
            td_xfer_desc expect = { .layout_version = 1, .fingerprint = 1 };
            td_xfer_recv *rv;
            if (td_xfer_recv_open_at(ctx, id, region, 0, size, &expect, &rv, err,
                                     sizeof err)) {
                fprintf(stderr, "%s\n", err);
                return 1;
            }
            const void *t;
            size_t tl;
            td_xfer_recv_ticket(rv, &t, &tl);
            uint64_t sz = size;
            uint32_t tl32 = (uint32_t)tl;
            xwrite(a[1], &sz, 8);
            xwrite(a[1], &tl32, 4);
            xwrite(a[1], t, tl);
            if (td_xfer_recv_wait(rv, 60000, NULL, err, sizeof err)) {
                fprintf(stderr, "%s\n", err);
                return 1;
            }
            double tm[2];
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
            xread(b[0], tm, sizeof tm);
            put[r] = tm[0], all[r] = tm[1];
            td_xfer_recv_close(rv);
        }
        qsort(put, runs, sizeof *put, cmp);
        qsort(all, runs, sizeof *all, cmp);
        printf("%10zu %8d %12.2f %12.2f\n", size, runs, size / put[runs / 2] / 1e9,
               size / all[runs / 2] / 1e9);
        fflush(stdout);
    }
    uint64_t zero = 0;
    xwrite(a[1], &zero, 8);
    for (int i = 0; i < 2000 && waitpid(child, NULL, WNOHANG) != child; i++) {
        td_xfer_progress(ctx);
        usleep(1000);
    }
    td_xfer_region_destroy(region);
    td_xfer_ctx_destroy(ctx);
    free(buf);
    return 0;
}
