/* The worker processes of `tandem serve`'s embedded default: one prefill and
 * one decode child of this binary, registered with the router's cluster
 * listener. A child that dies after it registered is started again; one
 * that fails before it ever registered (a model that does not load) stops
 * the server. */
#ifndef TD_CMD_SERVE_WORKERS_H
#define TD_CMD_SERVE_WORKERS_H

#include <stdbool.h>
#include <uv.h>

#include "common/err.h"

typedef struct serve_workers serve_workers;

typedef struct {
    const char *router_url;
    const char *model_dir;
    long threads;                /* 0: the workers' default */
    long max_batch;              /* 0: the workers' default */
    long ctx;                    /* 0: the model's context */
    long prefix_cache_mib;       /* -1: the workers' default */
    /* The prefill worker's disk tier flags, as given (NULL: not given). */
    const char *kv_store, *kv_store_gib, *kv_spill_idle_ms, *kv_range_tokens;
    /* Whether a worker of this role ("prefill", "decode") is registered
     * now: a child that exits while none is never came up. */
    bool (*registered)(void *arg, const char *role);
    /* A child could not come up: the server should stop (status 1). */
    void (*on_failed)(void *arg, const char *role);
    void *arg;
} serve_workers_opts;

td_err serve_workers_start(serve_workers **out, uv_loop_t *loop, const serve_workers_opts *o,
                           char *err, size_t errlen);
/* SIGTERM to every child; cb once all have exited and the handles are
 * closed (then w is freed). */
void serve_workers_stop(serve_workers *w, void (*cb)(void *arg), void *arg);

#endif
