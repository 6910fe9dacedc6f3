/* td_wk: what every worker process does for the router, whatever its role:
 * listen for control messages, register (again every few seconds, so a
 * restarted router learns of it), send heartbeats with its load, and send
 * results back. Roles (prefill/, decode/) plug in a message handler.
 *
 * Everything runs on one libuv loop thread; messages from nng's threads
 * arrive there through a mailbox. */
#ifndef TD_WORKER_WORKER_H
#define TD_WORKER_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/err.h"
#include "common/prom.h"
#include "proto/ctl.h"
#include "router/engine.h"

typedef struct td_wk td_wk;

typedef struct td_wk_opts {
    const char *worker_id;       /* NULL: "<role>-<pid>" */
    Tandem__Ctl__Role role;
    const char *router_url;      /* the router's control listener */
    const char *listen_url;      /* ours; NULL: tcp://127.0.0.1:0 */
    int heartbeat_ms;            /* 0: 200 */
    uint64_t fingerprint;        /* td_v4_layout_fingerprint */
    uint32_t layout_version;
    uint32_t max_batch;
    uint64_t max_context;
    uint64_t kv_capacity_bytes;
    const void *ucx_address;     /* borrowed for the worker's life */
    size_t ucx_address_len;
    /* Loop thread; owns msg (td_ctl_free). */
    void (*on_msg)(void *arg, td_ctl_msg *msg);
    /* Loop thread; fills running, waiting, kv_free_bytes. */
    void (*load)(void *arg, Tandem__Ctl__Heartbeat *hb);
    /* GET /metrics on metrics_host:metrics_port (port 0: a free one, -1:
     * none): the role appends its families (common/prom.h); the worker adds
     * tandem_worker_info and tandem_process_start_time_seconds. */
    const char *metrics_host;    /* NULL: 127.0.0.1 */
    int metrics_port;
    void (*metrics)(void *arg, td_prom_buf *b);
    void *arg;
} td_wk_opts;

td_err td_wk_create(td_wk **out, uv_loop_t *loop, const td_wk_opts *opts, char *err,
                    size_t errlen);
const char *td_wk_id(const td_wk *w);
/* The /metrics port (0: none). */
int td_wk_metrics_port(const td_wk *w);
/* Sends msg (borrowed) to the router; a failure is logged and returned. */
td_err td_wk_send(td_wk *w, td_ctl_msg *msg);
/* Sends KvEvents for one prefix (its block chain, k hashes; stored, or
 * removed), or, until a registration has gone out, holds them and sends
 * them right behind it: the router files blocks under the registration. */
td_err td_wk_send_kv(td_wk *w, bool stored, const uint64_t *chain, size_t k);
/* Sets the draining flag reported in heartbeats. */
void td_wk_set_draining(td_wk *w, bool draining);
/* Drain: report draining at once (the router stops placing work here) and
 * call cb once idle(arg) says nothing is in flight (checked every 20 ms). */
void td_wk_drain(td_wk *w, bool (*idle)(void *arg), void (*cb)(void *cbarg), void *cbarg);
/* Loop thread: stops listening and sending; frees once the loop closed the
 * handles. */
void td_wk_destroy(td_wk *w);

/* The constraint a SamplingParams carries, as the engine takes it
 * (pointers into s). */
td_router_constraint td_wk_constraint(const Tandem__Ctl__SamplingParams *s);

/* Helpers for the roles: a TokenChunk to the router. */
td_err td_wk_send_tokens(td_wk *w, uint64_t request_id, uint64_t index, const int32_t *ids,
                         size_t n, Tandem__Ctl__FinishReason finish, const char *error);

#endif
