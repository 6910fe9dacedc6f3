/* The engine's loop-thread side (engine/engine.h): submit, cancel, pause
 * and load from the router; the events the engine thread posts, run as
 * callbacks; metrics; create and destroy. The engine thread is engine.c. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "engine/internal.h"
#include "model/state.h"

/* ---- events: engine thread -> loop thread -------------------------------- */

/* Runs the events the engine thread posted, with mu released. */
static void deliver(td_engine *e)
{
    pthread_mutex_lock(&e->mu);
    VEC(event) tmp = {e->outbox.v, e->outbox.n, e->outbox.cap};
    e->outbox.v = e->delivering.v;
    e->outbox.cap = e->delivering.cap;
    e->outbox.n = 0;
    pthread_mutex_unlock(&e->mu);
    e->delivering.v = tmp.v;
    e->delivering.cap = tmp.cap;
    e->delivering.n = tmp.n;
    for (size_t i = 0; i < e->delivering.n; i++) {
        const event *ev = &e->delivering.v[i];
        switch (ev->kind) {
        case EV_TOKEN:
            ev->cb.on_token(ev->cb.arg, ev->token);
            break;
        case EV_FINISH:
            ev->cb.on_finish(ev->cb.arg, ev->why, ev->err);
            break;
        case EV_STATE:
            ev->on_state(ev->cb.arg, ev->state, ev->state_len);
            break;
        case EV_CACHED:
            if (ev->cb.on_cached)
                ev->cb.on_cached(ev->cb.arg, ev->state_len);
            break;
        case EV_CACHE:
            e->opts.on_cache(e->opts.arg, ev->token != 0, ev->state, ev->state_len);
            free(ev->state);
            break;
        case EV_LOADED:
            if (e->opts.on_loaded)
                e->opts.on_loaded(e->opts.arg, e->load_err[0] ? e->load_err : NULL);
            break;
        }
    }
    e->delivering.n = 0;
}

static void on_async(uv_async_t *a) { deliver(a->data); }
/* ---- the interface (loop thread) ------------------------------------------------ */

static bool eng_ready(void *ctx)
{
    td_engine *e = ctx;
    return atomic_load(&e->ready);
}

static int64_t eng_context_len(void *ctx)
{
    td_engine *e = ctx;
    return atomic_load(&e->ready) ? atomic_load(&e->ctx_len) : 0;
}

td_err td_engine_submit(td_engine *e, const td_engine_req *x, const td_router_gen_cb *cb,
                        uint64_t *id)
{
    const td_router_gen_req *q = &x->gen;
    if (!atomic_load(&e->ready))
        return TD_EBUSY;
    if (q->n_prompt == 0 || q->max_tokens < 1 || !cb->on_token || !cb->on_finish)
        return TD_EINVAL;
    if ((x->state_buf && (!x->on_state || !x->on_section)) ||
        (x->state && (x->on_state || x->first_token < 0)) ||
        (!x->state && !q->prompt) || (x->on_state && q->max_tokens != 1))
        return TD_EINVAL;
    if ((int64_t)q->n_prompt + q->max_tokens > atomic_load(&e->ctx_len))
        return TD_ETOOLONG;
    ereq *r = calloc(1, sizeof *r);
    if (!r)
        return TD_ENOMEM;
    /* A resumed request's prompt is in its state already; its ids, when
     * given, name the state the prefix cache keeps at the end. */
    r->state = x->state;
    r->state_len = x->state_len;
    r->first_token = x->first_token;
    r->release_state = x->release_state;
    r->state_arg = x->state_arg;
    if (td_router_constraint_dup(&r->cons, &q->constraint)) {
        r->state = NULL;  /* on error nothing is called back */
        td_eng_ereq_free(r);
        return TD_ENOMEM;
    }
    r->on_state = x->on_state;
    r->state_buf = x->state_buf;
    r->state_cap = x->state_cap;
    r->on_section = x->on_section;
    r->prompt = q->prompt ? malloc(q->n_prompt * sizeof *r->prompt) : NULL;
    r->stop_ids = malloc((q->n_stop_ids ? q->n_stop_ids : 1) * sizeof *r->stop_ids);
    if ((q->prompt && !r->prompt) || !r->stop_ids) {
        r->state = NULL;  /* on error nothing is called back */
        td_eng_ereq_free(r);
        return TD_ENOMEM;
    }
    if (r->prompt)
        memcpy(r->prompt, q->prompt, q->n_prompt * sizeof *r->prompt);
    if (q->n_stop_ids)
        memcpy(r->stop_ids, q->stop_ids, q->n_stop_ids * sizeof *r->stop_ids);
    r->n_prompt = q->n_prompt;
    r->n_stop = q->n_stop_ids;
    r->max_tokens = q->max_tokens;
    r->sampling = q->sampling;
    if (q->session_id && !(r->session_id = strdup(q->session_id))) {
        r->state = NULL;
        td_eng_ereq_free(r);
        return TD_ENOMEM;
    }
    r->cb = *cb;
    r->id = ++e->next_id;
    r->submitted_ns = td_eng_now_ns();
    pthread_mutex_lock(&e->mu);
    bool stopping = e->stop;
    if (!stopping) {
        if (e->inbox_tail)
            e->inbox_tail->next = r;
        else
            e->inbox = r;
        e->inbox_tail = r;
        atomic_fetch_add(&e->load_waiting, 1);
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    if (stopping) {
        r->state = NULL;
        td_eng_ereq_free(r);
        return TD_ECLOSED;
    }
    *id = r->id;
    return TD_OK;
}

static td_err eng_submit(void *ctx, const td_router_gen_req *q, const td_router_gen_cb *cb,
                         uint64_t *id)
{
    td_engine_req x = {.gen = *q};
    return td_engine_submit(ctx, &x, cb, id);
}

size_t td_engine_state_size(td_engine *e, int64_t tokens)
{
    return atomic_load(&e->ready) ? td_v4_state_size_at(e->m, tokens, 0) : 0;
}

td_engine_cache_stats td_engine_cache(td_engine *e)
{
    return (td_engine_cache_stats){
        .lookups = atomic_load(&e->pc_lookups), .hits = atomic_load(&e->pc_hits),
        .tokens_reused = atomic_load(&e->pc_tokens), .bytes = atomic_load(&e->pc_bytes),
        .entries = atomic_load(&e->pc_entries), .evictions = atomic_load(&e->pc_evictions),
    };
}

void td_engine_metrics(td_engine *e, td_prom_buf *b)
{
    td_engine_cache_stats cs = td_engine_cache(e);
    td_prom_counter(b, "tandem_prefix_cache_queries_total",
                    "Prompts looked up in the prefix cache.", cs.lookups);
    td_prom_counter(b, "tandem_prefix_cache_hits_total",
                    "Prompts that extended a cached state.", cs.hits);
    td_prom_counter(b, "tandem_prefix_cache_evictions_total",
                    "States dropped from the prefix cache to make room.", cs.evictions);
    td_prom_gauge(b, "tandem_prefix_cache_bytes", "Bytes of states in the prefix cache.",
                  (double)cs.bytes);
    td_spill *sp = atomic_load(&e->spill);
    if (sp)
        td_spill_metrics(sp, b);   /* the disk tier under it */
    pthread_mutex_lock(&e->stat_mu);
    td_prom_hist q = e->queue_time;
    pthread_mutex_unlock(&e->stat_mu);
    td_prom_histogram(b, "tandem_request_queue_time_seconds",
                      "From submission to admission into the batch.", &q);
    td_prom_counter(b, "tandem_engine_steps_total", "Forward passes (one per iteration).",
                    atomic_load(&e->steps_total));
    td_prom_counter(b, "tandem_engine_step_tokens_total",
                    "Tokens through the forward passes (prompt chunks and decoded sequences): "
                    "per step, the batch's size in tokens.", atomic_load(&e->step_rows_total));
    td_prom_gauge(b, "tandem_batch_size", "Sequences in the last forward pass.",
                  (double)atomic_load(&e->last_batch));
    td_prom_gauge(b, "tandem_requests_loading",
                  "Requests out of the batch while their prompt's state is read from disk.",
                  (double)atomic_load(&e->load_loading));
}

static void eng_metrics(void *ctx, td_prom_buf *b) { td_engine_metrics(ctx, b); }

uint64_t td_engine_fingerprint(td_engine *e)
{
    return atomic_load(&e->ready) ? td_v4_layout_fingerprint(td_v4_model_config(e->m)) : 0;
}

static void command(td_engine *e, cmd_kind kind, uint64_t id)
{
    pthread_mutex_lock(&e->mu);
    if (!VEC_PUSH(e->cmds, ((cmd){kind, id})))
        td_log(TD_LOG_ERROR, "engine: out of memory queueing a command");
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

static void eng_cancel(void *ctx, uint64_t id) { command(ctx, CMD_CANCEL, id); }

static void eng_pause(void *ctx, uint64_t id, bool paused)
{
    command(ctx, paused ? CMD_PAUSE : CMD_RESUME, id);
}

static void eng_load(void *ctx, td_router_load *out)
{
    td_engine *e = ctx;
    out->running = atomic_load(&e->load_running);
    out->waiting = atomic_load(&e->load_waiting);
}

td_router_engine td_engine_interface(td_engine *e)
{
    return (td_router_engine){.ctx = e, .ready = eng_ready, .context_len = eng_context_len,
                              .submit = eng_submit, .cancel = eng_cancel, .pause = eng_pause,
                              .load = eng_load, .metrics = eng_metrics};
}

/* ---- lifecycle ------------------------------------------------------------------- */

static void engine_free(td_engine *e)
{
    free(e->logits);
    free(e->steps);
    free(e->step_req);
    free(e->step_take);
    free(e->cmds.v);
    free(e->cmds_local.v);
    free(e->outbox.v);
    free(e->delivering.v);
    free(e->events.v);
    free(e->model_dir);
    free(e->kv_store_dir);
    free(e->kv_store_peers);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->stat_mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

td_err td_engine_create(td_engine **out, uv_loop_t *loop, const td_engine_opts *opts,
                        char *err, size_t errlen)
{
    td_engine *e = calloc(1, sizeof *e);
    if (!e)
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    e->loop = loop;
    e->opts = *opts;
    if (e->opts.max_batch <= 0)
        e->opts.max_batch = 16;
    if (e->opts.prefill_budget <= 0)
        e->opts.prefill_budget = 512;
    e->model_dir = strdup(opts->model_dir ? opts->model_dir : "");
    /* the engine thread reads it after this returns */
    e->kv_store_dir = opts->kv_store_dir ? strdup(opts->kv_store_dir) : NULL;
    e->opts.kv_store_dir = e->kv_store_dir;
    e->kv_store_peers = opts->kv_store_peers ? strdup(opts->kv_store_peers) : NULL;
    e->opts.kv_store_peers = e->kv_store_peers;
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->stat_mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (!e->model_dir || uv_async_init(loop, &e->async, on_async)) {
        engine_free(e);
        return td_errf(err, errlen, TD_ENOMEM, "cannot set up the engine");
    }
    e->async.data = e;
    td_kernels_init(-1);
    int rc = pthread_create(&e->thread, NULL, td_eng_main, e);
    if (rc) {
        /* The async handle is registered with the loop: close it there. */
        e->async.data = NULL;
        uv_close((uv_handle_t *)&e->async, NULL);
        uv_run(loop, UV_RUN_NOWAIT);
        engine_free(e);
        return td_errf(err, errlen, TD_ENOMEM, "cannot start the engine thread");
    }
    e->thread_started = true;
    *out = e;
    return TD_OK;
}

static void on_async_closed(uv_handle_t *h)
{
    td_engine *e = h->data;
    void (*cb)(void *) = e->on_closed;
    void *arg = e->closed_arg;
    engine_free(e);
    if (cb)
        cb(arg);
}

void td_engine_destroy(td_engine *e, void (*cb)(void *arg), void *arg)
{
    atomic_store(&e->ready, false);
    pthread_mutex_lock(&e->mu);
    e->stop = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (e->thread_started)
        pthread_join(e->thread, NULL);
    deliver(e);  /* the last tokens and the cancellations */
    e->on_closed = cb;
    e->closed_arg = arg;
    uv_close((uv_handle_t *)&e->async, on_async_closed);
}
