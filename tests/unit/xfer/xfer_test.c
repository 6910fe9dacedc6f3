/* td_xfer between two real processes on loopback: the parent is the
 * receiver (decode), a forked child the sender (prefill). They share only a
 * pair of pipes that stand for the control plane: the parent publishes its
 * worker address and, per transfer, a command plus its ticket; the child
 * answers with the td_err its td_xfer_send_finish returned.
 *
 * UCX is initialised after the fork in each process (a UCX context must
 * never cross a fork). meson runs this file twice: with UCX_TLS=tcp (two
 * hosts) and with UCX's default transports (shared memory on one host). */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <xxhash.h>

#include "tests/td_test.h"
#include "transport/xfer/xfer.h"

enum { CMD_OK, CMD_BAD_SUM, CMD_BAD_LEN, CMD_BAD_FP, CMD_NO_COMPLETE, CMD_GAP, CMD_QUIT };
/* command.flags: where the sender's bytes live. */
enum { FROM_REGION = 1,      /* a registered region, reused across transfers */
       REGION_UCX = 2 };     /* ... that UCX allocated */

#define FP 0x1234abcd5678ef00ull
#define LAYOUT 1

typedef struct {
    uint32_t cmd, sections;
    uint64_t size, seed, tokens;
    uint32_t ticket_len, flags;
} command;

/* Forcing TCP stands for two hosts, where surviving a dead peer matters;
 * on one host the default keeps shared memory (see td_xfer_opts). */
static td_xfer_opts opts(void)
{
    const char *tls = getenv("UCX_TLS");
    return (td_xfer_opts){ .peer_errors = tls && strcmp(tls, "tcp") == 0 };
}

static void fill(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(p + i, &x, 8);
    }
    for (; i < n; i++)
        p[i] = (uint8_t)(i * 31 + seed);
}

static int write_all(int fd, const void *p, size_t n)
{
    for (const char *c = p; n;) {
        ssize_t w = write(fd, c, n);
        if (w <= 0)
            return -1;
        c += w, n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *p, size_t n)
{
    for (char *c = p; n;) {
        ssize_t r = read(fd, c, n);
        if (r <= 0)
            return -1;
        c += r, n -= (size_t)r;
    }
    return 0;
}

/* ---- the sender process ---- */

static int sender_main(int rd, int wr)
{
    char err[256];
    uint32_t alen;
    if (read_all(rd, &alen, 4))
        return 2;
    uint8_t *addr = malloc(alen);
    if (read_all(rd, addr, alen))
        return 2;
    td_xfer_ctx *ctx;
    td_xfer_peer *peer = NULL;
    td_xfer_opts o = opts();
    if (td_xfer_ctx_create(&o, &ctx, err, sizeof err)) {
        fprintf(stderr, "sender: %s\n", err);
        return 3;
    }
    /* The receiver progresses while it waits for our first command. */
    if (td_xfer_connect(ctx, addr, alen, 10000, &peer, err, sizeof err)) {
        fprintf(stderr, "sender: %s\n", err);
        return 3;
    }
    /* Sends from a region start at this offset in it, so a wrong base
     * would show as wrong bytes. */
    enum { REGION_OFF = 8192 };
    const size_t region_size = REGION_OFF + (64u << 20);
    td_xfer_region *region = NULL;
    uint8_t *region_mem = NULL;  /* ours when the region is ordinary memory */
    for (;;) {
        command c;
        if (read_all(rd, &c, sizeof c) || c.cmd == CMD_QUIT)
            break;
        uint8_t *ticket = malloc(c.ticket_len);
        read_all(rd, ticket, c.ticket_len);
        uint8_t *buf = NULL, *own = NULL;
        td_xfer_send *s = NULL;
        int32_t rc;
        if (c.flags & FROM_REGION) {
            /* One region for every transfer of this connection (the
             * first command's memory type), as a prefill worker's state
             * buffer would be. */
            if (!region) {
                region_mem = c.flags & REGION_UCX ? NULL : malloc(region_size);
                if (td_xfer_region_create(ctx, region_mem, region_size, &region, err,
                                          sizeof err)) {
                    fprintf(stderr, "sender: %s\n", err);
                    return 3;
                }
            }
            buf = (uint8_t *)td_xfer_region_data(region) + REGION_OFF;
            fill(buf, c.size, c.seed);
            rc = td_xfer_send_open_at(peer, ticket, c.ticket_len, region, REGION_OFF, c.size,
                                      &s, err, sizeof err);
        } else {
            buf = own = malloc(c.size);
            fill(buf, c.size, c.seed);
            rc = td_xfer_send_open(peer, ticket, c.ticket_len, buf, c.size, &s, err,
                                   sizeof err);
        }
        if (rc == TD_OK) {
            /* Sections in reverse order: nothing may depend on ordering. */
            size_t sec = (c.size + c.sections - 1) / c.sections;
            for (size_t i = c.sections; i-- > 0 && rc == TD_OK;) {
                size_t off = i * sec, len = off + sec > c.size ? c.size - off : sec;
                if (off >= c.size || (c.cmd == CMD_GAP && i == c.sections / 2))
                    continue;
                /* A wrong sum stands for bytes corrupted on the way. */
                uint64_t bad = td_xfer_checksum(buf + off, len) ^ 1;
                rc = td_xfer_send_section(s, off, len, c.cmd == CMD_BAD_SUM && i == 1 ? &bad
                                                                                      : NULL);
            }
        }
        if (rc == TD_OK && c.cmd != CMD_NO_COMPLETE) {
            td_xfer_desc d = {
                .transfer_id = 0, .layout_version = LAYOUT, .fingerprint = FP,
                .tokens = c.tokens, .total_bytes = c.size,
            };
            d.transfer_id = c.seed;
            if (c.cmd == CMD_BAD_LEN)
                d.total_bytes -= 1;
            if (c.cmd == CMD_BAD_FP)
                d.fingerprint ^= 0x100;
            rc = td_xfer_send_finish(s, &d, 20000, err, sizeof err);
            if (rc)
                fprintf(stderr, "sender (expected for bad cases): %s\n", err);
        }
        if (s)
            td_xfer_send_close(s);
        free(own);
        free(ticket);
        write_all(wr, &rc, 4);
    }
    td_xfer_region_destroy(region);
    free(region_mem);
    td_xfer_peer_close(peer);
    td_xfer_ctx_destroy(ctx);
    free(addr);
    return 0;
}

/* ---- the receiver (this process) ---- */

static td_xfer_ctx *rctx;
static int to_child = -1, from_child = -1;
static pid_t child;

static int start(void)
{
    int a[2], b[2];
    if (pipe(a) || pipe(b))
        return -1;
    fflush(stderr);
    child = fork();
    if (child == 0) {
        close(a[1]), close(b[0]);
        /* exit, not _exit: under ASan the sender is leak-checked too. */
        exit(sender_main(a[0], b[1]));
    }
    close(a[0]), close(b[1]);
    to_child = a[1], from_child = b[0];
    char err[256];
    td_xfer_opts o = opts();
    if (td_xfer_ctx_create(&o, &rctx, err, sizeof err)) {
        fprintf(stderr, "receiver: %s\n", err);
        return -1;
    }
    const void *addr;
    size_t alen;
    td_xfer_ctx_address(rctx, &addr, &alen);
    uint32_t l = (uint32_t)alen;
    return write_all(to_child, &l, 4) || write_all(to_child, addr, alen) ? -1 : 0;
}

static void stop(void)
{
    command q = { .cmd = CMD_QUIT };
    write_all(to_child, &q, sizeof q);
    /* The sender closes its endpoint; keep progressing so it can. */
    int status = 0;
    for (int i = 0; i < 5000; i++) {
        td_xfer_progress(rctx);
        if (waitpid(child, &status, WNOHANG) == child)
            break;
        usleep(1000);
        if (i == 4999) {
            kill(child, SIGKILL);
            waitpid(child, &status, 0);
        }
    }
    TD_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    td_xfer_ctx_destroy(rctx);
    close(to_child), close(from_child);
}

/* Runs one transfer; returns the receiver's result, *sender_rc the sender's. */
static int alloc;
static td_xfer_region *region;  /* when set, receive into it at region_off */
static size_t region_off;
static uint32_t send_flags;     /* command.flags for the sender */
static char last_err[256];      /* the receiver's message of the last transfer */

static td_err transfer(uint32_t cmd, size_t size, uint32_t sections, uint64_t seed,
                       int timeout_ms, uint8_t *buf, int32_t *sender_rc)
{
    char err[256];
    td_xfer_desc expect = { .layout_version = LAYOUT, .fingerprint = FP,
                            .tokens = size / 4, .total_bytes = size };
    td_xfer_recv *r;
    /* alloc: UCX allocates the receive buffer, copied to buf at the end. */
    td_err e = region ? td_xfer_recv_open_at(rctx, seed, region, region_off, size, &expect,
                                             &r, err, sizeof err)
                      : td_xfer_recv_open(rctx, seed, alloc ? NULL : buf, size, &expect, &r,
                                          err, sizeof err);
    TD_CHECK_EQ_INT(e, TD_OK);
    if (e)
        return e;
    const void *ticket;
    size_t tlen;
    td_xfer_recv_ticket(r, &ticket, &tlen);
    command c = { .cmd = cmd, .sections = sections, .size = size, .seed = seed,
                  .tokens = size / 4, .ticket_len = (uint32_t)tlen, .flags = send_flags };
    write_all(to_child, &c, sizeof c);
    write_all(to_child, ticket, tlen);
    td_xfer_desc got;
    err[0] = '\0';
    e = td_xfer_recv_wait(r, timeout_ms, &got, err, sizeof err);
    snprintf(last_err, sizeof last_err, "%s", e ? err : "");
    if (e)
        fprintf(stderr, "receiver (%s): %s\n", cmd == CMD_OK ? "UNEXPECTED" : "expected", err);
    else
        TD_CHECK(got.total_bytes == size && got.tokens == size / 4);
    /* The sender's verdict comes after our ack (or its own timeout); keep
     * progressing so its last puts and close can complete. */
    for (;;) {
        td_xfer_progress(rctx);
        fd_set fds;
        FD_ZERO(&fds);
        FD_SET(from_child, &fds);
        struct timeval tv = { 0, 1000 };
        if (select(from_child + 1, &fds, NULL, NULL, &tv) > 0)
            break;
    }
    TD_CHECK_EQ_INT(read_all(from_child, sender_rc, 4), 0);
    if (alloc || region)
        memcpy(buf, td_xfer_recv_data(r), size);
    td_xfer_recv_close(r);
    return e;
}

static void test_sizes(void)
{
    TD_CHECK_EQ_INT(start(), 0);
    static const struct { size_t size; uint32_t sections; } cases[] = {
        { 1024, 4 }, { 1 << 20, 16 }, { 64u << 20, 43 },
        /* Small sections share flushes and note AMs, and their records
         * span three blocks of 64 on the sender. */
        { 3u << 20, 150 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t n = cases[i].size;
        uint8_t *buf = calloc(1, n), *want = malloc(n);
        fill(want, n, 100 + i);
        int32_t src = -1;
        TD_CHECK_EQ_INT(transfer(CMD_OK, n, cases[i].sections, 100 + i, 30000, buf, &src), TD_OK);
        TD_CHECK_EQ_INT(src, TD_OK);
        TD_CHECK(memcmp(buf, want, n) == 0);
        free(buf);
        free(want);
    }
    stop();
}

/* The same into memory UCX allocated (shared memory on one host). */
static void test_sizes_ucx_memory(void)
{
    alloc = 1;
    test_sizes();
    alloc = 0;
}

/* A region registered once (UCX memory), transfers at several offsets. */
static void test_region(void)
{
    TD_CHECK_EQ_INT(start(), 0);
    char err[256];
    size_t n = 1 << 20;
    TD_CHECK_EQ_INT(td_xfer_region_create(rctx, NULL, 4 * n, &region, err, sizeof err), TD_OK);
    uint8_t *buf = malloc(n), *want = malloc(n);
    for (int i = 0; i < 4; i++) {
        region_off = (size_t)(3 - i) * n;
        int32_t src = -1;
        TD_CHECK_EQ_INT(transfer(CMD_OK, n, 8, 400 + i, 30000, buf, &src), TD_OK);
        TD_CHECK_EQ_INT(src, TD_OK);
        fill(want, n, 400 + i);
        TD_CHECK(memcmp(buf, want, n) == 0);
        TD_CHECK(memcmp((uint8_t *)td_xfer_region_data(region) + region_off, want, n) == 0);
    }
    td_xfer_recv *r;
    td_xfer_desc expect = { .layout_version = LAYOUT, .fingerprint = FP };
    TD_CHECK_EQ_INT(td_xfer_recv_open_at(rctx, 9, region, 3 * n + 1, n, &expect, &r, err,
                                         sizeof err), TD_ERANGE);
    td_xfer_region_destroy(region);
    region = NULL;
    free(buf);
    free(want);
    stop();
}

/* The sender puts from a region registered once (ordinary memory, then
 * memory UCX allocated), transfer after transfer. */
static void sender_region(uint32_t flags)
{
    TD_CHECK_EQ_INT(start(), 0);
    send_flags = flags;
    static const size_t sizes[] = { 4096, 1 << 20, 3u << 20, 1 << 20 };
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n = sizes[i];
        uint8_t *buf = calloc(1, n), *want = malloc(n);
        int32_t src = -1;
        TD_CHECK_EQ_INT(transfer(CMD_OK, n, 5, 500 + i, 30000, buf, &src), TD_OK);
        TD_CHECK_EQ_INT(src, TD_OK);
        fill(want, n, 500 + i);
        TD_CHECK(memcmp(buf, want, n) == 0);
        free(buf);
        free(want);
    }
    send_flags = 0;
    stop();
}

static void test_sender_region(void) { sender_region(FROM_REGION); }
static void test_sender_region_ucx_memory(void) { sender_region(FROM_REGION | REGION_UCX); }

static void test_bad_descriptors(void)
{
    TD_CHECK_EQ_INT(start(), 0);
    size_t n = 256 << 10;
    uint8_t *buf = malloc(n);
    int32_t src;
    TD_CHECK_EQ_INT(transfer(CMD_BAD_SUM, n, 8, 200, 30000, buf, &src), TD_ECORRUPT);
    TD_CHECK_EQ_INT(src, TD_ECORRUPT);  /* the sender hears about it */
    /* The refusal names the section: the second by offset, the sender
     * puts in reverse, so the seventh put (index 6). */
    TD_CHECK(strstr(last_err, "section 6 [32768, +32768)") != NULL);
    /* A section never put: every other one checks out, the table does not
     * cover the state. */
    TD_CHECK_EQ_INT(transfer(CMD_GAP, n, 8, 204, 30000, buf, &src), TD_ECORRUPT);
    TD_CHECK_EQ_INT(src, TD_ECORRUPT);
    TD_CHECK(strstr(last_err, "never arrived") != NULL);
    TD_CHECK_EQ_INT(transfer(CMD_BAD_LEN, n, 8, 201, 30000, buf, &src), TD_ECORRUPT);
    TD_CHECK_EQ_INT(src, TD_ECORRUPT);
    TD_CHECK_EQ_INT(transfer(CMD_BAD_FP, n, 8, 202, 30000, buf, &src), TD_EFORMAT);
    TD_CHECK_EQ_INT(src, TD_EFORMAT);
    /* A refused transfer leaves the connection usable. */
    TD_CHECK_EQ_INT(transfer(CMD_OK, n, 8, 203, 30000, buf, &src), TD_OK);
    TD_CHECK_EQ_INT(src, TD_OK);
    free(buf);
    stop();
}

/* td_xfer hashes with whichever XXH3 build this CPU runs best (an AVX2
 * one where it can): it must agree with the packaged library everywhere,
 * or two hosts with different CPUs would refuse each other's states. */
static void test_checksum(void)
{
    size_t n = (1 << 20) + 77;
    uint8_t *buf = malloc(n);
    fill(buf, n, 7);
    static const size_t lens[] = { 0, 1, 3, 16, 17, 128, 129, 240, 241, 1024, 4096, 65537 };
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++)
        TD_CHECK(td_xfer_checksum(buf + i, lens[i]) == XXH3_64bits(buf + i, lens[i]));
    TD_CHECK(td_xfer_checksum(buf, n) == XXH3_64bits(buf, n));
    free(buf);
}

static void test_timeouts(void)
{
    /* Nobody sends at all. */
    char err[256];
    td_xfer_ctx *ctx;
    TD_CHECK_EQ_INT(td_xfer_ctx_create(NULL, &ctx, err, sizeof err), TD_OK);
    uint8_t small[64];
    td_xfer_desc expect = { .layout_version = LAYOUT, .fingerprint = FP };
    td_xfer_recv *r;
    TD_CHECK_EQ_INT(td_xfer_recv_open(ctx, 1, small, sizeof small, &expect, &r, err, sizeof err),
                    TD_OK);
    TD_CHECK_EQ_INT(td_xfer_recv_wait(r, 100, NULL, err, sizeof err), TD_ETIMEDOUT);
    td_xfer_recv_close(r);
    td_xfer_ctx_destroy(ctx);

    /* The sender puts every section but never sends the completion. */
    TD_CHECK_EQ_INT(start(), 0);
    size_t n = 1 << 20;
    uint8_t *buf = malloc(n);
    int32_t src = -1;
    TD_CHECK_EQ_INT(transfer(CMD_NO_COMPLETE, n, 4, 300, 300, buf, &src), TD_ETIMEDOUT);
    TD_CHECK_EQ_INT(src, TD_OK);
    free(buf);
    stop();
}

int main(int argc, char **argv)
{
    static const td_test_case cases[] = {
        { "sizes", test_sizes },
        { "sizes_ucx_memory", test_sizes_ucx_memory },
        { "region", test_region },
        { "sender_region", test_sender_region },
        { "sender_region_ucx_memory", test_sender_region_ucx_memory },
        { "bad_descriptors", test_bad_descriptors },
        { "timeouts", test_timeouts },
        { "checksum", test_checksum },
        { NULL, NULL },
    };
    return td_test_run(cases, argc, argv);
}
