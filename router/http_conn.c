/* One HTTP connection: read, parse with llhttp, hand complete requests to
 * the handler one at a time, write responses, close.
 *
 * Pipelining: the parser pauses at the end of every message, so a second
 * request that arrived in the same read stays in inbuf until the first one
 * is answered. Reading continues meanwhile (so a client that leaves
 * mid-stream is noticed at once) until inbuf is full.
 *
 * Re-entrancy: handler callbacks (on_request, on_abort) are only ever called
 * from libuv callbacks, never from inside a td_http_* call the handler made,
 * so a handler never sees itself re-entered. Work that a handler's call
 * triggers (parsing the next pipelined request, closing after a failed
 * write) is deferred to the connection's timer with a 0 ms timeout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "router/http_internal.h"

enum { TIMER_IDLE, TIMER_PUMP, TIMER_CLOSE };

#define READ_CHUNK 16384
#define LINGER_MS 2000

static void conn_pump(td_http_conn *c);
static void conn_finish(td_http_conn *c);

/* ---- small buffers ------------------------------------------------------ */

static int buf_append(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 256;
        while (nc < *len + n + 1)
            nc *= 2;
        char *nb = realloc(*buf, nc);
        if (!nb)
            return -1;
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

static td_http_req *req_new(td_http_conn *c)
{
    td_http_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->conn = c;
    r->srv = c->srv;
    /* hbuf always holds at least the URL's terminator. */
    if (buf_append(&r->hbuf, &r->hlen, &r->hcap, "", 0)) {
        free(r);
        return NULL;
    }
    return r;
}

static void req_free(td_http_req *r)
{
    free(r->hbuf);
    free(r->hdrs);
    free(r->body);
    free(r);
}

/* ---- timer: idle timeout, deferred pump, deferred close ----------------- */

static void on_timer(uv_timer_t *t)
{
    td_http_conn *c = t->data;
    switch (c->timer_action) {
    case TIMER_PUMP:
        c->timer_action = TIMER_IDLE;
        conn_pump(c);
        break;
    default:
        td_http_conn_close(c);
        break;
    }
}

/* Arms the timer, never replacing a pending close with something milder. */
static void conn_schedule(td_http_conn *c, int action, uint64_t ms)
{
    if (c->closing)
        return;
    if (action != TIMER_CLOSE && c->timer_action == TIMER_CLOSE &&
        uv_is_active((uv_handle_t *)&c->timer))
        return;
    c->timer_action = action;
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void conn_idle_timer(td_http_conn *c)
{
    if (c->busy)
        return;
    conn_schedule(c, TIMER_IDLE, c->srv->opts.idle_timeout_ms);
}

/* ---- writes ------------------------------------------------------------- */

typedef struct {
    uv_write_t w;
    td_http_conn *c;
    size_t len;
    char data[];
} http_write;

static void on_write(uv_write_t *w, int status)
{
    http_write *hw = (http_write *)w;
    td_http_conn *c = hw->c;
    c->wq_bytes -= hw->len;
    free(hw);
    if (c->closing)
        return;
    if (status < 0) {
        c->write_failed = true;
        conn_schedule(c, TIMER_CLOSE, 0);
        return;
    }
    if (c->congested && c->wq_bytes <= c->srv->opts.write_low) {
        c->congested = false;
        td_http_req *r = c->req;
        if (c->busy && r && r->on_drain)
            r->on_drain(r->cb_arg);
    }
}

/* Writes what the kernel takes now and queues a copy of the rest. Never
 * closes the connection itself: a failure is acted on at the next tick. */
static td_err conn_write(td_http_conn *c, const uv_buf_t *bufs, unsigned nbufs)
{
    if (c->closing || c->write_failed || c->lingering)
        return TD_ECLOSED;
    size_t total = 0;
    for (unsigned i = 0; i < nbufs; i++)
        total += bufs[i].len;
    size_t done = 0;
    if (c->wq_bytes == 0) {
        int n = uv_try_write((uv_stream_t *)&c->tcp, bufs, nbufs);
        if (n >= 0) {
            done = (size_t)n;
        } else if (n != UV_EAGAIN) {
            c->write_failed = true;
            conn_schedule(c, TIMER_CLOSE, 0);
            return TD_ECLOSED;
        }
        if (done == total)
            return TD_OK;
    }
    size_t rest = total - done;
    http_write *hw = malloc(sizeof *hw + rest);
    if (!hw)
        return TD_ENOMEM;
    size_t off = 0, skip = done;
    for (unsigned i = 0; i < nbufs; i++) {
        size_t l = bufs[i].len;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        memcpy(hw->data + off, bufs[i].base + skip, l - skip);
        off += l - skip;
        skip = 0;
    }
    hw->c = c;
    hw->len = rest;
    uv_buf_t b = uv_buf_init(hw->data, (unsigned)rest);
    if (uv_write(&hw->w, (uv_stream_t *)&c->tcp, &b, 1, on_write)) {
        free(hw);
        c->write_failed = true;
        conn_schedule(c, TIMER_CLOSE, 0);
        return TD_ECLOSED;
    }
    c->wq_bytes += rest;
    if (c->wq_bytes > c->srv->opts.write_high)
        c->congested = true;
    return TD_OK;
}

/* ---- llhttp callbacks --------------------------------------------------- */

static td_http_req *parser_req(llhttp_t *p)
{
    return ((td_http_conn *)p->data)->req;
}

static int fail(td_http_req *r, int status, const char *text)
{
    r->err_status = status;
    r->err_text = text;
    return -1;
}

static int header_bytes(llhttp_t *p, const char *at, size_t n)
{
    td_http_req *r = parser_req(p);
    td_http_conn *c = p->data;
    if (r->hlen + n > c->srv->opts.max_header)
        return fail(r, 431, "request headers too large");
    if (buf_append(&r->hbuf, &r->hlen, &r->hcap, at, n))
        return fail(r, 500, "out of memory");
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    /* The URL is the start of hbuf: hlen was 0 (just the terminator). */
    return header_bytes(p, at, n);
}

static int on_url_complete(llhttp_t *p)
{
    td_http_req *r = parser_req(p);
    r->path_len = strcspn(r->hbuf, "?#");
    r->has_query = r->hbuf[r->path_len] == '?';
    r->url_done = true;
    return header_bytes(p, "", 1) ? -1 : 0;  /* terminator */
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    td_http_req *r = parser_req(p);
    if (!r->in_field) {
        r->in_field = true;
        r->cur_name = r->hlen;
    }
    return header_bytes(p, at, n);
}

static int on_header_field_complete(llhttp_t *p)
{
    td_http_req *r = parser_req(p);
    if (!r->in_field)
        r->cur_name = r->hlen;
    r->in_field = false;
    return header_bytes(p, "", 1);
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    td_http_req *r = parser_req(p);
    if (!r->in_value) {
        r->in_value = true;
        r->cur_value = r->hlen;
    }
    return header_bytes(p, at, n);
}

static int on_header_value_complete(llhttp_t *p)
{
    td_http_req *r = parser_req(p);
    if (!r->in_value)
        r->cur_value = r->hlen;  /* an empty value: no on_header_value */
    r->in_value = false;
    if (header_bytes(p, "", 1))
        return -1;
    if (r->nhdrs == r->hdrs_cap) {
        int nc = r->hdrs_cap ? 2 * r->hdrs_cap : 16;
        http_header *nh = realloc(r->hdrs, sizeof *nh * (size_t)nc);
        if (!nh)
            return fail(r, 500, "out of memory");
        r->hdrs = nh;
        r->hdrs_cap = nc;
    }
    r->hdrs[r->nhdrs++] = (http_header){r->cur_name, r->cur_value};
    if (!strcasecmp(r->hbuf + r->cur_name, "expect") &&
        !strcasecmp(r->hbuf + r->cur_value, "100-continue"))
        r->expect_continue = true;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    td_http_conn *c = p->data;
    td_http_req *r = c->req;
    snprintf(r->method, sizeof r->method, "%s",
             llhttp_method_name((llhttp_method_t)llhttp_get_method(p)));
    r->http10 = p->http_major == 1 && p->http_minor == 0;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->srv->opts.max_body)
        return fail(r, 413, "request body too large");
    /* The client waits for this before sending the body; refuse-or-continue
     * was decided just above. */
    bool has_body = (p->flags & F_CHUNKED) ||
                    ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
    if (r->expect_continue && !r->http10 && has_body) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        uv_buf_t b = uv_buf_init((char *)cont, sizeof cont - 1);
        conn_write(c, &b, 1);
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    td_http_conn *c = p->data;
    td_http_req *r = c->req;
    if (r->body_len + n > c->srv->opts.max_body)
        return fail(r, 413, "request body too large");
    if (buf_append(&r->body, &r->body_len, &r->body_cap, at, n))
        return fail(r, 500, "out of memory");
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    td_http_conn *c = p->data;
    c->req->keep_alive = llhttp_should_keep_alive(p);
    c->msg_complete = true;
    return HPE_PAUSED;  /* one request at a time: see the file comment */
}

static const llhttp_settings_t parser_settings = {
    .on_url = on_url,
    .on_url_complete = on_url_complete,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- request dispatch and completion ------------------------------------ */

static void dispatch(td_http_conn *c)
{
    td_http_req *r = c->req;
    r->state = REQ_DISPATCHED;
    c->busy = true;
    if (c->srv->draining)
        r->keep_alive = false;
    if (!r->body && buf_append(&r->body, &r->body_len, &r->body_cap, "", 0) && !r->err_status) {
        r->err_status = 500;
        r->err_text = "out of memory";
    }
    if (c->timer_action != TIMER_CLOSE)
        uv_timer_stop(&c->timer);
    c->srv->opts.on_request(c->srv->opts.arg, r);
}

/* The parser refused the input: hand the request to the handler marked with
 * the status to answer, and read nothing more from this connection. */
/* A request refused before its URL was whole (a URL too long, a bad byte in
 * it) still names its API by the URL's start, and the router answers in
 * that API's shape (Anthropic's for /v1/messages...): keep what arrived, up
 * to the header limit, as the path. [from, to) is the input this parse
 * call read up to the error; the URL's part in it starts after the
 * method's space, or at `from` when an earlier read began it. */
static void keep_url_start(td_http_conn *c, const char *from, const char *to)
{
    td_http_req *r = c->req;
    if (r->url_done || !to || to < from)
        return;
    const char *s = to;
    while (s > from && s[-1] != ' ')
        s--;
    if (r->hlen == 0 && (s == from || *s != '/'))
        return;  /* no origin-form target in view (a bad method...) */
    size_t max = c->srv->opts.max_header, n = (size_t)(to - s);
    if (r->hlen >= max)
        return;
    if (n > max - r->hlen)
        n = max - r->hlen;
    if (buf_append(&r->hbuf, &r->hlen, &r->hcap, s, n))
        return;
    r->path_len = strcspn(r->hbuf, "?#");
}

static void parse_failed(td_http_conn *c, llhttp_errno_t e, const char *from)
{
    td_http_req *r = c->req;
    keep_url_start(c, from, llhttp_get_error_pos(&c->parser));
    if (!r->err_status) {
        r->err_status = 400;
        r->err_text = llhttp_get_error_reason(&c->parser);
        if (!r->err_text || !*r->err_text)
            r->err_text = llhttp_errno_name(e);
    }
    c->inpos = c->inlen;
    c->eof = true;  /* parse no further input */
    r->keep_alive = false;
    dispatch(c);
}

/* Reports the response status to the server's observer, once. */
static void req_responded(td_http_req *r, int status)
{
    const td_http_opts *o = &r->srv->opts;
    if (r->responded || r->state == REQ_PARSING)
        return;
    r->responded = true;
    if (o->on_response)
        o->on_response(o->arg, r, status);
}

/* Ends the exchange: frees r and moves the connection on. */
static void req_done(td_http_req *r)
{
    td_http_conn *c = r->conn;
    bool keep = r->keep_alive;
    req_responded(r, 499);  /* no status line: the client had left */
    req_free(r);
    if (!c)
        return;
    c->req = NULL;
    c->busy = false;
    c->congested = false;
    if (c->closing)
        return;
    if (c->write_failed) {
        conn_schedule(c, TIMER_CLOSE, 0);
    } else if (!keep || c->srv->draining || c->eof) {
        conn_finish(c);
    } else if (c->inpos < c->inlen) {
        conn_schedule(c, TIMER_PUMP, 0);
    } else {
        if (!c->reading) {
            conn_pump(c);  /* restarts reading; calls no handler */
        }
        conn_idle_timer(c);
    }
}

/* ---- reading ------------------------------------------------------------ */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    td_http_conn *c = h->data;
    if (c->lingering)
        c->inpos = c->inlen = 0;  /* discard */
    if (c->inpos == c->inlen)
        c->inpos = c->inlen = 0;
    if (c->incap - c->inlen < READ_CHUNK && c->inpos > 0) {
        memmove(c->inbuf, c->inbuf + c->inpos, c->inlen - c->inpos);
        c->inlen -= c->inpos;
        c->inpos = 0;
    }
    if (c->incap - c->inlen < READ_CHUNK) {
        char *nb = realloc(c->inbuf, c->inlen + READ_CHUNK);
        if (nb) {
            c->inbuf = nb;
            c->incap = c->inlen + READ_CHUNK;
        }
    }
    *buf = uv_buf_init(c->inbuf + c->inlen, (unsigned)(c->incap - c->inlen));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    td_http_conn *c = s->data;
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        /* EOF or reset. A request in progress means the client left
         * before its answer: abort it (the handler cancels its work). */
        td_http_conn_close(c);
        return;
    }
    if (c->lingering) {
        c->inpos = c->inlen = 0;
        return;
    }
    c->inlen += (size_t)nread;
    conn_idle_timer(c);
    conn_pump(c);
}

/* How much unparsed input may wait behind a request in progress. */
static size_t inbuf_limit(const td_http_conn *c)
{
    return c->srv->opts.max_header + 4 * READ_CHUNK;
}

static void conn_pump(td_http_conn *c)
{
    if (c->in_pump || c->closing)
        return;
    c->in_pump = true;
    while (!c->closing && !c->busy && !c->eof && c->inpos < c->inlen) {
        if (!c->req && !(c->req = req_new(c))) {
            c->write_failed = true;
            conn_schedule(c, TIMER_CLOSE, 0);
            break;
        }
        const char *start = c->inbuf + c->inpos;
        llhttp_errno_t e = llhttp_execute(&c->parser, start, c->inlen - c->inpos);
        if (e == HPE_OK) {
            c->inpos = c->inlen;
        } else if (e == HPE_PAUSED && c->msg_complete) {
            c->inpos += (size_t)(llhttp_get_error_pos(&c->parser) - start);
            c->msg_complete = false;
            llhttp_resume(&c->parser);
            dispatch(c);
        } else {
            parse_failed(c, e, start);
        }
    }
    c->in_pump = false;
    if (c->closing)
        return;
    if (c->inpos == c->inlen)
        c->inpos = c->inlen = 0;
    bool want = !c->lingering &&
                (!c->busy || c->inlen - c->inpos < inbuf_limit(c));
    if (want && !c->reading) {
        c->reading = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/* ---- closing ------------------------------------------------------------ */

static void on_handle_closed(uv_handle_t *h)
{
    td_http_conn *c = h->data;
    if (--c->open_handles == 0)
        td_http_server_conn_gone(c->srv, c);
}

void td_http_conn_close(td_http_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    td_http_req *r = c->req;
    c->req = NULL;
    if (r) {
        if (c->busy) {
            r->conn = NULL;
            r->aborted = true;
            if (r->on_abort)
                r->on_abort(r->cb_arg);
        } else {
            req_free(r);
        }
    }
    c->busy = false;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

void td_http_conn_close_soon(td_http_conn *c)
{
    c->write_failed = true;  /* no more output either */
    conn_schedule(c, TIMER_CLOSE, 0);
}

static void on_shutdown(uv_shutdown_t *sh, int status)
{
    td_http_conn *c = sh->data;
    if (c->closing)
        return;
    if (status < 0) {
        td_http_conn_close(c);
        return;
    }
    /* Lingering close: keep reading (and dropping) what the client still
     * sends, so that closing with unread data does not turn into a reset
     * that destroys the response before the client has read it. */
    c->lingering = true;
    c->inpos = c->inlen = 0;
    if (!c->reading)
        c->reading = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0;
    conn_schedule(c, TIMER_CLOSE, LINGER_MS);
}

/* After a `Connection: close` response: flush, shut the write side, linger. */
static void conn_finish(td_http_conn *c)
{
    if (c->closing || c->lingering)
        return;
    c->shutdown.data = c;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown))
        td_http_conn_close(c);
    else
        c->lingering = true;
}

void td_http_conn_drain(td_http_conn *c)
{
    if (!c->busy)
        conn_finish(c);
    /* else req_done sees srv->draining and finishes after the response. */
}

void td_http_conn_start(td_http_server *s, td_http_conn *c)
{
    c->srv = s;
    c->tcp.data = c;
    c->timer.data = c;
    uv_timer_init(s->loop, &c->timer);
    c->open_handles = 2;
    llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
    c->parser.data = c;
    conn_pump(c);  /* starts reading */
    conn_idle_timer(c);
}

/* ---- responses ---------------------------------------------------------- */

static int format_head(td_http_req *r, const td_http_head *h, char *buf, size_t cap,
                       long long content_length)
{
    td_http_conn *c = r->conn;
    if (c->srv->draining || c->eof)
        r->keep_alive = false;
    req_responded(r, h->status);
    char clen[48] = "";
    if (content_length >= 0)
        snprintf(clen, sizeof clen, "Content-Length: %lld\r\n", content_length);
    else if (!r->http10)
        snprintf(clen, sizeof clen, "Transfer-Encoding: chunked\r\n");
    char ctype[128] = "";
    if (h->content_type)
        snprintf(ctype, sizeof ctype, "Content-Type: %s\r\n", h->content_type);
    return snprintf(buf, cap, "HTTP/1.%d %d %s\r\nServer: tandem\r\n%s%s%sConnection: %s\r\n\r\n",
                    r->http10 ? 0 : 1, h->status, td_http_status_text(h->status), ctype,
                    h->extra_headers ? h->extra_headers : "", clen,
                    r->keep_alive ? "keep-alive" : "close");
}

td_err td_http_respond(td_http_req *r, const td_http_head *head,
                       const char *body, size_t len)
{
    if (!r->conn) {
        req_done(r);
        return TD_ECLOSED;
    }
    char hbuf[1024];
    int n = format_head(r, head, hbuf, sizeof hbuf, (long long)len);
    if (n < 0 || (size_t)n >= sizeof hbuf) {
        req_done(r);
        return TD_EINVAL;
    }
    uv_buf_t b[2] = {uv_buf_init(hbuf, (unsigned)n), uv_buf_init((char *)body, (unsigned)len)};
    bool head_only = !strcmp(r->method, "HEAD");
    td_err e = conn_write(r->conn, b, head_only || !len ? 1 : 2);
    req_done(r);
    return e;
}

td_err td_http_stream_begin(td_http_req *r, const td_http_head *head)
{
    if (!r->conn)
        return TD_ECLOSED;
    if (r->http10)
        r->keep_alive = false;  /* the end of the body is the end of the connection */
    char hbuf[1024];
    int n = format_head(r, head, hbuf, sizeof hbuf, -1);
    if (n < 0 || (size_t)n >= sizeof hbuf)
        return TD_EINVAL;
    r->state = REQ_STREAMING;
    uv_buf_t b = uv_buf_init(hbuf, (unsigned)n);
    return conn_write(r->conn, &b, 1);
}

td_err td_http_stream_write(td_http_req *r, const char *data, size_t len)
{
    if (!r->conn)
        return TD_ECLOSED;
    if (len == 0)
        return TD_OK;  /* an empty chunk would end the body */
    if (r->http10) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        return conn_write(r->conn, &b, 1);
    }
    char size[24];
    int n = snprintf(size, sizeof size, "%zx\r\n", len);
    uv_buf_t b[3] = {uv_buf_init(size, (unsigned)n), uv_buf_init((char *)data, (unsigned)len),
                     uv_buf_init("\r\n", 2)};
    return conn_write(r->conn, b, 3);
}

td_err td_http_stream_end(td_http_req *r)
{
    td_err e = TD_ECLOSED;
    if (r->conn) {
        e = TD_OK;
        if (!r->http10) {
            uv_buf_t b = uv_buf_init("0\r\n\r\n", 5);
            e = conn_write(r->conn, &b, 1);
        }
    }
    req_done(r);
    return e;
}

const char *td_http_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}
