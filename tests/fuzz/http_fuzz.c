/* libFuzzer target for the HTTP request parser (router/http_conn.c).
 *
 * Each input is the byte stream a client sends on one connection. The
 * connection is real (a libuv stream over one end of a socketpair), so the
 * whole path runs: reads into inbuf, llhttp callbacks, header/body limits,
 * pipelining, dispatch, responses, EOF, close. The handler answers every
 * request at once, or streams a little for paths starting with /s.
 *
 * Build (not wired into meson yet), from the repository root:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. \
 *     -isystem /usr/share/include/llhttp tests/fuzz/http_fuzz.c \
 *     router/http_conn.c router/http_server.c common/err.c \
 *     /usr/share/llhttp/llhttp.c /usr/share/llhttp/api.c /usr/share/llhttp/http.c \
 *     -luv -o http_fuzz
 *   ./http_fuzz -max_len=65536
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "router/http_internal.h"

static void on_request(void *arg, td_http_req *r)
{
    (void)arg;
    const char *why;
    size_t blen;
    int err = td_http_req_error(r, &why);
    const char *body = td_http_req_body(r, &blen);
    const char *path = td_http_req_path(r);
    (void)td_http_req_header(r, "content-type");
    (void)td_http_req_method(r);
    char q[8];
    if (td_http_req_query(r, "a", q, sizeof q) && strlen(q) >= sizeof q)
        abort();
    td_http_head h = {.status = err ? err : 200, .content_type = "text/plain"};
    if (!err && path[0] == '/' && path[1] == 's') {
        td_http_stream_begin(r, &h);
        td_http_stream_write(r, body, blen);
        td_http_stream_write(r, path, strlen(path));
        td_http_stream_end(r);
        return;
    }
    td_http_respond(r, &h, body, blen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)  /* more would block the single-threaded writer below */
        return 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
        return 0;
    uv_loop_t loop;
    uv_loop_init(&loop);
    td_http_server srv;
    memset(&srv, 0, sizeof srv);
    srv.loop = &loop;
    srv.opts = (td_http_opts){.max_body = 4096, .max_header = 2048, .write_high = 1024,
                              .write_low = 256, .max_conns = 1, .idle_timeout_ms = 1000,
                              .on_request = on_request};
    td_http_conn *c = calloc(1, sizeof *c);
    uv_tcp_init(&loop, &c->tcp);
    if (uv_tcp_open(&c->tcp, sv[0])) {
        close(sv[0]);
        free(c);
        close(sv[1]);
        uv_loop_close(&loop);
        return 0;
    }
    srv.conns = c;
    srv.nconns = 1;
    td_http_conn_start(&srv, c);

    /* The client: everything, then EOF. Responses pile up in the socket
     * buffer; a reader drains them so the server never blocks. */
    size_t off = 0;
    while (off < size) {
        ssize_t k = write(sv[1], data + off, size - off);
        if (k <= 0)
            break;
        off += (size_t)k;
    }
    shutdown(sv[1], SHUT_WR);
    char sink[65536];
    while (srv.nconns > 0) {
        uv_run(&loop, UV_RUN_NOWAIT);
        while (recv(sv[1], sink, sizeof sink, MSG_DONTWAIT) > 0) {
        }
    }
    close(sv[1]);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return 0;
}
