/* The decode worker (decode/decode.h).
 *
 * A request's life, and who owns it when:
 *   loop:     DecodeRequest -> job, OPEN command to the receiver
 *   receiver: registers the buffer, fills the ticket, posts the job back
 *   loop:     KvTicket to the router; job waits (the receiver polls it)
 *   receiver: completion verified (or refused, or timed out): posts it back
 *   loop:     submits it to the engine, which reads the state and releases
 *             the buffer (a CLOSE command); tokens go to the router
 * A job is in exactly one place at a time, so nothing is freed twice. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "worker/arena.h"
#include "decode/decode.h"
#include "engine/engine.h"
#include "model/state.h"
#include "transport/ctl/mailbox.h"
#include "transport/xfer/xfer.h"
#include "worker/local.h"
#include "worker/prefix.h"
#include "worker/ucx_thread.h"
#include "worker/worker.h"

typedef enum { PH_OPENED, PH_ARRIVED } phase;

typedef struct djob {
    struct djob *next;
    td_decode *d;
    uint64_t rid, eid;
    uint64_t prompt_tokens;
    int32_t *prompt;             /* the ids, when the router sent them: keys the prefix cache */
    uint32_t max_tokens;
    td_router_sampling sampling;
    int32_t *stop_ids;
    td_router_constraint_copy cons;     /* the constraint (SamplingParams), copied */
    size_t n_stop;
    char *session_id;
    size_t reserve;              /* state bytes held for it */
    uint64_t t_ticket;           /* uv_hrtime when the ticket went out */
    uint64_t index;              /* next token's position in the completion */
    bool cancelled, in_engine;
    phase ph;                    /* what the receiver posted last */
    /* receiver side */
    td_xfer_recv *recv;
    bool in_arena;               /* recv sits in the registered region at arena_off */
    size_t arena_off;
    int64_t deadline_ms;
    td_xfer_desc got;
    td_err err;
    char msg[256];
    uint8_t *ticket;
    size_t ticket_len;
} djob;

typedef enum { CMD_OPEN, CMD_CANCEL, CMD_CLOSE } cmd_kind;
typedef struct cmd {
    struct cmd *next;
    cmd_kind kind;
    djob *job;
    td_xfer_recv *recv;          /* CMD_CLOSE: what to close, copied from the job */
    bool in_arena;
    size_t off, len;
} cmd;

struct td_decode {
    td_decode_opts o;
    uv_loop_t *loop;
    td_engine *engine;
    td_router_engine ei;
    td_wk *wk;
    td_wk_local *local;          /* PrefillRequests: the whole answer here (no prefill worker) */
    td_mbox *events;             /* receiver -> loop */
    djob *jobs;                  /* loop: every job it owns or lent out */
    uint64_t kv_used;
    uint64_t fingerprint;
    /* /metrics (loop thread) */
    uint64_t m_tokens, m_transfers, m_transfer_failures, m_transfer_bytes;
    td_prom_hist m_kv_wait;
    /* receiver thread */
    td_wk_ucx u;                 /* the UCX thread; u.mu guards what follows */
    cmd *cmds, *cmds_tail;       /* under mu */
    bool stop;                   /* under mu */
    djob *pending;               /* receiver only: waiting for their state */
    td_xfer_region *region;      /* receiver only: registered once for all states */
    td_arena *arena;             /* receiver only: its free space */
    void (*on_closed)(void *);
    void *closed_arg;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Queues a command for the receiver (any thread). */
static void push(td_decode *d, cmd c)
{
    cmd *p = malloc(sizeof *p);
    if (!p) {
        td_log(TD_LOG_ERROR, "decode: out of memory queueing a receiver command%s",
               c.kind == CMD_CLOSE ? " (a buffer leaks)" : "");
        return;
    }
    *p = c;
    pthread_mutex_lock(&d->u.mu);
    if (d->cmds_tail)
        d->cmds_tail->next = p;
    else
        d->cmds = p;
    d->cmds_tail = p;
    pthread_cond_signal(&d->u.cv);
    pthread_mutex_unlock(&d->u.mu);
}

static void push_cmd(td_decode *d, cmd_kind kind, djob *j)
{
    push(d, (cmd){.kind = kind, .job = j});
}

/* Asks the receiver to close j's buffer; j may be gone by the time it
 * runs, so the command carries what it needs. */
static void push_close(td_decode *d, djob *j)
{
    push(d, (cmd){.kind = CMD_CLOSE, .recv = j->recv, .in_arena = j->in_arena,
                  .off = j->arena_off, .len = j->reserve});
}

/* ---- receiver thread -------------------------------------------------------------- */

static void close_recv(td_decode *d, td_xfer_recv *r, bool in_arena, size_t off, size_t len)
{
    td_xfer_recv_close(r);
    if (in_arena)
        td_arena_free(d->arena, off, len);
}

/* One region for every state in flight; without it (UCX could not
 * allocate it) each transfer registers its own buffer. */
static void open_region(td_decode *d)
{
    size_t n = d->o.kv_region_bytes;
    char err[256];
    if (!n)
        return;
    if (td_xfer_region_create(d->u.xfer, NULL, n, &d->region, err, sizeof err) ||
        td_arena_create(&d->arena, n)) {
        td_log(TD_LOG_WARN, "decode: no registered KV region (%s): a buffer per transfer", err);
        td_xfer_region_destroy(d->region);
        d->region = NULL;
        return;
    }
    td_log(TD_LOG_INFO, "decode: KV receive region of %zu MiB registered", n >> 20);
}

static void post(td_decode *d, djob *j, phase ph)
{
    j->ph = ph;
    if (td_mbox_post(d->events, j))
        td_log(TD_LOG_ERROR, "decode: request %llu: result lost (stopping)",
               (unsigned long long)j->rid);
}

static void open_recv(td_decode *d, djob *j)
{
    td_xfer_desc expect = {.transfer_id = j->rid, .layout_version = TD_V4_STATE_LAYOUT,
                           .fingerprint = d->fingerprint, .tokens = j->prompt_tokens,
                           .total_bytes = j->reserve};
    const void *t;
    size_t tl;
    if (d->arena && td_arena_alloc(d->arena, j->reserve, &j->arena_off) == TD_OK) {
        j->err = td_xfer_recv_open_at(d->u.xfer, j->rid, d->region, j->arena_off, j->reserve,
                                      &expect, &j->recv, j->msg, sizeof j->msg);
        if (j->err)
            td_arena_free(d->arena, j->arena_off, j->reserve);
        else
            j->in_arena = true;
    } else {  /* the region is full (or absent): a buffer of its own */
        j->err = td_xfer_recv_open(d->u.xfer, j->rid, NULL, j->reserve, &expect, &j->recv,
                                   j->msg, sizeof j->msg);
    }
    if (!j->err && !td_xfer_recv_ticket(j->recv, &t, &tl) && (j->ticket = malloc(tl))) {
        memcpy(j->ticket, t, tl);
        j->ticket_len = tl;
        j->deadline_ms = now_ms() + d->o.transfer_timeout_ms;
        j->next = d->pending;
        d->pending = j;
    } else if (!j->err) {
        j->err = TD_ENOMEM;
        snprintf(j->msg, sizeof j->msg, "out of memory for the ticket");
        close_recv(d, j->recv, j->in_arena, j->arena_off, j->reserve);
        j->recv = NULL;
        j->in_arena = false;
    }
    post(d, j, PH_OPENED);
}

static void unpend(td_decode *d, djob *j)
{
    for (djob **pp = &d->pending; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            return;
        }
}

static bool is_pending(td_decode *d, djob *j)
{
    for (djob *q = d->pending; q; q = q->next)
        if (q == j)
            return true;
    return false;
}

/* Returns whether anything moved. */
static bool poll_pending(td_decode *d)
{
    bool busy = td_xfer_progress(d->u.xfer) > 0;
    int64_t now = now_ms();
    for (djob *j = d->pending, *next; j; j = next) {
        next = j->next;
        td_err e = td_xfer_recv_poll(j->recv, &j->got, j->msg, sizeof j->msg);
        if (e == TD_EBUSY) {
            if (now < j->deadline_ms)
                continue;
            e = TD_ETIMEDOUT;
            snprintf(j->msg, sizeof j->msg, "no KV state within %d ms",
                     d->o.transfer_timeout_ms);
        }
        unpend(d, j);
        j->err = e;
        post(d, j, PH_ARRIVED);
        busy = true;
    }
    return busy;
}

static void *receiver_main(void *arg)
{
    td_decode *d = arg;
    long nap_us = 0;
    if (!td_wk_ucx_ready(&d->u))
        return NULL;
    open_region(d);
    for (;;) {
        pthread_mutex_lock(&d->u.mu);
        while (!d->stop && !d->cmds && !d->pending)
            pthread_cond_wait(&d->u.cv, &d->u.mu);
        cmd *c = d->cmds;
        d->cmds = d->cmds_tail = NULL;
        bool stop = d->stop;
        pthread_mutex_unlock(&d->u.mu);
        while (c) {
            cmd *next = c->next;
            if (c->kind == CMD_OPEN) {
                open_recv(d, c->job);
            } else if (c->kind == CMD_CANCEL) {
                if (is_pending(d, c->job)) {
                    unpend(d, c->job);
                    c->job->err = TD_ECLOSED;
                    snprintf(c->job->msg, sizeof c->job->msg, "cancelled");
                    post(d, c->job, PH_ARRIVED);
                }
            } else {
                close_recv(d, c->recv, c->in_arena, c->off, c->len);
            }
            free(c);
            c = next;
        }
        if (stop)
            break;
        if (d->pending) {
            /* Puts over tcp move only while we progress, but a ticket waits
             * through the whole prefill: spin while bytes move, nap (up to
             * 1 ms) while nothing does, so waiting costs no core. */
            if (poll_pending(d))
                nap_us = 0;
            else if (d->pending) {
                nap_us = nap_us ? (nap_us < 500 ? 2 * nap_us : 1000) : 10;
                nanosleep(&(struct timespec){0, nap_us * 1000}, NULL);
            }
        }
    }
    while (d->pending) {
        djob *j = d->pending;
        d->pending = j->next;
        j->err = TD_ECLOSED;
        snprintf(j->msg, sizeof j->msg, "the decode worker is stopping");
        close_recv(d, j->recv, j->in_arena, j->arena_off, j->reserve);
        j->recv = NULL;
        post(d, j, PH_ARRIVED);
    }
    return NULL;
}

/* After the receiver stopped: close what is still asked of it. */
static void drain_cmds(td_decode *d)
{
    while (d->cmds) {
        cmd *c = d->cmds;
        d->cmds = c->next;
        if (c->kind == CMD_CLOSE)
            close_recv(d, c->recv, c->in_arena, c->off, c->len);
        free(c);
    }
    d->cmds_tail = NULL;
}

/* ---- loop thread -------------------------------------------------------------- */

static void job_free(td_decode *d, djob *j)
{
    for (djob **pp = &d->jobs; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    d->kv_used -= j->reserve;
    free(j->stop_ids);
    free(j->prompt);
    td_router_constraint_free(&j->cons);
    free(j->session_id);
    free(j->ticket);
    free(j);
}

static void fail(td_decode *d, djob *j, const char *what)
{
    if (d->wk && !j->cancelled) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s: %s", what, j->msg[0] ? j->msg : td_strerror(j->err));
        td_log(TD_LOG_ERROR, "decode: request %llu: %s", (unsigned long long)j->rid, msg);
        td_wk_send_tokens(d->wk, j->rid, j->index, NULL, 0,
                          TANDEM__CTL__FINISH_REASON__FINISH_ERROR, msg);
    }
    job_free(d, j);
}

static void release_state(void *arg)
{
    djob *j = arg;
    /* any thread (the engine's): the receiver closes the buffer */
    push_close(j->d, j);
}

static void on_token(void *arg, int32_t t)
{
    djob *j = arg;
    if (j->d->wk)
        td_wk_send_tokens(j->d->wk, j->rid, j->index, &t, 1,
                          TANDEM__CTL__FINISH_REASON__FINISH_UNSPECIFIED, NULL);
    j->index++;
    j->d->m_tokens++;
}

static void on_finish(void *arg, td_router_finish why, td_err err)
{
    djob *j = arg;
    td_decode *d = j->d;
    static const Tandem__Ctl__FinishReason map[] = {
        [TD_ROUTER_FINISH_STOP] = TANDEM__CTL__FINISH_REASON__FINISH_STOP,
        [TD_ROUTER_FINISH_LENGTH] = TANDEM__CTL__FINISH_REASON__FINISH_LENGTH,
        [TD_ROUTER_FINISH_CANCELLED] = TANDEM__CTL__FINISH_REASON__FINISH_CANCELLED,
        [TD_ROUTER_FINISH_ERROR] = TANDEM__CTL__FINISH_REASON__FINISH_ERROR,
    };
    if (d->wk)
        td_wk_send_tokens(d->wk, j->rid, j->index, NULL, 0, map[why],
                          why == TD_ROUTER_FINISH_ERROR ? td_strerror(err) : NULL);
    job_free(d, j);
}

static void start_engine(td_decode *d, djob *j)
{
    td_engine_req x = {
        .gen = {.prompt = j->prompt, .n_prompt = j->prompt_tokens, .max_tokens = j->max_tokens,
                .sampling = j->sampling, .stop_ids = j->stop_ids, .n_stop_ids = j->n_stop,
                .session_id = j->session_id,
                .constraint = td_router_constraint_of(&j->cons)},
        .state = td_xfer_recv_data(j->recv), .state_len = j->got.total_bytes,
        .first_token = j->got.first_token, .release_state = release_state, .state_arg = j,
    };
    td_router_gen_cb cb = {.on_token = on_token, .on_finish = on_finish, .arg = j};
    j->index = 1;  /* the first token came from prefill */
    j->err = td_engine_submit(d->engine, &x, &cb, &j->eid);
    if (j->err) {
        push_close(d, j);
        fail(d, j, "cannot start decoding");
        return;
    }
    j->in_engine = true;
}

static void on_event(void *arg, void *item)
{
    td_decode *d = arg;
    djob *j = item;
    if (j->ph == PH_OPENED) {
        if (j->err) {
            fail(d, j, "cannot register the KV receive buffer");
        } else if (j->cancelled || !d->wk) {
            push_cmd(d, CMD_CANCEL, j);
        } else {
            Tandem__Ctl__KvTicket kt = TANDEM__CTL__KV_TICKET__INIT;
            kt.request_id = j->rid;
            kt.ticket = (ProtobufCBinaryData){j->ticket_len, j->ticket};
            kt.capacity_bytes = j->reserve;
            td_ctl_msg env = TANDEM__CTL__ENVELOPE__INIT;
            env.body_case = TANDEM__CTL__ENVELOPE__BODY_KV_TICKET;
            env.kv_ticket = &kt;
            j->t_ticket = uv_hrtime();
            td_wk_send(d->wk, &env);
        }
        return;
    }
    /* PH_ARRIVED */
    if (j->err && !j->cancelled)
        d->m_transfer_failures++;
    if (!j->err) {
        d->m_transfers++;
        d->m_transfer_bytes += j->got.total_bytes;
        td_prom_observe(&d->m_kv_wait, (double)(uv_hrtime() - j->t_ticket) * 1e-9);
    }
    if (j->err || j->cancelled || !d->wk) {
        if (j->recv)
            push_close(d, j);
        fail(d, j, "KV state not received");
        return;
    }
    start_engine(d, j);
}

static void start(td_decode *d, const Tandem__Ctl__DecodeRequest *m)
{
    const Tandem__Ctl__SamplingParams *s = m->sampling;
    size_t need = td_engine_state_size(d->engine, (int64_t)m->prompt_tokens);
    const char *why = NULL;
    djob *j = calloc(1, sizeof *j);
    if (!j)
        why = "out of memory";
    else if (m->prompt_tokens == 0 || m->prompt_tokens + s->max_tokens >
                                          (uint64_t)d->ei.context_len(d->ei.ctx))
        why = "prompt + max_tokens exceed the context";
    else if (d->kv_used + need > d->o.kv_capacity)
        why = "KV capacity exhausted";
    if (!why && !(j->stop_ids = malloc((s->n_stop_token_ids + 1) * sizeof *j->stop_ids)))
        why = "out of memory";
    if (!why && m->session_id && m->session_id[0] && !(j->session_id = strdup(m->session_id)))
        why = "out of memory";
    if (!why && m->n_prompt && !(j->prompt = malloc(m->n_prompt * sizeof *j->prompt)))
        why = "out of memory";
    if (why) {
        if (j) {
            free(j->prompt);
            free(j->session_id);
            free(j->stop_ids);
            free(j);
        }
        td_wk_send_tokens(d->wk, m->request_id, 0, NULL, 0,
                          TANDEM__CTL__FINISH_REASON__FINISH_ERROR, why);
        return;
    }
    j->d = d;
    j->rid = m->request_id;
    j->prompt_tokens = m->prompt_tokens;
    if (j->prompt)
        memcpy(j->prompt, m->prompt, m->n_prompt * sizeof *j->prompt);
    j->max_tokens = s->max_tokens;
    j->sampling = (td_router_sampling){.temperature = s->temperature, .top_p = s->top_p,
                                       .top_k = (int)s->top_k, .seed = s->seed};
    memcpy(j->stop_ids, s->stop_token_ids, s->n_stop_token_ids * sizeof *j->stop_ids);
    td_router_constraint k = td_wk_constraint(s);
    if (td_router_constraint_dup(&j->cons, &k))
        td_log(TD_LOG_ERROR, "decode: request %llu: out of memory for its constraint",
               (unsigned long long)j->rid);
    j->n_stop = s->n_stop_token_ids;
    j->reserve = need;
    d->kv_used += need;
    j->next = d->jobs;
    d->jobs = j;
    push_cmd(d, CMD_OPEN, j);
}

static djob *find(td_decode *d, uint64_t rid)
{
    for (djob *j = d->jobs; j; j = j->next)
        if (j->rid == rid)
            return j;
    return NULL;
}

static void on_msg(void *arg, td_ctl_msg *m)
{
    td_decode *d = arg;
    djob *j;
    switch (m->body_case) {
    case TANDEM__CTL__ENVELOPE__BODY_DECODE:
        start(d, m->decode);
        break;
    case TANDEM__CTL__ENVELOPE__BODY_PREFILL:
        if (m->prefill->kv_ticket.len)
            td_log(TD_LOG_WARN, "decode: a prefill request with a ticket ignored");
        else
            td_wk_local_start(d->local, m->prefill);
        break;
    case TANDEM__CTL__ENVELOPE__BODY_CANCEL:
        if (td_wk_local_cancel(d->local, m->cancel->request_id))
            break;
        if ((j = find(d, m->cancel->request_id)) && !j->cancelled) {
            j->cancelled = true;
            if (j->in_engine)
                d->ei.cancel(d->ei.ctx, j->eid);
            else
                push_cmd(d, CMD_CANCEL, j);
        }
        break;
    case TANDEM__CTL__ENVELOPE__BODY_PAUSE:
        if (td_wk_local_pause(d->local, m->pause->request_id, m->pause->paused))
            break;
        if ((j = find(d, m->pause->request_id)) && j->in_engine)
            d->ei.pause(d->ei.ctx, j->eid, m->pause->paused);
        break;
    case TANDEM__CTL__ENVELOPE__BODY_DRAIN:
        td_wk_set_draining(d->wk, true);
        break;
    default:
        td_log(TD_LOG_WARN, "decode: control message %d ignored", (int)m->body_case);
    }
    td_ctl_free(m);
}

static void load(void *arg, Tandem__Ctl__Heartbeat *hb)
{
    td_decode *d = arg;
    td_router_load l = {0};
    d->ei.load(d->ei.ctx, &l);
    hb->running = (uint32_t)l.running;
    hb->waiting = (uint32_t)l.waiting;
    hb->kv_free_bytes = d->kv_used < d->o.kv_capacity ? d->o.kv_capacity - d->kv_used : 0;
}

static void metrics(void *arg, td_prom_buf *b)
{
    td_decode *d = arg;
    td_router_load l = {0};
    d->ei.load(d->ei.ctx, &l);
    td_prom_counter(b, "tandem_generation_tokens_total",
                    "Tokens generated here (the first comes from prefill).", d->m_tokens);
    td_prom_counter(b, "tandem_kv_transfers_total", "KV states received and verified.",
                    d->m_transfers);
    td_prom_counter(b, "tandem_kv_transfer_failures_total",
                    "KV states refused or not received in time.", d->m_transfer_failures);
    td_prom_counter(b, "tandem_kv_transfer_bytes_total", "Bytes of KV state received.",
                    d->m_transfer_bytes);
    td_prom_histogram(b, "tandem_kv_wait_seconds",
                      "From the ticket to a verified state: prefill plus transfer.",
                      &d->m_kv_wait);
    td_prom_gauge(b, "tandem_num_requests_running", "Requests in the decode batch.",
                  (double)l.running);
    td_prom_gauge(b, "tandem_num_requests_waiting",
                  "Requests with their state here, waiting for the batch.", (double)l.waiting);
    td_prom_gauge(b, "tandem_kv_bytes_in_use", "KV state bytes reserved or held.",
                  (double)d->kv_used);
    td_prom_gauge(b, "tandem_kv_capacity_bytes", "KV state bytes this worker may hold.",
                  (double)d->o.kv_capacity);
    td_wk_prom_engine(b, d->engine);
}

static void on_loaded(void *arg, const char *why)
{
    td_decode *d = arg;
    char err[512] = "";
    d->fingerprint = why ? 0 : td_engine_fingerprint(d->engine);
    td_wk_opts wo = {
        .worker_id = d->o.worker_id, .role = TANDEM__CTL__ROLE__ROLE_DECODE,
        .router_url = d->o.router_url, .listen_url = d->o.listen_url,
        .heartbeat_ms = d->o.heartbeat_ms, .fingerprint = d->fingerprint,
        .layout_version = TD_V4_STATE_LAYOUT, .max_batch = (uint32_t)d->o.max_batch,
        .max_context = (uint64_t)d->ei.context_len(d->ei.ctx),
        .kv_capacity_bytes = d->o.kv_capacity,
        .on_msg = on_msg, .load = load, .arg = d,
        .metrics_host = d->o.metrics_host, .metrics_port = d->o.metrics_port,
        .metrics = metrics,
    };
    td_err e = td_wk_ucx_bring_up(&d->u, why, receiver_main, d, d->loop, &wo, &d->wk, err,
                                  sizeof err);
    if (!e && td_wk_local_create(&d->local, d->wk, d->engine))
        e = td_errf(err, sizeof err, TD_ENOMEM, "out of memory");
    if (d->o.on_ready)
        d->o.on_ready(d->o.arg, e ? err : NULL);
}

/* A conversation's state kept (or dropped) at its end: tell the router. */
static void on_cache(void *arg, bool stored, const int32_t *tokens, size_t n)
{
    td_decode *d = arg;
    td_wk_kv_event(d->wk, stored, tokens, n);
}

td_err td_decode_create(td_decode **out, uv_loop_t *loop, const td_decode_opts *o,
                        char *err, size_t errlen)
{
    td_decode *d = calloc(1, sizeof *d);
    if (!d)
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    d->o = *o;
    if (!d->o.max_batch)
        d->o.max_batch = 16;
    if (!d->o.transfer_timeout_ms)
        d->o.transfer_timeout_ms = 600000;
    if (!d->o.kv_capacity)
        d->o.kv_capacity = 8ull << 30;
    if (d->o.kv_region_bytes < 0)
        d->o.kv_region_bytes = 0;
    else if (!d->o.kv_region_bytes)
        d->o.kv_region_bytes = d->o.kv_capacity < (1ull << 30) ? d->o.kv_capacity : 1ull << 30;
    d->loop = loop;
    td_wk_ucx_init(&d->u, o->ucx_peer_errors);
    td_err e = td_mbox_create(&d->events, loop, on_event, d);
    if (e) {
        free(d);
        return td_errf(err, errlen, e, "cannot create a mailbox");
    }
    td_engine_opts eo = {.model_dir = o->model_dir, .max_batch = d->o.max_batch,
                         .nthreads = o->nthreads,
                         .max_context = o->max_context, .on_loaded = on_loaded, .arg = d,
                         .prefix_cache_bytes = o->prefix_cache_bytes,
                         .kv_store_dir = o->kv_store_dir, .kv_store_bytes = o->kv_store_bytes,
                         .kv_spill_idle_ms = o->kv_spill_idle_ms,
                         .kv_store_peers = o->kv_store_peers,
                         .kv_range_tokens = o->kv_range_tokens, .on_cache = on_cache};
    e = td_engine_create(&d->engine, loop, &eo, err, errlen);
    if (e) {
        td_mbox_destroy(d->events);
        free(d);
        return e;
    }
    d->ei = td_engine_interface(d->engine);
    *out = d;
    return TD_OK;
}

static bool idle(void *arg)
{
    td_decode *d = arg;
    return d->jobs == NULL && td_wk_local_running(d->local) == 0;
}

void td_decode_drain(td_decode *d, void (*cb)(void *arg), void *arg)
{
    if (d->wk)
        td_wk_drain(d->wk, idle, cb, arg);
    else
        cb(arg);
}

static void engine_closed(void *arg)
{
    td_decode *d = arg;
    void (*cb)(void *) = d->on_closed;
    void *cbarg = d->closed_arg;
    while (d->jobs)
        job_free(d, d->jobs);
    td_wk_local_destroy(d->local);
    free(d);
    if (cb)
        cb(cbarg);
}

void td_decode_destroy(td_decode *d, void (*cb)(void *arg), void *arg)
{
    d->on_closed = cb;
    d->closed_arg = arg;
    td_wk_local_detach(d->local);
    td_wk_destroy(d->wk);
    d->wk = NULL;
    /* The engine cancels its requests and releases their buffers (CLOSE
     * commands the receiver runs before it stops). */
    td_engine_destroy(d->engine, engine_closed, d);
    pthread_mutex_lock(&d->u.mu);
    d->stop = true;
    pthread_cond_signal(&d->u.cv);
    pthread_mutex_unlock(&d->u.mu);
    td_wk_ucx_join(&d->u);
    drain_cmds(d);
    td_mbox_destroy(d->events);   /* the receiver's last posts: jobs freed */
    drain_cmds(d);
    td_xfer_region_destroy(d->region);  /* every recv in it is closed now */
    td_arena_destroy(d->arena);
    td_wk_ucx_fini(&d->u);
}
