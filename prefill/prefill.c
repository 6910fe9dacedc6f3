/* The prefill worker (prefill/prefill.h).
 *
 * A request's life, overlapped: on the PrefillRequest the shipper thread
 * connects to the decode worker and registers the state buffer (OPEN)
 * while the engine prefills; in the prompt's last chunk each layer's
 * section is put as soon as the forward pass has finished that layer
 * (SECTION, from the engine thread), so the transfer runs under the
 * remaining layers' compute; after the first token is sampled the rest
 * (header, MTP sections, checksum) goes, then the completion and the
 * receiver's verdict (FINISH) -> KvReady to the router. A first token that
 * is a stop id, an error or a cancel ends the transfer (ABORT). Requests
 * without a ticket are answered whole here (worker/local.c). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "engine/engine.h"
#include "model/state.h"
#include "prefill/prefill.h"
#include "transport/ctl/mailbox.h"
#include "transport/xfer/xfer.h"
#include "worker/arena.h"
#include "worker/local.h"
#include "worker/prefix.h"
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
    void *state;                 /* the whole state's buffer, written layer by layer */
    size_t state_len;
    size_t state_cap;            /* what was allocated for it */
    bool in_region;              /* state lies in p->state_mem at region_off */
    size_t region_off;
    bool cancelled;
    bool in_engine;
    uint64_t cached;             /* prompt tokens the prefix cache served */
    td_router_finish why;        /* how the engine ended it */
    td_err err;
    uint64_t t_arrived;          /* uv_hrtime at the PrefillRequest */
    double ship_seconds;         /* end of prefill to the receiver's verdict */
    /* shipper only */
    td_xfer_peer *xp;
    td_xfer_send *send;
    size_t sec_lo, sec_hi;       /* the span of the sections put early */
    bool lost_section;           /* under mu: a SECTION could not be queued */
    /* shipper's result */
    td_err ship_err;
    uint64_t checksum;
    char msg[256];
} pjob;

/* What the shipper thread is asked, in order. */
typedef enum { S_OPEN, S_SECTION, S_FINISH, S_ABORT } scmd_kind;
typedef struct scmd {
    struct scmd *next;
    scmd_kind kind;
    pjob *j;
    size_t off, len;
} scmd;

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
    pjob *jobs;                  /* every live job (engine or shipper) */
    int running;                 /* len(jobs) */
    /* /metrics (loop thread) */
    uint64_t m_requests, m_prompt_tokens, m_transfers, m_transfer_failures, m_transfer_bytes;
    uint64_t m_state_bytes;      /* states held for the shipper */
    td_prom_hist m_prefill, m_transfer;
    uint64_t fingerprint;
    /* States are saved into one buffer that the shipper registers with UCX
     * once (state_region), so no transfer maps memory; the loop thread
     * places them (state_arena). A state that does not fit gets its own
     * buffer, registered for its transfer. */
    uint8_t *state_mem;
    size_t state_mem_size;
    td_arena *state_arena;       /* loop thread */
    td_xfer_region *state_region; /* shipper only; NULL: not registered */
    /* shipper thread */
    td_wk_ucx u;                 /* the UCX thread; u.mu guards what follows */
    scmd *queue, *queue_tail;    /* under mu */
    bool stop;                   /* under mu */
    peer *peers;                 /* shipper only */
    int active;                  /* shipper only: sends open */
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

/* Any thread. A lost SECTION only costs its early start: FINISH then puts
 * the whole buffer. */
static void push(td_prefill *p, scmd_kind kind, pjob *j, size_t off, size_t len)
{
    scmd *c = malloc(sizeof *c);
    pthread_mutex_lock(&p->u.mu);
    if (!c) {
        if (kind == S_SECTION)
            j->lost_section = true;
        else
            td_log(TD_LOG_ERROR, "prefill: out of memory queueing a transfer step");
    } else {
        *c = (scmd){.kind = kind, .j = j, .off = off, .len = len};
        if (p->queue_tail)
            p->queue_tail->next = c;
        else
            p->queue = c;
        p->queue_tail = c;
        pthread_cond_signal(&p->u.cv);
    }
    pthread_mutex_unlock(&p->u.mu);
}

static void fail(pjob *j, td_err e)
{
    if (!j->ship_err)
        j->ship_err = e;
}

static void s_open(td_prefill *p, pjob *j)
{
    if (!(j->xp = peer_for(p, j->daddr, j->daddr_len, j->msg, sizeof j->msg))) {
        fail(j, TD_EIO);
        return;
    }
    td_err e = j->in_region && p->state_region
                   ? td_xfer_send_open_at(j->xp, j->ticket, j->ticket_len, p->state_region,
                                          j->region_off, j->state_len, &j->send, j->msg,
                                          sizeof j->msg)
                   : td_xfer_send_open(j->xp, j->ticket, j->ticket_len, j->state, j->state_len,
                                       &j->send, j->msg, sizeof j->msg);
    if (e)
        fail(j, e);
    else
        p->active++;
}

static void s_section(pjob *j, size_t off, size_t len)
{
    if (!j->send || j->ship_err)
        return;
    td_err e = td_xfer_send_section(j->send, off, len, NULL);
    if (e) {
        snprintf(j->msg, sizeof j->msg, "queueing a put: %s", td_strerror(e));
        fail(j, e);
        return;
    }
    if (j->sec_hi == 0 || off < j->sec_lo)
        j->sec_lo = off;
    if (off + len > j->sec_hi)
        j->sec_hi = off + len;
}

static void s_close(td_prefill *p, pjob *j)
{
    if (j->send) {
        td_xfer_send_close(j->send);
        j->send = NULL;
        p->active--;
    }
    if (j->ship_err && j->ship_err != TD_ECORRUPT && j->ship_err != TD_EFORMAT && j->xp)
        forget_peer(p, j->xp);  /* it may be gone: connect afresh next time */
    j->xp = NULL;
}

static void s_finish(td_prefill *p, pjob *j)
{
    uint64_t t0 = uv_hrtime();
    pthread_mutex_lock(&p->u.mu);
    bool all = j->lost_section || j->sec_hi == 0;
    pthread_mutex_unlock(&p->u.mu);
    /* What the layer hooks did not cover: the header, the MTP sections and
     * the checksum (all of it if a section was lost). */
    if (all) {
        s_section(j, 0, j->state_len);
    } else {
        s_section(j, 0, j->sec_lo);
        s_section(j, j->sec_hi, j->state_len - j->sec_hi);
    }
    if (j->send && !j->ship_err) {
        /* The checksum comes from the sections' own, hashed as each was
         * put (the layers' while the engine computed the next ones), so no
         * pass over the whole state is left for this point. */
        td_xfer_desc d = {.transfer_id = j->rid, .layout_version = TD_V4_STATE_LAYOUT,
                          .fingerprint = p->fingerprint, .tokens = j->ntok,
                          .total_bytes = j->state_len, .first_token = j->first};
        fail(j, td_xfer_send_finish(j->send, &d, p->o.lease_ms, j->msg, sizeof j->msg));
        j->checksum = d.checksum;
    } else if (!j->ship_err) {
        fail(j, TD_EIO);
    }
    s_close(p, j);
    j->ship_seconds = (double)(uv_hrtime() - t0) * 1e-9;
}

static void shipped(td_prefill *p, pjob *j)
{
    if (td_mbox_post(p->shipped, j))
        td_log(TD_LOG_ERROR, "prefill: request %llu: result lost (stopping)",
               (unsigned long long)j->rid);
}

/* Registers the state buffer once, before the first OPEN is taken from
 * the queue; without it each transfer registers its own state. */
static void register_states(td_prefill *p)
{
    char err[256];
    if (!p->state_mem)
        return;
    if (td_xfer_region_create(p->u.xfer, p->state_mem, p->state_mem_size, &p->state_region,
                              err, sizeof err)) {
        td_log(TD_LOG_WARN, "prefill: state buffer not registered (%s): a registration per "
               "transfer", err);
        p->state_region = NULL;
        return;
    }
    td_log(TD_LOG_INFO, "prefill: state buffer of %zu MiB registered", p->state_mem_size >> 20);
}

static void *shipper_main(void *arg)
{
    td_prefill *p = arg;
    if (!td_wk_ucx_ready(&p->u))
        return NULL;
    register_states(p);
    for (;;) {
        pthread_mutex_lock(&p->u.mu);
        while (!p->stop && !p->queue && !p->active)
            pthread_cond_wait(&p->u.cv, &p->u.mu);
        scmd *c = p->queue;
        if (c) {
            p->queue = c->next;
            if (!p->queue)
                p->queue_tail = NULL;
        }
        bool stop = p->stop;
        pthread_mutex_unlock(&p->u.mu);
        if (!c) {
            if (stop)
                break;
            /* Sends are open and waiting for more sections: keep their puts
             * moving (tcp moves only while we progress), nap when idle. */
            if (!td_xfer_progress(p->u.xfer))
                nanosleep(&(struct timespec){0, 100000}, NULL);
            continue;
        }
        pjob *j = c->j;
        if (stop && c->kind != S_SECTION) {
            fail(j, TD_ECLOSED);
            snprintf(j->msg, sizeof j->msg, "the prefill worker is stopping");
        }
        switch (c->kind) {
        case S_OPEN:
            if (!stop)
                s_open(p, j);
            break;
        case S_SECTION:
            if (!stop)
                s_section(j, c->off, c->len);
            break;
        case S_FINISH:
            if (!stop)
                s_finish(p, j);
            s_close(p, j);
            shipped(p, j);
            break;
        case S_ABORT:
            s_close(p, j);
            shipped(p, j);
            break;
        }
        free(c);
    }
    while (p->peers)
        forget_peer(p, p->peers->xp);
    td_xfer_region_destroy(p->state_region);
    p->state_region = NULL;
    return NULL;
}

/* ---- loop thread -------------------------------------------------------------- */

static void job_free(pjob *j)
{
    free(j->ticket);
    free(j->daddr);
    if (j->in_region)
        td_arena_free(j->p->state_arena, j->region_off, j->state_cap);
    else
        free(j->state);
    free(j);
}

/* Loop thread: room for a state, in the registered buffer if it fits. */
static bool state_alloc(td_prefill *p, pjob *j)
{
    j->state_cap = j->state_len;
    if (p->state_arena && td_arena_alloc(p->state_arena, j->state_cap, &j->region_off) == TD_OK) {
        j->in_region = true;
        j->state = p->state_mem + j->region_off;
        return true;
    }
    return (j->state = malloc(j->state_cap)) != NULL;
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
    unlink_job(p, j);
    p->running--;
    p->m_state_bytes -= j->state_len;
    bool shipping = j->why == TD_ROUTER_FINISH_LENGTH && !j->cancelled;
    if (shipping && j->ship_err) {
        p->m_transfer_failures++;
    } else if (shipping) {
        p->m_transfers++;
        p->m_transfer_bytes += j->state_len;
        td_prom_observe(&p->m_transfer, j->ship_seconds);
    }
    if (j->cancelled || !p->wk) {
        /* the router has moved on, or we are stopping */
    } else if (!shipping) {
        /* the engine ended it before there was anything to ship */
        td_wk_send_tokens(p->wk, j->rid, 0, NULL, 0,
                          j->why == TD_ROUTER_FINISH_STOP ? TANDEM__CTL__FINISH_REASON__FINISH_STOP
                          : j->why == TD_ROUTER_FINISH_CANCELLED
                              ? TANDEM__CTL__FINISH_REASON__FINISH_CANCELLED
                              : TANDEM__CTL__FINISH_REASON__FINISH_ERROR,
                          j->why == TD_ROUTER_FINISH_ERROR ? td_strerror(j->err) : NULL);
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
        kr.cached_tokens = j->cached;
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

/* Loop thread: the sealed state, in our own buffer. */
static void on_state(void *arg, void *state, size_t len)
{
    pjob *j = arg;
    (void)state;
    j->state_len = len;
}

/* ENGINE thread, mid-forward: layer l's section is final. */
static void on_section(void *arg, size_t off, size_t len)
{
    pjob *j = arg;
    push(j->p, S_SECTION, j, off, len);
}

static void on_cached(void *arg, size_t n) { ((pjob *)arg)->cached = n; }

static void on_finish(void *arg, td_router_finish why, td_err err)
{
    pjob *j = arg;
    j->in_engine = false;
    j->why = why;
    j->err = err;
    /* The shipper has the buffer registered: it ends the transfer and hands
     * the job back (on_shipped) either way. */
    push(j->p, why == TD_ROUTER_FINISH_LENGTH && !j->cancelled ? S_FINISH : S_ABORT, j, 0, 0);
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
    j->state_len = td_engine_state_size(p->engine, (int64_t)m->n_token_ids);
    if (!state_alloc(p, j)) {
        td_wk_send_tokens(p->wk, j->rid, 0, NULL, 0, TANDEM__CTL__FINISH_REASON__FINISH_ERROR,
                          "out of memory for the state");
        job_free(j);
        return;
    }
    j->next = p->jobs;
    p->jobs = j;
    p->running++;
    p->m_state_bytes += j->state_len;
    push(p, S_OPEN, j, 0, 0);  /* connect and register while the engine prefills */
    const Tandem__Ctl__SamplingParams *s = m->sampling;
    td_engine_req x = {
        .gen = {.prompt = m->token_ids, .n_prompt = m->n_token_ids, .max_tokens = 1,
                .sampling = {.temperature = s->temperature, .top_p = s->top_p,
                             .top_k = (int)s->top_k, .seed = s->seed},
                .stop_ids = s->stop_token_ids, .n_stop_ids = s->n_stop_token_ids,
                .session_id = m->session_id && m->session_id[0] ? m->session_id : NULL,
                .constraint = td_wk_constraint(s)},
        .on_state = on_state,
        .state_buf = j->state,
        .state_cap = j->state_cap,
        .on_section = on_section,
    };
    td_router_gen_cb cb = {.on_token = on_token, .on_finish = on_finish,
                           .on_cached = on_cached, .arg = j};
    td_err e = td_engine_submit(p->engine, &x, &cb, &j->eid);
    if (e) {
        j->why = TD_ROUTER_FINISH_ERROR;
        j->err = e;
        push(p, S_ABORT, j, 0, 0);
        return;
    }
    j->in_engine = true;
}

static void cancel(td_prefill *p, uint64_t rid)
{
    if (td_wk_local_cancel(p->local, rid))
        return;
    for (pjob *j = p->jobs; j; j = j->next)
        if (j->rid == rid) {
            j->cancelled = true;  /* past the engine: the shipper ends it */
            if (j->in_engine)
                p->ei.cancel(p->ei.ctx, j->eid);
            return;
        }
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

static void on_cache(void *arg, bool stored, const int32_t *tokens, size_t n)
{
    td_prefill *p = arg;
    td_wk_kv_event(p->wk, stored, tokens, n);
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
    td_wk_prom_engine(b, p->engine);
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
    if (!p->o.state_region_bytes)
        p->o.state_region_bytes = 256 << 20;
    if (p->o.state_region_bytes > 0) {
        /* Untouched until states are written: address space, not memory. */
        p->state_mem_size = (size_t)p->o.state_region_bytes & ~(size_t)(TD_ARENA_ALIGN - 1);
        p->state_mem = aligned_alloc(TD_ARENA_ALIGN, p->state_mem_size);
        if (!p->state_mem || td_arena_create(&p->state_arena, p->state_mem_size)) {
            td_log(TD_LOG_WARN, "prefill: no %zu-byte state buffer: a buffer per state",
                   p->state_mem_size);
            free(p->state_mem);
            p->state_mem = NULL;
            p->state_arena = NULL;
        }
    }
    p->loop = loop;
    td_wk_ucx_init(&p->u, o->ucx_peer_errors);
    td_err e = td_mbox_create(&p->shipped, loop, on_shipped, p);
    if (e) {
        td_arena_destroy(p->state_arena);
        free(p->state_mem);
        free(p);
        return td_errf(err, errlen, e, "cannot create a mailbox");
    }
    td_engine_opts eo = {.model_dir = o->model_dir, .max_batch = p->o.max_batch,
                         .prefill_budget = o->prefill_budget, .nthreads = o->nthreads,
                         .max_context = o->max_context,
                         .prefix_cache_bytes = o->prefix_cache_bytes, .on_cache = on_cache,
                         .kv_store_dir = o->kv_store_dir, .kv_store_bytes = o->kv_store_bytes,
                         .kv_spill_idle_ms = o->kv_spill_idle_ms,
                         .kv_store_peers = o->kv_store_peers,
                         .kv_range_tokens = o->kv_range_tokens,
                         .on_loaded = on_loaded, .arg = p};
    e = td_engine_create(&p->engine, loop, &eo, err, errlen);
    if (e) {
        td_mbox_destroy(p->shipped);
        td_arena_destroy(p->state_arena);
        free(p->state_mem);
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
    /* The engine is done writing states, the shipper done sending them. */
    td_arena_destroy(p->state_arena);
    free(p->state_mem);
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
