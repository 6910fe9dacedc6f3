/* td_engine: the in-process engine behind router/engine.h.
 *
 * One engine thread owns the model and runs continuous batching: each
 * iteration admits waiting requests, then makes one td_v4_forward call that
 * prefills new requests (in chunks, within a per-iteration token budget) and
 * decodes one token for every running one, then samples. Tokens and
 * finishes go back to the loop thread through a mutex-protected queue and a
 * uv_async handle; the engine thread makes no other libuv call.
 *
 * The model loads on the engine thread, so the server answers /health (and
 * 503 on /ready) while a large model is still loading.
 */
#ifndef TD_ENGINE_ENGINE_H
#define TD_ENGINE_ENGINE_H

#include <uv.h>

#include "common/err.h"
#include "router/engine.h"

typedef struct td_engine td_engine;

typedef struct {
    const char *model_dir;       /* config.json, *.safetensors */
    /* Sequences decoded together; more requests wait. 0 = 16. */
    int max_batch;
    /* Prompt tokens prefilled per iteration over all new requests, so a long
     * prompt delays running decodes by one chunk, not by its whole length.
     * 0 = 512. */
    int prefill_budget;
    int nthreads;                /* model threads; 0 = one per CPU */
    int64_t max_context;         /* cap on tokens per sequence; 0 = the model's */
    /* Called once on the loop thread when loading ends: err is NULL on
     * success, else the reason (the engine then refuses every request). */
    void (*on_loaded)(void *arg, const char *err);
    void *arg;
} td_engine_opts;

/* Starts the engine thread (which loads the model). Called on the loop
 * thread; loop must outlive the engine. */
td_err td_engine_create(td_engine **out, uv_loop_t *loop, const td_engine_opts *opts,
                        char *err, size_t errlen);
/* The interface to hand to the router; ctx is e. */
td_router_engine td_engine_interface(td_engine *e);
/* Stops the thread: requests still queued or running finish with
 * TD_ROUTER_FINISH_CANCELLED (their callbacks run inside this call, on the
 * loop thread). Then closes the async handle; cb runs from the loop when it
 * is closed, after which e is freed. */
void td_engine_destroy(td_engine *e, void (*cb)(void *arg), void *arg);

#endif
