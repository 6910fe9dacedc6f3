/* td_wk_ucx: the one thread of a worker process that owns its UCX context
 * (the prefill shipper, the decode receiver). The context is created, used
 * and destroyed on that thread only, and the loop thread learns its worker
 * address (for registration) once it exists. mu and cv are the role's too:
 * its queue to the thread lives under them. */
#ifndef TD_WORKER_UCX_THREAD_H
#define TD_WORKER_UCX_THREAD_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "common/err.h"
#include "transport/xfer/xfer.h"

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool started;
    int state;                   /* under mu: 0 starting, 1 up, -1 failed */
    char err[256];
    int peer_errors;             /* td_xfer_opts */
    td_xfer_ctx *xfer;
    const void *addr;            /* the context's worker address */
    size_t addr_len;
} td_wk_ucx;

void td_wk_ucx_init(td_wk_ucx *u, int peer_errors);
/* Starts main(arg), which must call td_wk_ucx_ready first, and waits until
 * the context exists (or failed: err says why). */
td_err td_wk_ucx_start(td_wk_ucx *u, void *(*main)(void *), void *arg, char *err,
                       size_t errlen);
/* The thread's first call: creates the context; false: return at once. */
bool td_wk_ucx_ready(td_wk_ucx *u);
/* After the role told its thread to stop: joins it, destroys the context. */
void td_wk_ucx_join(td_wk_ucx *u);
void td_wk_ucx_fini(td_wk_ucx *u);

/* A role's engine has loaded (load_err NULL) or failed: starts the UCX
 * thread, then registers with the router through td_wk_create(opts with
 * the UCX address filled in). On error err says why. */
struct td_wk;
struct td_wk_opts;
td_err td_wk_ucx_bring_up(td_wk_ucx *u, const char *load_err, void *(*main)(void *),
                          void *arg, uv_loop_t *loop, struct td_wk_opts *opts,
                          struct td_wk **wk, char *err, size_t errlen);

#endif
