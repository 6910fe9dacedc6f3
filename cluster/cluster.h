/* td_cluster: the router's view of its prefill and decode workers, behind
 * the same engine interface (router/engine.h) as the in-process engine.
 *
 * Workers register on the control listener (nng, proto/tandem_ctl.proto)
 * and send heartbeats; a request goes to a decode worker first (which
 * registers a receive buffer and answers with a ticket), then to a prefill
 * worker with that ticket. Prefill ships the state over UCX and reports the
 * first token (KvReady); decode streams the rest. A worker that misses
 * heartbeats is dropped: its requests start again elsewhere if no token
 * reached the client yet, else they end with an error.
 *
 * Loop thread only, like every engine. */
#ifndef TD_CLUSTER_CLUSTER_H
#define TD_CLUSTER_CLUSTER_H

#include <uv.h>

#include "common/err.h"
#include "router/engine.h"

typedef struct td_cluster td_cluster;

typedef struct {
    const char *listen_url;      /* where workers register; tcp://host:0 picks a port */
    int heartbeat_timeout_ms;    /* silence after which a worker is dropped; 0: 1500 */
    int max_attempts;            /* placements a request may try; 0: 3 */
} td_cluster_opts;

td_err td_cluster_create(td_cluster **out, uv_loop_t *loop, const td_cluster_opts *opts,
                         char *err, size_t errlen);
/* The bound listener URL, for workers' --router. */
const char *td_cluster_url(const td_cluster *c);
td_router_engine td_cluster_interface(td_cluster *c);
/* Live workers of each kind (a colocated one counts for both). */
void td_cluster_workers(const td_cluster *c, int *prefill, int *decode);
/* Finishes every request (CANCELLED, callbacks inside this call), tells no
 * worker anything more and frees once the loop has closed the handles. */
void td_cluster_destroy(td_cluster *c);

#endif
