/* The prefill worker (prefill/prefill.h).
 *
 * A request's life: PrefillRequest -> engine (prompt, first token, state
 * saved) -> shipper thread (UCX put into the decode worker's ticket, flush,
 * completion, the receiver's verdict) -> KvReady to the router. A request
 * without a ticket (max_tokens 1) ends with its first token in a
 * TokenChunk; one whose first token is a stop id ends there too. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "engine/engine.h"
#include "model/state.h"
#include "prefill/prefill.h"
#include "proto/blockhash.h"
#include "transport/ctl/mailbox.h"
#include "transport/xfer/xfer.h"
#include "worker/local.h"
#include "worker/ucx_thread.h"
#include "worker/worker.h"

enum { CONNECT_TIMEOUT_MS = 5000 };

typedef struct pjob {
    struct pjob *next;           /* loop: the in-engine list; shipper: its queue */
    td_prefill *p;
    uint64_t rid;                /* the router's request id */
    uint64_t eid;                /* the engine's */
    uint64_t ntok;
    uint8_t *ticket, *daddr;     /* empty ticket: ship nothing */
    size_t ticket_len, daddr_len;
    int32_t first;
    void *state;
    size_t state_len;
    bool cancelled;
    uint64_t t_arrived;          /* uv_hrtime at the PrefillRequest */
    double ship_seconds;         /* the shipper's transfer time */
    /* shipper's result */
    td_err ship_err;
    uint64_t checksum;
    char msg[256];
} pjob;

typedef struct peer {
    struct peer *next;
    uint8_t *addr;
    size_t len;
    td_xfer_peer *xp;
} peer;

struct td_prefill {
    td_prefill_opts o;
    uv_loop_t *loop;
    td_engine *engine;
    td_router_engine ei;
    td_wk *wk;
    td_wk_local *local;          /* PrefillRequests without a ticket: the whole answer */
    td_mbox *shipped;            /* shipper -> loop */
    pjob *jobs;                  /* in the engine */
    int running;                 /* jobs in the engine or the shipper */
    /* /metrics (loop thread) */
    uint64_t m_requests, m_prompt_tokens, m_transfers, m_transfer_failures, m_transfer_bytes;
    uint64_t m_state_bytes;      /* states held for the shipper */
    td_prom_hist m_prefill, m_transfer;
    uint64_t fingerprint;
    /* shipper thread */
    td_wk_ucx u;                 /* the UCX thread; u.mu guards what follows */
    pjob *queue, *queue_tail;    /* under mu */
    bool stop;                   /* under mu */
    peer *peers;                 /* shipper only */
    void (*on_closed)(void *);
    void *closed_arg;
    int closing;                 /* handles still to close */
};

/* ---- shipper thread -------------------------------------------------------------- */

static td_xfer_peer *peer_for(td_prefill *p, const uint8_t *addr, size_t len, char *err,
                              size_t errlen)
{
    for (peer *q = p->peers; q; q = q->next)
        if (q->len == len && !memcmp(q->addr, addr, len))
            return q->xp;
    peer *q = calloc(1, sizeof *q);
    if (!q || !(q->addr = malloc(len))) {
        free(q);
        td_errf(err, errlen, TD_ENOMEM, "out of memory");
        return NULL;
    }
    memcpy(q->addr, addr, len);
    q->len = len;
    if (td_xfer_connect(p->u.xfer, addr, len, CONNECT_TIMEOUT_MS, &q->xp, err, errlen)) {
        free(q->addr);
        free(q);
        return NULL;
    }
    q->next = p->peers;
    p->peers = q;
    return q->xp;
}

/* A peer whose transfer failed may be gone: connect afresh next time. */
static void forget_peer(td_prefill *p, td_xfer_peer *xp)
{
    for (peer **pp = &p->peers; *pp; pp = &(*pp)->next)
        if ((*pp)->xp == xp) {
            peer *q = *pp;
            *pp = q->next;
            td_xfer_peer_close(q->xp);
            free(q->addr);
            free(q);
            return;
        }
}

static void ship(td_prefill *p, pjob *j)
{
    uint64_t t0 = uv_hrtime();
    j->checksum = td_xfer_checksum(j->state, j->state_len);
    td_xfer_peer *xp = peer_for(p, j->daddr, j->daddr_len, j->msg, sizeof j->msg);
    if (!xp) {
        j->ship_err = TD_EIO;
        return;
    }
    td_xfer_send *s = NULL;
    td_err e = td_xfer_send_open(xp, j->ticket, j->ticket_len, j->state, j->state_len, &s,
                                 j->msg, sizeof j->msg);
    if (!e)
        e = td_xfer_send_section(s, 0, j->state_len);
    if (!e) {
        td_xfer_desc d = {.transfer_id = j->rid, .layout_version = TD_V4_STATE_LAYOUT,
                          .fingerprint = p->fingerprint, .tokens = j->ntok,
                          .total_bytes = j->state_len, .checksum = j->checksum,
                          .first_token = j->first};
        e = td_xfer_send_finish(s, &d, p->o.lease_ms, j->msg, sizeof j->msg);
    }
    td_xfer_send_close(s);
    if (e && e != TD_ECORRUPT && e != TD_EFORMAT)
        forget_peer(p, xp);
    j->ship_err = e;
    j->ship_seconds = (double)(uv_hrtime() - t0) * 1e-9;
}

static void *shipper_main(void *arg)
{
    td_prefill *p = arg;
    if (!td_wk_ucx_ready(&p->u))
        return NULL;
    for (;;) {
        pthread_mutex_lock(&p->u.mu);
        while (!p->stop && !p->queue)
            pthread_cond_wait(&p->u.cv, &p->u.mu);
        pjob *j = p->queue;
        if (j) {
            p->queue = j->next;
            if (!p->queue)
                p->queue_tail = NULL;
        }
        bool stop = p->stop;
        pthread_mutex_unlock(&p->u.mu);
        if (!j && stop)
            break;
        if (stop) {
            j->ship_err = TD_ECLOSED;
            snprintf(j->msg, sizeof j->msg, "the prefill worker is stopping");
        } else {
            ship(p, j);
        }
        if (td_mbox_post(p->shipped, j)) {
            free(j->state);  /* cannot happen before destroy joins us; be safe */
            free(j);
        }
    }
    while (p->peers)
        forget_peer(p, p->peers->xp);
    return NULL;
}

/* ---- loop thread -------------------------------------------------------------- */

static void job_free(pjob *j)
{
    free(j->ticket);
    free(j->daddr);
    free(j->state);
    free(j);
}

static void unlink_job(td_prefill *p, pjob *j)
{
    for (pjob **pp = &p->jobs; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            return;
        }
}

static void on_shipped(void *arg, void *item)
{
    td_prefill *p = arg;
    pjob *j = item;
    p->running--;
    p->m_state_bytes -= j->state_len;
    if (j->ship_err) {
        p->m_transfer_failures++;
    } else {
        p->m_transfers++;
        p->m_transfer_bytes += j->state_len;
        td_prom_observe(&p->m_transfer, j->ship_seconds);
    }
    if (j->cancelled || !p->wk) {
        /* the router has moved on, or we are stopping */
    } else if (j->ship_err) {
        char msg[320];
        snprintf(msg, sizeof msg, "KV transfer to the decode worker failed: %s", j->msg);
        td_log(TD_LOG_ERROR, "prefill: request %llu: %s", (unsigned long long)j->rid, msg);
        td_wk_send_tokens(p->wk, j->rid, 0, NULL, 0, TANDEM__CTL__FINISH_REASON__FINISH_ERROR,
                          msg);
    } else {
        Tandem__Ctl__KvSection sec = TANDEM__CTL__KV_SECTION__INIT, *secs[1] = {&sec};
        sec.offset = 0;
        sec.length = j->state_len;
        Tandem__Ctl__KvReady kr = TANDEM__CTL__KV_READY__INIT;
        kr.request_id = j->rid;
        kr.layout_version = TD_V4_STATE_LAYOUT;
        kr.model_fingerprint = p->fingerprint;
        kr.tokens = j->ntok;
        kr.total_bytes = j->state_len;
        kr.checksum = j->checksum;
        kr.sections = secs;
        kr.n_sections = 1;
        kr.first_token = j->first;
        td_ctl_msg env = TANDEM__CTL__ENVELOPE__INIT;
        env.body_case = TANDEM__CTL__ENVELOPE__BODY_KV_READY;
        env.kv_ready = &kr;
        td_wk_send(p->wk, &env);
    }
    job_free(j);
}

static void on_token(void *arg, int32_t t)
{
    pjob *j = arg;
    j->first = t;
    td_prom_observe(&j->p->m_prefill, (double)(uv_hrtime() - j->t_arrived) * 1e-9);
}

static void on_state(void *arg, void *state, size_t len)
{
    pjob *j = arg;
    j->state = state;
    j->state_len = len;
}

static void on_finish(void *arg, td_router_finish why, td_err err)
{
    pjob *j = arg;
    td_prefill *p = j->p;
    unlink_job(p, j);
    if (why == TD_ROUTER_FINISH_LENGTH && !j->cancelled) {
        /* to the shipper; it comes back through on_shipped */
        p->m_state_bytes += j->state_len;
        pthread_mutex_lock(&p->u.mu);
        j->next = NULL;
        if (p->queue_tail)
            p->queue_tail->next = j;
        else
            p->queue = j;
        p->queue_tail = j;
        pthread_cond_signal(&p->u.cv);
        pthread_mutex_unlock(&p->u.mu);
        return;
    }
    p->running--;
    if (!j->cancelled && p->wk) {
        if (why == TD_ROUTER_FINISH_STOP)
            td_wk_send_tokens(p->wk, j->rid, 0, NULL, 0,
                              TANDEM__CTL__FINISH_REASON__FINISH_STOP, NULL);
        else
            td_wk_send_tokens(p->wk, j->rid, 0, NULL, 0,
                              why == TD_ROUTER_FINISH_CANCELLED
                                  ? TANDEM__CTL__FINISH_REASON__FINISH_CANCELLED
                                  : TANDEM__CTL__FINISH_REASON__FINISH_ERROR,
                              why == TD_ROUTER_FINISH_ERROR ? td_strerror(err) : NULL);
    }
    job_free(j);
}

static uint8_t *dup_bytes(const ProtobufCBinaryData *b)
{
    uint8_t *d = malloc(b->len ? b->len : 1);
    if (d && b->len)
        memcpy(d, b->data, b->len);
    return d;
}

static void start(td_prefill *p, const Tandem__Ctl__PrefillRequest *m)
{
    p->m_requests++;
    p->m_prompt_tokens += m->n_token_ids;
    if (m->kv_ticket.len == 0) {
        td_wk_local_start(p->local, m);
        return;
    }
    pjob *j = calloc(1, sizeof *j);
    if (!j || !(j->ticket = dup_bytes(&m->kv_ticket)) ||
        !(j->daddr = dup_bytes(&m->decode_ucx_address))) {
        if (j)
            job_free(j);
        td_wk_send_tokens(p->wk, m->request_id, 0, NULL, 0,
                          TANDEM__CTL__FINISH_REASON__FINISH_ERROR, "out of memory");
        return;
    }
    j->p = p;
    j->t_arrived = uv_hrtime();
    j->rid = m->request_id;
    j->ntok = m->n_token_ids;
    j->ticket_len = m->kv_ticket.len;
    j->daddr_len = m->decode_ucx_address.len;
    const Tandem__Ctl__SamplingParams *s = m->sampling;
    td_engine_req x = {
        .gen = {.prompt = m->token_ids, .n_prompt = m->n_token_ids, .max_tokens = 1,
                .sampling = {.temperature = s->temperature, .top_p = s->top_p,
                             .top_k = (int)s->top_k, .seed = s->seed},
                .stop_ids = s->stop_token_ids, .n_stop_ids = s->n_stop_token_ids,
                .session_id = m->session_id && m->session_id[0] ? m->session_id : NULL},
        .on_state = on_state,
    };
    td_router_gen_cb cb = {.on_token = on_token, .on_finish = on_finish, .arg = j};
    td_err e = td_engine_submit(p->engine, &x, &cb, &j->eid);
    if (e) {
        td_wk_send_tokens(p->wk, j->rid, 0, NULL, 0,
                          e == TD_ETOOLONG ? TANDEM__CTL__FINISH_REASON__FINISH_LENGTH
                                           : TANDEM__CTL__FINISH_REASON__FINISH_ERROR,
                          td_strerror(e));
        job_free(j);
        return;
    }
    j->next = p->jobs;
    p->jobs = j;
    p->running++;
}

static void cancel(td_prefill *p, uint64_t rid)
{
    if (td_wk_local_cancel(p->local, rid))
        return;
    for (pjob *j = p->jobs; j; j = j->next)
        if (j->rid == rid) {
            j->cancelled = true;
            p->ei.cancel(p->ei.ctx, j->eid);
            return;
        }
    /* In the shipper: it finishes its transfer (the decode side drops it). */
    pthread_mutex_lock(&p->u.mu);
    for (pjob *j = p->queue; j; j = j->next)
        if (j->rid == rid)
            j->cancelled = true;
    pthread_mutex_unlock(&p->u.mu);
}

static void on_msg(void *arg, td_ctl_msg *m)
{
    td_prefill *p = arg;
    switch (m->body_case) {
    case TANDEM__CTL__ENVELOPE__BODY_PREFILL:
        start(p, m->prefill);
        break;
    case TANDEM__CTL__ENVELOPE__BODY_CANCEL:
        cancel(p, m->cancel->request_id);
        break;
    case TANDEM__CTL__ENVELOPE__BODY_PAUSE:
        td_wk_local_pause(p->local, m->pause->request_id, m->pause->paused);
        break;
    case TANDEM__CTL__ENVELOPE__BODY_DRAIN:
        td_wk_set_draining(p->wk, true);
        break;
    default:
        td_log(TD_LOG_WARN, "prefill: control message %d ignored", (int)m->body_case);
    }
    td_ctl_free(m);
}

static void load(void *arg, Tandem__Ctl__Heartbeat *hb)
{
    td_prefill *p = arg;
    td_router_load l = {0};
    p->ei.load(p->ei.ctx, &l);
    hb->running = (uint32_t)(p->running + td_wk_local_running(p->local));
    hb->waiting = (uint32_t)l.waiting;
}

/* The engine's prefix cache stored or dropped a prompt's state: tell the
 * router, as the prompt's block-hash chain (proto/blockhash.h), so the
 * next turn of that conversation comes back here. */
static void on_cache(void *arg, bool stored, const int32_t *tokens, size_t n)
{
    td_prefill *p = arg;
    size_t k = n / TD_BLOCKHASH_TOKENS;
    uint64_t *chain = k && p->wk ? malloc(k * sizeof *chain) : NULL;
    if (!chain)
        return;
    td_block_chain(tokens, n, TD_BLOCKHASH_TOKENS, chain);
    Tandem__Ctl__KvEvents ev = TANDEM__CTL__KV_EVENTS__INIT;
    ev.worker_id = (char *)td_wk_id(p->wk);
    ev.block_tokens = TD_BLOCKHASH_TOKENS;
    if (stored) {
        ev.stored = chain;
        ev.n_stored = k;
    } else {
        ev.removed = chain;
        ev.n_removed = k;
    }
    td_ctl_msg env = TANDEM__CTL__ENVELOPE__INIT;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_KV_EVENTS;
    env.kv_events = &ev;
    td_wk_send(p->wk, &env);
    free(chain);
}

static void metrics(void *arg, td_prom_buf *b)
{
    td_prefill *p = arg;
    td_router_load l = {0};
    p->ei.load(p->ei.ctx, &l);
    td_prom_counter(b, "tandem_prefill_requests_total", "Prefill requests accepted.",
                    p->m_requests);
    td_prom_counter(b, "tandem_prompt_tokens_total", "Prompt tokens of accepted requests.",
                    p->m_prompt_tokens);
    td_prom_histogram(b, "tandem_prefill_latency_seconds",
                      "From a prefill request's arrival to its first token.", &p->m_prefill);
    td_prom_counter(b, "tandem_kv_transfers_total", "KV states shipped and verified by decode.",
                    p->m_transfers);
    td_prom_counter(b, "tandem_kv_transfer_failures_total",
                    "KV states not delivered (unreachable, refused, timed out).",
                    p->m_transfer_failures);
    td_prom_counter(b, "tandem_kv_transfer_bytes_total", "Bytes of KV state shipped.",
                    p->m_transfer_bytes);
    td_prom_histogram(b, "tandem_kv_transfer_duration_seconds",
                      "One state's transfer: connect, puts, flush, decode's verdict.",
                      &p->m_transfer);
    td_prom_gauge(b, "tandem_num_requests_running",
                  "Requests being prefilled or shipped, or generated here.",
                  (double)(p->running + td_wk_local_running(p->local)));
    td_prom_gauge(b, "tandem_num_requests_waiting", "Requests queued for the prefill batch.",
                  (double)l.waiting);
    td_prom_gauge(b, "tandem_kv_bytes_in_use", "Bytes of saved states waiting to be shipped.",
                  (double)p->m_state_bytes);
    td_engine_cache_stats cs = td_engine_cache(p->engine);
    td_prom_counter(b, "tandem_prefix_cache_queries_total",
                    "Prompts looked up in the prefix cache.", cs.lookups);
    td_prom_counter(b, "tandem_prefix_cache_hits_total",
                    "Prompts that extended a cached state.", cs.hits);
    td_prom_counter(b, "tandem_prompt_tokens_cached_total",
                    "Prompt tokens restored from the prefix cache instead of prefilled.",
                    cs.tokens_reused);
    td_prom_counter(b, "tandem_prefix_cache_evictions_total",
                    "States dropped from the prefix cache to make room.", cs.evictions);
    td_prom_gauge(b, "tandem_prefix_cache_bytes", "Bytes of states in the prefix cache.",
                  (double)cs.bytes);
}

static void on_loaded(void *arg, const char *why)
{
    td_prefill *p = arg;
    char err[512] = "";
    p->fingerprint = why ? 0 : td_engine_fingerprint(p->engine);
    td_wk_opts wo = {
        .worker_id = p->o.worker_id, .role = TANDEM__CTL__ROLE__ROLE_PREFILL,
        .router_url = p->o.router_url, .listen_url = p->o.listen_url,
        .heartbeat_ms = p->o.heartbeat_ms, .fingerprint = p->fingerprint,
        .layout_version = TD_V4_STATE_LAYOUT, .max_batch = (uint32_t)p->o.max_batch,
        .max_context = (uint64_t)p->ei.context_len(p->ei.ctx),
        .on_msg = on_msg, .load = load, .arg = p,
        .metrics_host = p->o.metrics_host, .metrics_port = p->o.metrics_port,
        .metrics = metrics,
    };
    td_err e = td_wk_ucx_bring_up(&p->u, why, shipper_main, p, p->loop, &wo, &p->wk, err,
                                  sizeof err);
    if (!e && td_wk_local_create(&p->local, p->wk, p->engine))
        e = td_errf(err, sizeof err, TD_ENOMEM, "out of memory");
    if (p->o.on_ready)
        p->o.on_ready(p->o.arg, e ? err : NULL);
}

td_err td_prefill_create(td_prefill **out, uv_loop_t *loop, const td_prefill_opts *o,
                         char *err, size_t errlen)
{
    td_prefill *p = calloc(1, sizeof *p);
    if (!p)
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    p->o = *o;
    if (!p->o.max_batch)
        p->o.max_batch = 16;
    if (!p->o.lease_ms)
        p->o.lease_ms = 30000;
    p->loop = loop;
    td_wk_ucx_init(&p->u, o->ucx_peer_errors);
    td_err e = td_mbox_create(&p->shipped, loop, on_shipped, p);
    if (e) {
        free(p);
        return td_errf(err, errlen, e, "cannot create a mailbox");
    }
    td_engine_opts eo = {.model_dir = o->model_dir, .max_batch = p->o.max_batch,
                         .prefill_budget = o->prefill_budget, .nthreads = o->nthreads,
                         .max_context = o->max_context,
                         .prefix_cache_bytes = o->prefix_cache_bytes, .on_cache = on_cache,
                         .on_loaded = on_loaded, .arg = p};
    e = td_engine_create(&p->engine, loop, &eo, err, errlen);
    if (e) {
        td_mbox_destroy(p->shipped);
        free(p);
        return e;
    }
    p->ei = td_engine_interface(p->engine);
    *out = p;
    return TD_OK;
}

static bool idle(void *arg)
{
    td_prefill *p = arg;
    return p->running == 0 && td_wk_local_running(p->local) == 0;
}

void td_prefill_drain(td_prefill *p, void (*cb)(void *arg), void *arg)
{
    if (p->wk)
        td_wk_drain(p->wk, idle, cb, arg);
    else
        cb(arg);
}

static void closed_one(void *arg)
{
    td_prefill *p = arg;
    if (--p->closing > 0)
        return;
    void (*cb)(void *) = p->on_closed;
    void *cbarg = p->closed_arg;
    td_wk_local_destroy(p->local);
    free(p);
    if (cb)
        cb(cbarg);
}

void td_prefill_destroy(td_prefill *p, void (*cb)(void *arg), void *arg)
{
    p->on_closed = cb;
    p->closed_arg = arg;
    td_wk_local_detach(p->local);
    td_wk_destroy(p->wk);   /* no more requests */
    p->wk = NULL;
    p->closing = 1;
    /* The engine cancels what it runs; on_finish queues nothing now (wk is
     * gone, and cancelled jobs are not shipped). */
    for (pjob *j = p->jobs; j; j = j->next)
        j->cancelled = true;
    td_engine_destroy(p->engine, closed_one, p);
    pthread_mutex_lock(&p->u.mu);
    p->stop = true;
    pthread_cond_signal(&p->u.cv);
    pthread_mutex_unlock(&p->u.mu);
    td_wk_ucx_join(&p->u);
    td_mbox_destroy(p->shipped);  /* delivers the shipper's last results */
    td_wk_ucx_fini(&p->u);
}
