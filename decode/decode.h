/* td_decode: the decode worker. For each DecodeRequest it reserves and
 * registers a receive buffer for the request's V4 state and hands the
 * router a ticket (KvTicket); the prefill worker puts the state there over
 * UCX; once the receiver has verified it (layout, fingerprint, length,
 * checksum), the request joins the continuous batch (the in-process
 * engine, resumed from the state) and its tokens stream to the router.
 *
 * Threads: the loop thread (control messages, engine events), the engine
 * thread, and one receiver thread that owns the UCX context. */
#ifndef TD_DECODE_DECODE_H
#define TD_DECODE_DECODE_H

#include <stdint.h>
#include <uv.h>

#include "common/err.h"

typedef struct td_decode td_decode;

typedef struct {
    const char *model_dir;
    const char *router_url;
    const char *listen_url;      /* NULL: tcp://127.0.0.1:0 */
    const char *worker_id;       /* NULL: decode-<pid> */
    int64_t max_context;         /* cap on tokens per sequence; 0: the model's */
    int nthreads;
    int max_batch;               /* sequences decoded together; 0: 16 */
    int heartbeat_ms;            /* 0: 200 */
    /* UCP_ERR_HANDLING_MODE_PEER on UCX endpoints (td_xfer_opts): needed
     * over tcp (a dead peer, and UCX 1.13's tcp transport without it
     * crashed in about one transfer in ten here), off for shared memory,
     * which it would disable. cmd/ decides from UCX_TLS. */
    int ucx_peer_errors;
    const char *metrics_host;    /* /metrics; NULL: 127.0.0.1 */
    int metrics_port;            /* 0: a free port; -1: none */
    int transfer_timeout_ms;     /* ticket to verified state (the whole prefill); 0: 600000 */
    uint64_t kv_capacity;        /* bytes of state held at once; 0: 8 GiB */
    /* One region registered at start for the states in flight (states that
     * do not fit get a buffer of their own). 0: min(kv_capacity, 1 GiB);
     * -1: none. */
    int64_t kv_region_bytes;
    /* The engine's prefix cache (td_engine_opts.prefix_cache_bytes: 0 the
     * default, -1 off). A finished conversation's state (prompt and answer)
     * stays in it, announced to the router in KvEvents, so its next turn
     * can be answered here with only the new tokens prefilled. */
    int64_t prefix_cache_bytes;
    const char *kv_store_dir;    /* td_engine_opts: the disk tier under it; NULL none */
    uint64_t kv_store_bytes;     /* td_engine_opts */
    int64_t kv_spill_idle_ms;    /* td_engine_opts */
    const char *kv_store_peers;  /* td_engine_opts */
    int64_t kv_range_tokens;     /* td_engine_opts */
    void (*on_ready)(void *arg, const char *err);
    void *arg;
} td_decode_opts;

td_err td_decode_create(td_decode **out, uv_loop_t *loop, const td_decode_opts *opts,
                        char *err, size_t errlen);
/* Stops taking work (the router is told) and calls cb once every request
 * in flight has finished. */
void td_decode_drain(td_decode *d, void (*cb)(void *arg), void *arg);
void td_decode_destroy(td_decode *d, void (*cb)(void *arg), void *arg);

#endif
