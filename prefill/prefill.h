/* td_prefill: the prefill worker. Runs chunked prefill over a batch of
 * requests (the in-process engine, in its prefill-only mode), samples each
 * request's first token, and ships the V4 state it built to the decode
 * worker the router chose, over UCX (transport/xfer), then tells the router
 * (KvReady, with the first token).
 *
 * Threads: the loop thread (control messages, engine events), the engine
 * thread, and one shipper thread that owns the UCX context. */
#ifndef TD_PREFILL_PREFILL_H
#define TD_PREFILL_PREFILL_H

#include <stdint.h>
#include <uv.h>

#include "common/err.h"

typedef struct td_prefill td_prefill;

typedef struct {
    const char *model_dir;
    const char *router_url;      /* the router's control listener */
    const char *listen_url;      /* ours; NULL: tcp://127.0.0.1:0 */
    const char *worker_id;       /* NULL: prefill-<pid> */
    int64_t max_context;         /* cap on tokens per sequence; 0: the model's */
    int nthreads;                /* model threads; 0: one per CPU */
    int max_batch;               /* requests prefilled together; 0: 16 */
    int prefill_budget;          /* prompt tokens per engine iteration; 0: 512 */
    int heartbeat_ms;            /* 0: 200 */
    /* UCP_ERR_HANDLING_MODE_PEER on UCX endpoints (td_xfer_opts): needed
     * over tcp (a dead peer, and UCX 1.13's tcp transport without it
     * crashed in about one transfer in ten here), off for shared memory,
     * which it would disable. cmd/ decides from UCX_TLS. */
    int ucx_peer_errors;
    const char *metrics_host;    /* /metrics; NULL: 127.0.0.1 */
    int metrics_port;            /* 0: a free port; -1: none */
    int64_t prefix_cache_bytes;  /* td_engine_opts: 0 the default, -1 off */
    const char *kv_store_dir;    /* td_engine_opts: the disk tier; NULL none */
    uint64_t kv_store_bytes;     /* td_engine_opts */
    int64_t kv_spill_idle_ms;    /* td_engine_opts */
    const char *kv_store_peers;  /* td_engine_opts */
    int64_t kv_range_tokens;     /* td_engine_opts */
    int lease_ms;                /* how long a shipped state waits for decode; 0: 30000 */
    /* A buffer states are saved into, registered with UCX once so that no
     * transfer maps memory (docs/transfer.md); a state that does not fit
     * gets a buffer of its own. 0: 256 MiB; -1: none. */
    int64_t state_region_bytes;
    /* Loop thread, once: NULL when serving, else why it cannot. */
    void (*on_ready)(void *arg, const char *err);
    void *arg;
} td_prefill_opts;

td_err td_prefill_create(td_prefill **out, uv_loop_t *loop, const td_prefill_opts *opts,
                         char *err, size_t errlen);
/* Stops taking work (the router is told) and calls cb once every request
 * in flight has finished or been shipped. */
void td_prefill_drain(td_prefill *p, void (*cb)(void *arg), void *arg);
/* Stops: work in flight is cancelled; cb runs on the loop when all is
 * released. */
void td_prefill_destroy(td_prefill *p, void (*cb)(void *arg), void *arg);

#endif
