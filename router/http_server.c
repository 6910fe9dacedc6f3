/* The listening socket, the list of connections, and the drain. */
#include <stdlib.h>
#include <string.h>

#include "router/http_internal.h"

static void check_drained(td_http_server *s)
{
    if (s->draining && !s->listening && s->nconns == 0 && s->on_drained) {
        void (*cb)(void *) = s->on_drained;
        s->on_drained = NULL;
        cb(s->drain_arg);
    }
}

void td_http_server_conn_gone(td_http_server *s, td_http_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    free(c->inbuf);
    free(c);
    check_drained(s);
}

static void on_rejected_closed(uv_handle_t *h) { free(h); }

static void on_connection(uv_stream_t *server, int status)
{
    td_http_server *s = server->data;
    if (status < 0 || s->draining)
        return;
    td_http_conn *c = calloc(1, sizeof *c);
    if (!c || uv_tcp_init(s->loop, &c->tcp)) {
        free(c);
        return;
    }
    if (uv_accept(server, (uv_stream_t *)&c->tcp) || s->nconns >= s->opts.max_conns) {
        /* Over the limit: accept only to close, so the client hears at once
         * instead of waiting in the backlog. */
        uv_close((uv_handle_t *)&c->tcp, on_rejected_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);  /* SSE events are small and latency-bound */
    /* Cap the kernel's send buffer too: autotuning lets it grow to megabytes,
     * and a stream would keep generating into it for a client that stopped
     * reading. With the cap, what a slow client costs is about twice
     * write_high in the kernel plus write_high here. */
    int sndbuf = (int)s->opts.write_high;
    uv_send_buffer_size((uv_handle_t *)&c->tcp, &sndbuf);
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    td_http_conn_start(s, c);
}

td_err td_http_server_create(td_http_server **out, uv_loop_t *loop,
                             const td_http_opts *opts, char *err, size_t errlen)
{
    td_http_server *s = calloc(1, sizeof *s);
    if (!s)
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    s->loop = loop;
    s->opts = *opts;
    if (!s->opts.max_body)
        s->opts.max_body = 1u << 20;
    if (!s->opts.max_header)
        s->opts.max_header = 16u << 10;
    if (!s->opts.write_high)
        s->opts.write_high = 64u << 10;
    if (!s->opts.write_low || s->opts.write_low > s->opts.write_high)
        s->opts.write_low = s->opts.write_high / 4;
    if (!s->opts.max_conns)
        s->opts.max_conns = 1024;
    if (!s->opts.idle_timeout_ms)
        s->opts.idle_timeout_ms = 30000;

    struct sockaddr_storage addr;
    const char *host = opts->host ? opts->host : "127.0.0.1";
    int rc = strchr(host, ':')
                 ? uv_ip6_addr(host, opts->port, (struct sockaddr_in6 *)&addr)
                 : uv_ip4_addr(host, opts->port, (struct sockaddr_in *)&addr);
    if (rc) {
        free(s);
        return td_errf(err, errlen, TD_EINVAL, "bad listen address '%s'", host);
    }
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    s->listening = true;
    rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&addr, 0);
    if (!rc)
        rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
    if (rc) {
        /* The handle must be closed through the loop before s can go. */
        uv_close((uv_handle_t *)&s->listener, NULL);
        uv_run(loop, UV_RUN_NOWAIT);
        free(s);
        return td_errf(err, errlen, TD_EIO, "cannot listen on %s:%d: %s", host,
                       opts->port, uv_strerror(rc));
    }
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    if (!uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &blen))
        s->port = bound.ss_family == AF_INET6
                      ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                      : ntohs(((struct sockaddr_in *)&bound)->sin_port);
    *out = s;
    return TD_OK;
}

int td_http_server_port(const td_http_server *s) { return s->port; }
int td_http_server_nconns(const td_http_server *s) { return s->nconns; }

static void on_listener_closed(uv_handle_t *h)
{
    td_http_server *s = h->data;
    s->listening = false;
    check_drained(s);
}

void td_http_server_drain(td_http_server *s, void (*cb)(void *arg), void *arg)
{
    s->on_drained = cb;
    s->drain_arg = arg;
    if (s->draining) {
        check_drained(s);
        return;
    }
    s->draining = true;
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    for (td_http_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        td_http_conn_drain(c);
    }
}

/* Every close goes through the connection's timer, so handlers are called
 * back from the loop, never from inside this call. */
void td_http_server_close_all(td_http_server *s)
{
    for (td_http_conn *c = s->conns; c; c = c->next)
        td_http_conn_close_soon(c);
}

void td_http_server_destroy(td_http_server *s)
{
    free(s);
}
