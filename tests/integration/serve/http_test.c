/* Unit tests of the HTTP layer (router/http_*.c) over real loopback sockets:
 * the server runs on a libuv loop in a second thread, the cases talk to it
 * with blocking sockets. The handler echoes what it parsed, so each case
 * checks what the parser made of the bytes it sent. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "router/http_internal.h"
#include "tests/td_test.h"

#define MAX_BODY 4096
#define WRITE_HIGH (32 << 10)
#define STREAM_TOTAL (8 << 20)
#define STREAM_CHUNK 8192

typedef struct {
    uv_loop_t loop;
    uv_async_t stop;
    td_http_server *srv;
    int port;
    pthread_t thread;
    /* the streaming handler */
    td_http_req *stream_req;
    size_t streamed;
    atomic_size_t max_queued;
    atomic_int drains;
} fixture;

static fixture fx;

static void stream_more(void *arg)
{
    (void)arg;
    static char chunk[STREAM_CHUNK];
    memset(chunk, 'x', sizeof chunk);
    td_http_req *r = fx.stream_req;
    /* Produce until congested, as the router does with tokens. */
    while (fx.streamed < STREAM_TOTAL && !td_http_req_congested(r)) {
        td_http_stream_write(r, chunk, sizeof chunk);
        fx.streamed += sizeof chunk;
        size_t q = r->conn ? r->conn->wq_bytes : 0;
        if (q > atomic_load(&fx.max_queued))
            atomic_store(&fx.max_queued, q);
    }
    if (fx.streamed >= STREAM_TOTAL) {
        fx.stream_req = NULL;
        td_http_stream_end(r);
    }
}

static void on_drain(void *arg)
{
    atomic_fetch_add(&fx.drains, 1);
    stream_more(arg);
}

static void on_abort(void *arg)
{
    (void)arg;
    td_http_req *r = fx.stream_req;
    fx.stream_req = NULL;
    if (r)
        td_http_stream_end(r);
}

static void on_request(void *arg, td_http_req *r)
{
    (void)arg;
    char out[8192];
    const char *why;
    int err = td_http_req_error(r, &why);
    td_http_head h = {.status = err ? err : 200, .content_type = "text/plain"};
    if (!err && !strcmp(td_http_req_path(r), "/stream")) {
        fx.streamed = 0;
        fx.stream_req = r;
        /* A small kernel buffer, so that our own queue is what fills up. */
        int sndbuf = 256 << 10;
        uv_send_buffer_size((uv_handle_t *)&r->conn->tcp, &sndbuf);
        td_http_req_set_handlers(r, on_abort, on_drain, NULL);
        td_http_stream_begin(r, &h);
        stream_more(NULL);
        return;
    }
    size_t blen;
    const char *body = td_http_req_body(r, &blen);
    const char *x = td_http_req_header(r, "x-test");
    int n = snprintf(out, sizeof out, "%s %s x=%s len=%zu body=%.*s", td_http_req_method(r),
                     td_http_req_path(r), x ? x : "-", blen, (int)(blen < 4000 ? blen : 0),
                     body);
    td_http_respond(r, &h, out, (size_t)n);
}

static void on_stop(uv_async_t *a)
{
    (void)a;
    td_http_server_drain(fx.srv, NULL, NULL);
    uv_close((uv_handle_t *)&fx.stop, NULL);
}

static void *loop_main(void *arg)
{
    (void)arg;
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    return NULL;
}

static int start(void)
{
    memset(&fx, 0, sizeof fx);
    uv_loop_init(&fx.loop);
    uv_async_init(&fx.loop, &fx.stop, on_stop);
    td_http_opts o = {.host = "127.0.0.1", .port = 0, .max_body = MAX_BODY,
                      .max_header = 2048, .write_high = WRITE_HIGH,
                      .on_request = on_request};
    char err[256];
    if (td_http_server_create(&fx.srv, &fx.loop, &o, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    fx.port = td_http_server_port(fx.srv);
    pthread_create(&fx.thread, NULL, loop_main, NULL);
    return 0;
}

static void stop(void)
{
    uv_async_send(&fx.stop);
    pthread_join(fx.thread, NULL);
    td_http_server_destroy(fx.srv);
    TD_CHECK(uv_loop_close(&fx.loop) == 0);  /* no handle left behind */
}

static int dial_rcvbuf(int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf)  /* before connect, so the window is sized by it */
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fx.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 20};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    return fd;
}

static int dial(void) { return dial_rcvbuf(0); }

static void send_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
        if (k <= 0)
            return;
        s += k;
        n -= (size_t)k;
    }
}

/* Reads until `n` responses with Content-Length are complete (or EOF);
 * returns them concatenated, bodies only, separated by '|'; *statuses gets
 * the status codes. */
static int read_responses(int fd, int n, int *statuses, char *bodies, size_t cap)
{
    static char buf[1 << 16];
    size_t len = 0;
    int got = 0;
    bodies[0] = '\0';
    while (got < n) {
        char *end = memmem(buf, len, "\r\n\r\n", 4);
        if (end) {
            size_t hl = (size_t)(end - buf) + 4;
            buf[hl - 1] = '\0';
            const char *cl = strcasestr(buf, "content-length:");
            size_t bl = cl ? strtoul(cl + 15, NULL, 10) : 0;
            if (len >= hl + bl) {
                if (!strncmp(buf, "HTTP/1.1 100", 12)) {  /* interim: skip */
                    memmove(buf, buf + hl, len - hl);
                    len -= hl;
                    continue;
                }
                statuses[got++] = atoi(buf + 9);
                size_t bn = strlen(bodies);
                snprintf(bodies + bn, cap - bn, "%s%.*s", bn ? "|" : "", (int)bl, buf + hl);
                memmove(buf, buf + hl + bl, len - hl - bl);
                len -= hl + bl;
                continue;
            }
            buf[hl - 1] = '\n';
        }
        ssize_t k = recv(fd, buf + len, sizeof buf - len, 0);
        if (k <= 0)
            break;
        len += (size_t)k;
    }
    return got;
}

static int exchange(const char *req, size_t len, int n, int *st, char *bodies, size_t cap)
{
    int fd = dial();
    if (fd < 0)
        return -1;
    send_all(fd, req, len);
    int got = read_responses(fd, n, st, bodies, cap);
    close(fd);
    return got;
}

static void test_basic_and_split(void)
{
    if (start())
        TD_SKIP("cannot listen");
    static const char req[] = "POST /a/b?q=1 HTTP/1.1\r\nHost: x\r\nX-Test: yes\r\n"
                              "Content-Length: 5\r\n\r\nhello";
    int st[1];
    char out[512];
    TD_CHECK_EQ_INT(exchange(req, sizeof req - 1, 1, st, out, sizeof out), 1);
    TD_CHECK_EQ_INT(st[0], 200);
    TD_CHECK_STR(out, "POST /a/b x=yes len=5 body=hello");
    /* The same bytes one at a time: every span split across reads. */
    int fd = dial();
    for (size_t i = 0; i < sizeof req - 1; i++) {
        send_all(fd, req + i, 1);
        usleep(200);
    }
    TD_CHECK_EQ_INT(read_responses(fd, 1, st, out, sizeof out), 1);
    TD_CHECK_STR(out, "POST /a/b x=yes len=5 body=hello");
    close(fd);
    stop();
}

static void test_chunked(void)
{
    if (start())
        TD_SKIP("cannot listen");
    static const char req[] = "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "3\r\nabc\r\n5;ext=1\r\ndefgh\r\n0\r\nTrailer: t\r\n\r\n";
    int st[1];
    char out[512];
    TD_CHECK_EQ_INT(exchange(req, sizeof req - 1, 1, st, out, sizeof out), 1);
    TD_CHECK_EQ_INT(st[0], 200);
    TD_CHECK_STR(out, "POST /c x=- len=8 body=abcdefgh");
    stop();
}

static void test_pipelining(void)
{
    if (start())
        TD_SKIP("cannot listen");
    static const char req[] = "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
                              "POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
                              "GET /3 HTTP/1.1\r\nHost: x\r\n\r\n";
    int st[3];
    char out[512];
    TD_CHECK_EQ_INT(exchange(req, sizeof req - 1, 3, st, out, sizeof out), 3);
    TD_CHECK_STR(out, "GET /1 x=- len=0 body=|POST /2 x=- len=2 body=hi|GET /3 x=- len=0 body=");
    stop();
}

static void test_limits(void)
{
    if (start())
        TD_SKIP("cannot listen");
    int st[2];
    char out[512];
    char req[8192];
    /* Declared too large: 413 before the body is read. */
    int n = snprintf(req, sizeof req, "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
                     MAX_BODY + 1);
    TD_CHECK_EQ_INT(exchange(req, (size_t)n, 1, st, out, sizeof out), 1);
    TD_CHECK_EQ_INT(st[0], 413);
    /* Chunked past the limit. */
    n = snprintf(req, sizeof req, "POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                 "\r\n\r\n%x\r\n", MAX_BODY + 10);
    memset(req + n, 'a', MAX_BODY + 10);
    n += MAX_BODY + 10;
    n += snprintf(req + n, sizeof req - (size_t)n, "\r\n0\r\n\r\n");
    TD_CHECK_EQ_INT(exchange(req, (size_t)n, 1, st, out, sizeof out), 1);
    TD_CHECK_EQ_INT(st[0], 413);
    /* Headers past max_header. */
    n = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nX-Big: ");
    memset(req + n, 'h', 3000);
    n += 3000;
    n += snprintf(req + n, sizeof req - (size_t)n, "\r\n\r\n");
    TD_CHECK_EQ_INT(exchange(req, (size_t)n, 1, st, out, sizeof out), 1);
    TD_CHECK_EQ_INT(st[0], 431);
    /* Malformed. */
    static const char bad[] = "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n";
    TD_CHECK_EQ_INT(exchange(bad, sizeof bad - 1, 1, st, out, sizeof out), 1);
    TD_CHECK_EQ_INT(st[0], 400);
    stop();
}

static void test_expect_continue_and_http10(void)
{
    if (start())
        TD_SKIP("cannot listen");
    int fd = dial();
    static const char head[] = "POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                               "Content-Length: 3\r\n\r\n";
    send_all(fd, head, sizeof head - 1);
    char buf[64] = {0};
    ssize_t k = recv(fd, buf, sizeof buf - 1, 0);
    TD_CHECK(k > 0 && !strncmp(buf, "HTTP/1.1 100 Continue\r\n\r\n", 25));
    send_all(fd, "abc", 3);
    int st[1];
    char out[256];
    TD_CHECK_EQ_INT(read_responses(fd, 1, st, out, sizeof out), 1);
    TD_CHECK_STR(out, "POST /e x=- len=3 body=abc");
    close(fd);
    /* HTTP/1.0 without keep-alive: answered, then closed by the server. */
    fd = dial();
    static const char r10[] = "GET /old HTTP/1.0\r\n\r\n";
    send_all(fd, r10, sizeof r10 - 1);
    TD_CHECK_EQ_INT(read_responses(fd, 1, st, out, sizeof out), 1);
    TD_CHECK(recv(fd, buf, sizeof buf, 0) == 0);  /* EOF */
    close(fd);
    stop();
}

static void test_stream_backpressure(void)
{
    if (start())
        TD_SKIP("cannot listen");
    int fd = dial_rcvbuf(256 << 10);
    static const char req[] = "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n";
    send_all(fd, req, sizeof req - 1);
    /* Do not read at first, so the server's queue fills; then read all.
     * The last 5 bytes seen decide the end (the terminal chunk may be split
     * across reads). */
    static char buf[1 << 16];
    char last[5] = {0};
    size_t total = 0;
    usleep(300000);
    for (;;) {
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k <= 0)
            break;
        total += (size_t)k;
        for (ssize_t i = k > 5 ? k - 5 : 0; i < k; i++) {
            memmove(last, last + 1, 4);
            last[4] = buf[i];
        }
        if (!memcmp(last, "0\r\n\r\n", 5))
            break;
    }
    close(fd);
    /* All data arrived (plus chunk framing), the producer was throttled
     * (drains happened), and the queue never grew past high + one write. */
    TD_CHECK(total > STREAM_TOTAL);
    TD_CHECK(atomic_load(&fx.drains) > 0);
    TD_CHECK(atomic_load(&fx.max_queued) <= WRITE_HIGH + STREAM_CHUNK + 64);
    stop();
}

static void test_abort_mid_stream(void)
{
    if (start())
        TD_SKIP("cannot listen");
    int fd = dial();
    static const char req[] = "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n";
    send_all(fd, req, sizeof req - 1);
    char buf[1024];
    TD_CHECK(recv(fd, buf, sizeof buf, 0) > 0);
    close(fd);
    /* The server notices, aborts the stream, and still serves others. */
    int st[1];
    char out[256];
    static const char r2[] = "GET /after HTTP/1.1\r\nHost: x\r\n\r\n";
    TD_CHECK_EQ_INT(exchange(r2, sizeof r2 - 1, 1, st, out, sizeof out), 1);
    TD_CHECK_STR(out, "GET /after x=- len=0 body=");
    stop();
}

int main(int argc, char **argv)
{
    static const td_test_case cases[] = {
        {"basic_and_split", test_basic_and_split},
        {"chunked", test_chunked},
        {"pipelining", test_pipelining},
        {"limits", test_limits},
        {"expect_continue_and_http10", test_expect_continue_and_http10},
        {"stream_backpressure", test_stream_backpressure},
        {"abort_mid_stream", test_abort_mid_stream},
        {NULL, NULL},
    };
    /* As in tandem's main: a write to a client that left must not kill us. */
    signal(SIGPIPE, SIG_IGN);
    return td_test_run(cases, argc, argv);
}
