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

/* How a request's prefill worker is chosen (decode: the least loaded,
 * then the most free KV memory).
 * PREFIX: the worker that already holds the session's state or the
 *   longest prefix of the prompt (KvEvents), unless it is busier than the
 *   least loaded one by more than a small slack; else the least loaded.
 *   A decode worker holding a longer prefix answers whole when what is
 *   left is short (local_prefill_max).
 * LEAST_LOADED: requests placed on it plus what it reports waiting.
 * ROUND_ROBIN: in turn. */
typedef enum {
    TD_CLUSTER_POLICY_PREFIX,
    TD_CLUSTER_POLICY_LEAST_LOADED,
    TD_CLUSTER_POLICY_ROUND_ROBIN,
} td_cluster_policy;

/* "prefix", "least-loaded", "round-robin"; TD_EINVAL for another name. */
td_err td_cluster_policy_parse(const char *name, td_cluster_policy *out);

typedef struct {
    const char *listen_url;      /* where workers register; tcp://host:0 picks a port */
    /* Silence after which a worker is dropped; 0: 5000 (a loaded machine
     * can stall a worker for a second or two; a false drop costs more than a
     * slow one). */
    int heartbeat_timeout_ms;
    int max_attempts;            /* placements a request may try; 0: 3 */
    td_cluster_policy policy;
    /* PREFIX policy: a decode worker that holds more of the prompt than
     * the chosen prefill worker (it answered this conversation's last
     * turn and kept the state) answers the request whole when at most this
     * many prompt tokens are left to prefill: shipping the state elsewhere
     * would cost more than prefilling a tool result in place. 0: 1024;
     * negative: never. */
    int64_t local_prefill_max;
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
