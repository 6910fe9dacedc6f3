/* td_http: a small HTTP/1.1 server on libuv with llhttp parsing.
 *
 * What it does: keep-alive and pipelining (requests on one connection are
 * answered in order, one at a time), request bodies with Content-Length or
 * chunked encoding up to a size limit (413 beyond it), `Expect:
 * 100-continue`, streamed responses (chunked encoding) with a bounded write
 * queue, idle timeouts, a connection limit, and a graceful drain.
 *
 * Threading: everything runs on the loop thread that created the server.
 * The process must ignore SIGPIPE (tandem's main does): a write to a client
 * that left would otherwise kill it.
 *
 * Request lifetime: the server hands a complete request (headers and body)
 * to on_request. From then on the handler owns it until it ends the
 * exchange with td_http_respond() or td_http_stream_end(); those calls free
 * the request, so it must not be touched afterwards. If the client goes away
 * first, on_abort runs (once); the handler still ends the exchange (writes
 * then return TD_ECLOSED and cost nothing), which is what frees it.
 */
#ifndef TD_ROUTER_HTTP_H
#define TD_ROUTER_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "common/err.h"

typedef struct td_http_server td_http_server;
typedef struct td_http_req td_http_req;

typedef struct {
    const char *host;        /* address to bind, e.g. "127.0.0.1" or "::" */
    int port;                /* 0 picks a free port (see td_http_server_port) */
    /* Largest request body accepted; larger ones get 413 and the connection
     * is closed (the rest of the body is never read). 0 = 1 MiB. */
    size_t max_body;
    /* Largest request line plus headers; 431 beyond. 0 = 16 KiB. */
    size_t max_header;
    /* Write-queue watermarks per connection (bytes handed to the kernel that
     * it has not taken yet). Above `high` a stream is congested
     * (td_http_req_congested); the on_drain callback fires when it falls to
     * `low`. A producer that pauses while congested keeps the queue bounded
     * by high + one write. The socket's kernel send buffer is capped at
     * `high` as well (Linux doubles it). 0 = 64 KiB / 16 KiB. */
    size_t write_high, write_low;
    /* Connections beyond this are closed right after accept. 0 = 1024. */
    int max_conns;
    /* Close a connection that has no request in progress after this long.
     * 0 = 30 s. */
    unsigned idle_timeout_ms;
    void (*on_request)(void *arg, td_http_req *req);
    /* Optional: called once per dispatched request when its status line is
     * written, or with 499 when the exchange ends without one (the client
     * left first). For request counting; it must not end the exchange. */
    void (*on_response)(void *arg, td_http_req *req, int status);
    void *arg;
} td_http_opts;

/* Binds and listens. *out is valid until td_http_server_destroy. */
td_err td_http_server_create(td_http_server **out, uv_loop_t *loop,
                             const td_http_opts *opts, char *err, size_t errlen);
/* The port actually bound (useful with port 0). */
int td_http_server_port(const td_http_server *s);
int td_http_server_nconns(const td_http_server *s);
/* Stops accepting, closes idle connections at once and every other one after
 * its current response (which is sent with `Connection: close`). cb runs on
 * the loop once no connection is left. Calling it again only replaces cb. */
void td_http_server_drain(td_http_server *s, void (*cb)(void *arg), void *arg);
/* Closes every connection now, aborting requests in progress (their
 * handlers get on_abort). Used when a drain takes too long. */
void td_http_server_close_all(td_http_server *s);
/* Frees the server. Only after the drain callback has run. */
void td_http_server_destroy(td_http_server *s);

/* ---- the request ------------------------------------------------------- */

const char *td_http_req_method(const td_http_req *r);  /* "GET", "POST"... */
/* The path without the query string, e.g. "/v1/models" (NUL-terminated). */
const char *td_http_req_path(const td_http_req *r);
/* The first query parameter `name` (compared exactly), percent- and
 * '+'-decoded into buf (truncated to cap - 1 bytes, NUL-terminated; a
 * decoded NUL ends the value early for C callers). False when absent. */
bool td_http_req_query(const td_http_req *r, const char *name, char *buf, size_t cap);
/* A header's value (first occurrence, name compared case-insensitively), or
 * NULL. */
const char *td_http_req_header(const td_http_req *r, const char *name);
/* The body; NUL-terminated for convenience (the terminator is not counted). */
const char *td_http_req_body(const td_http_req *r, size_t *len);

/* Callbacks for a request in progress; arg must stay valid until the
 * exchange ends. on_abort: the client left (read EOF/error or a failed
 * write). on_drain: the write queue fell to the low watermark. */
void td_http_req_set_handlers(td_http_req *r, void (*on_abort)(void *arg),
                              void (*on_drain)(void *arg), void *arg);
bool td_http_req_aborted(const td_http_req *r);
/* Non-zero when the HTTP layer rejected the request while reading it: 400
 * (malformed), 413 (body too large), 431 (headers too large). The handler
 * answers with that status (in its own error format) and the connection
 * closes after the answer; method, path and body may be empty. */
int td_http_req_error(const td_http_req *r, const char **text);
/* True while the connection's write queue is above the high watermark. */
bool td_http_req_congested(const td_http_req *r);

typedef struct {
    int status;                 /* 200, 404... */
    const char *content_type;   /* NULL: no Content-Type header */
    /* Extra header lines, each ending in "\r\n" (e.g. "Allow: GET\r\n"). */
    const char *extra_headers;
} td_http_head;

/* Sends a whole response and ends the exchange (frees r). Returns TD_ECLOSED
 * if the client had already gone (r is freed all the same). */
td_err td_http_respond(td_http_req *r, const td_http_head *head,
                       const char *body, size_t len);

/* A streamed response: head, then any number of writes, then end (which
 * frees r). Uses chunked encoding for HTTP/1.1 clients; an HTTP/1.0 client
 * gets the raw bytes and the connection closes at the end. Writes never
 * block and never fail for lack of room: the caller watches
 * td_http_req_congested and stops producing until on_drain. */
td_err td_http_stream_begin(td_http_req *r, const td_http_head *head);
td_err td_http_stream_write(td_http_req *r, const char *data, size_t len);
td_err td_http_stream_end(td_http_req *r);

/* Reason phrase of a status code ("Not Found"). */
const char *td_http_status_text(int status);

#endif
