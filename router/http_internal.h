/* Structures shared by http_server.c (listener, connection list, drain),
 * http_conn.c (one connection: parsing, request lifecycle, writes) and
 * http_req.c (the request accessors of http.h). */
#ifndef TD_ROUTER_HTTP_INTERNAL_H
#define TD_ROUTER_HTTP_INTERNAL_H

#include <llhttp.h>

#include "router/http.h"

typedef struct td_http_conn td_http_conn;

struct td_http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    td_http_opts opts;          /* defaults filled in */
    td_http_conn *conns;        /* doubly linked, every open connection */
    int nconns;
    int port;
    bool listening;             /* listener handle open */
    bool draining;
    void (*on_drained)(void *arg);
    void *drain_arg;
};

/* A header kept as offsets into td_http_req.hbuf, both NUL-terminated. */
typedef struct {
    size_t name, value;
} http_header;

typedef enum {
    REQ_PARSING,     /* bytes still arriving */
    REQ_DISPATCHED,  /* handed to on_request; the handler owns it */
    REQ_STREAMING,   /* stream head sent */
} req_state;

struct td_http_req {
    td_http_conn *conn;         /* NULL once the connection is gone */
    td_http_server *srv;        /* outlives every request */
    req_state state;
    char method[16];
    /* Header bytes: the URL, then name\0value\0 pairs. Growable. */
    char *hbuf;
    size_t hlen, hcap;
    size_t path_len;            /* URL up to '?' */
    bool has_query;             /* a '?' ends the path: the query follows it */
    bool url_done;              /* the whole URL arrived */
    http_header *hdrs;
    int nhdrs, hdrs_cap;
    size_t cur_name, cur_value; /* offsets of the header being parsed */
    bool in_field, in_value;    /* parser is inside a header name / value */
    char *body;
    size_t body_len, body_cap;
    bool keep_alive;
    bool http10;
    bool aborted;
    bool expect_continue;
    bool responded;             /* status line written (on_response called) */
    int err_status;             /* 400/413/431: rejected while parsing */
    const char *err_text;
    void (*on_abort)(void *arg);
    void (*on_drain)(void *arg);
    void *cb_arg;
};

struct td_http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown;
    td_http_server *srv;
    td_http_conn *prev, *next;
    llhttp_t parser;
    /* Bytes read and not yet parsed: the loop reads straight into the tail,
     * so a pipelined request waits here while an earlier one is served. */
    char *inbuf;
    size_t inpos, inlen, incap;
    td_http_req *req;           /* being parsed or served; at most one */
    bool busy;                  /* req dispatched, response not finished */
    bool msg_complete;          /* parser paused at the end of a message */
    bool in_pump;
    bool reading;
    bool eof;
    bool closing;               /* uv_close called (or shutting down) */
    bool congested;
    bool write_failed;          /* a write failed: close on the next tick */
    bool lingering;             /* response sent, write side shut: discard
                                 * input until EOF or the linger timer */
    int timer_action;           /* what the timer does when it fires */
    int open_handles;           /* tcp + timer not yet closed */
    size_t wq_bytes;            /* bytes queued in uv_write, not yet written */
};

/* http_conn.c */
void td_http_conn_start(td_http_server *s, td_http_conn *c);
void td_http_conn_close(td_http_conn *c);
/* Closes on the next loop iteration (from the connection's timer). */
void td_http_conn_close_soon(td_http_conn *c);
/* Closes the connection now if it has no request in progress; otherwise it
 * closes after the current response. */
void td_http_conn_drain(td_http_conn *c);

/* http_server.c: a connection's handles are closed and its memory freed. */
void td_http_server_conn_gone(td_http_server *s, td_http_conn *c);

#endif
