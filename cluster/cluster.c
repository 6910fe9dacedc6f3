/* The router's side of disaggregated serving (cluster/cluster.h).
 *
 * A request's placement ("attempt") has its own wire id, so a late message
 * from an abandoned attempt (a retry after a worker died) never lands in the
 * new one. Phases of an attempt:
 *   TICKET   DecodeRequest sent; waiting for the decode worker's KvTicket
 *   PREFILL  PrefillRequest sent (with the ticket); waiting for KvReady
 *   DECODE   first token delivered; TokenChunks stream from decode
 * Decode may start sending tokens before KvReady reaches us (two sockets):
 * those wait in `early` until the first token is out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/internal.h"
#include "common/log.h"
#include "proto/blockhash.h"

/* ---- workers ---------------------------------------------------------------------- */

static td_err send_to(wkr *w, td_ctl_msg *m)
{
    char err[256];
    td_err e = td_ctl_out_send(w->out, m, err, sizeof err);
    if (e)
        td_log(TD_LOG_WARN, "cluster: to worker %s: %s", w->id, err);
    return e;
}

static void send_cancel(wkr *w, uint64_t wire)
{
    if (!w)
        return;
    Tandem__Ctl__Cancel cm = TANDEM__CTL__CANCEL__INIT;
    cm.request_id = wire;
    td_ctl_msg env = TANDEM__CTL__ENVELOPE__INIT;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_CANCEL;
    env.cancel = &cm;
    send_to(w, &env);
}

/* ---- requests ----------------------------------------------------------------------- */

static void creq_free(creq *r)
{
    free(r->chain);
    td_router_constraint_free(&r->cons);
    free(r->prompt);
    free(r->stops);
    free(r->session);
    free(r->early);
    free(r);
}

/* Ends the current attempt: the workers forget it (cancel), counts drop. */
static void release_attempt(creq *r, bool tell)
{
    if (tell) {
        send_cancel(r->P, r->wire);
        send_cancel(r->D, r->wire);
    }
    if (r->P)
        r->P->assigned--;
    if (r->D)
        r->D->assigned--;
    r->P = r->D = NULL;
    r->wire = 0;
    r->n_early = 0;
    r->early_finish = 0;
}

static void finish(td_cluster *c, creq *r, td_router_finish why, td_err err, bool tell)
{
    for (creq **pp = &c->reqs; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    release_attempt(r, tell);
    td_router_gen_cb cb = r->cb;
    creq_free(r);
    cb.on_finish(cb.arg, why, err);
}

static void fill_sampling(const creq *r, Tandem__Ctl__SamplingParams *sp, int64_t max_tokens)
{
    sp->temperature = r->s.temperature;
    sp->top_p = r->s.top_p;
    sp->top_k = (uint32_t)(r->s.top_k > 0 ? r->s.top_k : 0);
    sp->seed = r->s.seed;
    sp->max_tokens = (uint32_t)max_tokens;
    sp->stop_token_ids = r->stops;
    sp->n_stop_token_ids = r->n_stop;
    sp->json = r->cons.json_schema != NULL;
    sp->json_schema = r->cons.json_schema ? r->cons.json_schema : "";
    sp->tools = r->cons.tools ? r->cons.tools : "";
    sp->force_name = r->cons.force_name ? r->cons.force_name : "";
    sp->single_call = r->cons.single;
    sp->thinking = r->cons.thinking;
}

/* With a ticket: prefill only, the state goes to r->D. Without: the whole
 * answer on r->P (colocated), streamed from index 0. */
static td_err send_prefill(creq *r, const ProtobufCBinaryData *ticket)
{
    Tandem__Ctl__SamplingParams sp = TANDEM__CTL__SAMPLING_PARAMS__INIT;
    fill_sampling(r, &sp, ticket ? 1 : r->max_tokens);
    Tandem__Ctl__PrefillRequest pr = TANDEM__CTL__PREFILL_REQUEST__INIT;
    pr.request_id = r->wire;
    pr.session_id = r->session ? r->session : "";
    pr.token_ids = r->prompt;
    pr.n_token_ids = r->n_prompt;
    pr.sampling = &sp;
    pr.decode_worker_id = r->D ? r->D->id : "";
    if (r->D)
        pr.decode_ucx_address = (ProtobufCBinaryData){r->D->ucx_len, r->D->ucx};
    if (ticket)
        pr.kv_ticket = *ticket;
    td_ctl_msg env = TANDEM__CTL__ENVELOPE__INIT;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_PREFILL;
    env.prefill = &pr;
    r->ph = ticket ? PH_PREFILL : PH_DECODE;
    return send_to(r->P, &env);
}

/* Places a new attempt. TD_EBUSY when no worker of a kind is there. */
static td_err place(td_cluster *c, creq *r)
{
    td_cl_why why;
    size_t held;
    wkr *P = td_cl_choose_prefill(c, r, &why, &held);
    wkr *D = td_cl_choose_decode(c);
    wkr *L = td_cl_choose_local(c, r, P, &held);
    if (L) {                     /* the conversation's state is on L: answer there */
        P = L;
        D = NULL;
        why = TD_CL_WHY_LOCAL;
    }
    /* Disaggregated when both kinds are there and more than the first token
     * is wanted; otherwise colocated on whichever worker there is. */
    if (!P && !D)
        return TD_EBUSY;
    if (!P || !D || r->max_tokens == 1) {
        P = P ? P : D;
        D = NULL;
    }
    r->attempts++;
    r->wire = ++c->next_wire;
    if (P) {
        c->m_placed[why]++;
        c->m_prefix_tokens += held * TD_BLOCKHASH_TOKENS;
    }
    r->P = P;
    r->D = D;
    P->assigned++;
    if (r->session)
        td_cl_session_remember(c, r->session, P);
    r->next_index = 0;
    if (!D)
        return send_prefill(r, NULL);
    D->assigned++;
    Tandem__Ctl__SamplingParams sp = TANDEM__CTL__SAMPLING_PARAMS__INIT;
    fill_sampling(r, &sp, r->max_tokens);
    Tandem__Ctl__DecodeRequest dr = TANDEM__CTL__DECODE_REQUEST__INIT;
    dr.request_id = r->wire;
    dr.session_id = r->session ? r->session : "";
    dr.sampling = &sp;
    dr.prompt_tokens = r->n_prompt;
    dr.prompt = r->prompt;
    dr.n_prompt = r->n_prompt;
    td_ctl_msg env = TANDEM__CTL__ENVELOPE__INIT;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_DECODE;
    env.decode = &dr;
    r->ph = PH_TICKET;
    return send_to(D, &env);
}

/* The attempt failed before any token reached the client: try again
 * elsewhere, or give up. */
static void retry(td_cluster *c, creq *r, const char *why)
{
    td_log(TD_LOG_WARN, "cluster: request %llu: attempt %d failed: %s",
           (unsigned long long)r->id, r->attempts, why);
    c->m_retries++;
    release_attempt(r, true);
    while (r->attempts < c->o.max_attempts) {
        if (place(c, r) == TD_OK)
            return;
        release_attempt(r, true);
        if (!td_cl_least_loaded(c, td_cl_can_prefill) && !td_cl_least_loaded(c, td_cl_can_decode))
            break;
    }
    finish(c, r, TD_ROUTER_FINISH_ERROR, TD_EIO, false);
}

static creq *find_wire(td_cluster *c, uint64_t wire)
{
    for (creq *r = c->reqs; r; r = r->next)
        if (r->wire == wire)
            return r;
    return NULL;
}

static td_router_finish map_finish(Tandem__Ctl__FinishReason f)
{
    switch (f) {
    case TANDEM__CTL__FINISH_REASON__FINISH_STOP: return TD_ROUTER_FINISH_STOP;
    case TANDEM__CTL__FINISH_REASON__FINISH_LENGTH: return TD_ROUTER_FINISH_LENGTH;
    case TANDEM__CTL__FINISH_REASON__FINISH_CANCELLED: return TD_ROUTER_FINISH_CANCELLED;
    default: return TD_ROUTER_FINISH_ERROR;
    }
}

/* Delivers decode's tokens in order; returns false once r is finished. */
static bool deliver(td_cluster *c, creq *r, const int32_t *ids, size_t n, int fin,
                    const char *error)
{
    for (size_t i = 0; i < n; i++) {
        r->next_index++;
        r->cb.on_token(r->cb.arg, ids[i]);
    }
    if (!fin)
        return true;
    if (fin == TANDEM__CTL__FINISH_REASON__FINISH_ERROR)
        td_log(TD_LOG_ERROR, "cluster: request %llu: decode failed: %s",
               (unsigned long long)r->id, error && error[0] ? error : "(no reason)");
    finish(c, r, map_finish((Tandem__Ctl__FinishReason)fin),
           fin == TANDEM__CTL__FINISH_REASON__FINISH_ERROR ? TD_EIO : TD_OK, false);
    return false;
}

/* Work for a request we do not know: a predecessor's (this router was
 * restarted on the same address, and the workers still run what the old
 * one placed), or an attempt we abandoned. Nobody will read its tokens:
 * tell every worker to cancel it (we cannot tell which one runs it), once,
 * and every worker that registers later (its tokens can arrive first). */
static void cancel_orphan(td_cluster *c, uint64_t wire)
{
    unsigned n = c->n_orphans < 64 ? c->n_orphans : 64;
    for (unsigned i = 0; i < n; i++)
        if (c->orphans[i] == wire)
            return;
    c->orphans[c->n_orphans++ % 64] = wire;
    td_log(TD_LOG_INFO, "cluster: request %llu is not ours (a previous router's, or an "
           "abandoned attempt's): cancelling it on every worker", (unsigned long long)wire);
    for (wkr *w = c->workers; w; w = w->next)
        send_cancel(w, wire);
}

static void on_tokens(td_cluster *c, const Tandem__Ctl__TokenChunk *m)
{
    creq *r = find_wire(c, m->request_id);
    if (!r) {
        if (!m->finish)
            cancel_orphan(c, m->request_id);
        return;
    }
    int fin = m->finish;
    if (r->ph == PH_DECODE) {
        if (!r->D && fin == TANDEM__CTL__FINISH_REASON__FINISH_ERROR && r->next_index == 0 &&
            m->n_token_ids == 0) {
            /* colocated, nothing reached the client: try elsewhere */
            retry(c, r, m->error && m->error[0] ? m->error : "worker error");
            return;
        }
        if (m->cached_tokens && r->next_index == 0 && r->cb.on_cached)
            r->cb.on_cached(r->cb.arg, m->cached_tokens);
        if (m->index != r->next_index) {
            td_log(TD_LOG_ERROR, "cluster: request %llu: token %llu out of order (expected %llu)",
                   (unsigned long long)r->id, (unsigned long long)m->index,
                   (unsigned long long)r->next_index);
            finish(c, r, TD_ROUTER_FINISH_ERROR, TD_ECORRUPT, true);
            return;
        }
        deliver(c, r, m->token_ids, m->n_token_ids, fin, m->error);
        return;
    }
    /* Before the first token. From prefill: the whole answer (max_tokens 1),
     * a stop id as first token, or an error. From decode: early tokens, or
     * an error. */
    if (fin == TANDEM__CTL__FINISH_REASON__FINISH_STOP && m->n_token_ids == 0 &&
               m->index == 0) {
        finish(c, r, TD_ROUTER_FINISH_STOP, TD_OK, true);
    } else if (fin == TANDEM__CTL__FINISH_REASON__FINISH_ERROR ||
               fin == TANDEM__CTL__FINISH_REASON__FINISH_CANCELLED ||
               (fin == TANDEM__CTL__FINISH_REASON__FINISH_LENGTH && m->index == 0)) {
        if (fin == TANDEM__CTL__FINISH_REASON__FINISH_LENGTH)
            finish(c, r, TD_ROUTER_FINISH_ERROR, TD_ETOOLONG, true);
        else
            retry(c, r, m->error && m->error[0] ? m->error : "worker error");
    } else {
        /* early tokens from decode, in order after the first */
        size_t need = r->n_early + m->n_token_ids;
        if (need > r->cap_early) {
            size_t nc = need * 2 + 16;
            int32_t *ne = realloc(r->early, nc * sizeof *ne);
            if (!ne) {
                finish(c, r, TD_ROUTER_FINISH_ERROR, TD_ENOMEM, true);
                return;
            }
            r->early = ne;
            r->cap_early = nc;
        }
        if (m->n_token_ids)  /* a finish alone carries none (token_ids NULL) */
            memcpy(r->early + r->n_early, m->token_ids, m->n_token_ids * sizeof *r->early);
        r->n_early = need;
        if (fin) {
            r->early_finish = fin;
            snprintf(r->early_error, sizeof r->early_error, "%s", m->error ? m->error : "");
        }
    }
}

static void on_kv_ticket(td_cluster *c, const Tandem__Ctl__KvTicket *m)
{
    creq *r = find_wire(c, m->request_id);
    if (!r)
        cancel_orphan(c, m->request_id);  /* decode holds room for it */
    if (!r || r->ph != PH_TICKET)
        return;
    if (send_prefill(r, &m->ticket))
        retry(c, r, "prefill worker unreachable");
}

static void on_kv_ready(td_cluster *c, const Tandem__Ctl__KvReady *m)
{
    creq *r = find_wire(c, m->request_id);
    if (!r)
        cancel_orphan(c, m->request_id);  /* decode is about to generate for it */
    if (!r || r->ph != PH_PREFILL)
        return;
    if (m->model_fingerprint != c->fingerprint) {
        finish(c, r, TD_ROUTER_FINISH_ERROR, TD_EFORMAT, true);
        return;
    }
    r->ph = PH_DECODE;
    r->next_index = 1;
    if (m->cached_tokens && r->cb.on_cached)
        r->cb.on_cached(r->cb.arg, m->cached_tokens);
    r->cb.on_token(r->cb.arg, m->first_token);
    if (r->paused && r->D) {
        Tandem__Ctl__Pause pm = TANDEM__CTL__PAUSE__INIT;
        pm.request_id = r->wire;
        pm.paused = 1;
        td_ctl_msg env = TANDEM__CTL__ENVELOPE__INIT;
        env.body_case = TANDEM__CTL__ENVELOPE__BODY_PAUSE;
        env.pause = &pm;
        send_to(r->D, &env);
    }
    if (r->n_early || r->early_finish) {
        size_t n = r->n_early;
        r->n_early = 0;
        deliver(c, r, r->early, n, r->early_finish, r->early_error);
    }
}

static void drop_worker(td_cluster *c, wkr *w, const char *why)
{
    td_log(TD_LOG_WARN, "cluster: worker %s dropped: %s", w->id, why);
    c->m_dropped++;
    for (wkr **pp = &c->workers; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    for (creq *r = c->reqs, *next; r; r = next) {
        next = r->next;
        if (r->P != w && r->D != w)
            continue;
        /* Do not tell the dead one anything. */
        if (r->P == w) {
            r->P = NULL;
            w->assigned--;
        }
        if (r->D == w) {
            r->D = NULL;
            w->assigned--;
        }
        if (r->ph == PH_DECODE && r->next_index > 0)
            finish(c, r, TD_ROUTER_FINISH_ERROR, TD_EIO, true);
        else
            retry(c, r, "worker lost");
    }
    td_ctl_out_close(w->out);
    td_pidx_destroy(w->prefixes);
    free(w->id);
    free(w->url);
    free(w->ucx);
    free(w);
}

static void on_kv_events(td_cluster *c, const Tandem__Ctl__KvEvents *m)
{
    wkr *w = td_cl_find_worker(c, m->worker_id);
    if (!w)
        return;
    if (m->block_tokens != TD_BLOCKHASH_TOKENS) {
        td_log(TD_LOG_WARN, "cluster: worker %s hashes blocks of %u tokens, we of %u: "
               "its prefixes are ignored", w->id, m->block_tokens, TD_BLOCKHASH_TOKENS);
        return;
    }
    td_pidx_remove(w->prefixes, m->removed, m->n_removed);
    if (td_pidx_add(w->prefixes, m->stored, m->n_stored))
        td_log(TD_LOG_WARN, "cluster: out of memory indexing worker %s's prefixes", w->id);
}

static void on_register(td_cluster *c, const Tandem__Ctl__WorkerRegister *m)
{
    wkr *w = td_cl_find_worker(c, m->worker_id);
    if (w && strcmp(w->url, m->control_url)) {
        drop_worker(c, w, "registered again from another address");
        w = NULL;
    }
    if (!c->workers && !w)
        c->fingerprint = m->model_fingerprint;
    if (m->model_fingerprint != c->fingerprint) {
        td_log(TD_LOG_ERROR, "cluster: worker %s refused: model fingerprint %016llx, the "
               "cluster's is %016llx", m->worker_id, (unsigned long long)m->model_fingerprint,
               (unsigned long long)c->fingerprint);
        return;
    }
    if (!w) {
        char err[256];
        w = calloc(1, sizeof *w);
        if (!w || !(w->id = strdup(m->worker_id)) || !(w->url = strdup(m->control_url)) ||
            !(w->ucx = malloc(m->ucx_address.len + 1)) || td_pidx_create(&w->prefixes) ||
            td_ctl_out_open(&w->out, m->control_url, SEND_TIMEOUT_MS, err, sizeof err)) {
            td_log(TD_LOG_ERROR, "cluster: cannot add worker %s", m->worker_id);
            if (w) {
                td_pidx_destroy(w->prefixes);
                free(w->id);
                free(w->url);
                free(w->ucx);
                free(w);
            }
            return;
        }
        memcpy(w->ucx, m->ucx_address.data, m->ucx_address.len);
        w->ucx_len = m->ucx_address.len;
        w->next = c->workers;
        c->workers = w;
        w->role = m->role;
        /* A worker may run orphans of a previous router before it registers
         * with this one: cancel those it told us about while unknown. */
        for (unsigned i = 0; i < c->n_orphans && i < 64; i++)
            send_cancel(w, c->orphans[i]);
        td_log(TD_LOG_INFO, "cluster: worker %s (%s) at %s", w->id,
               td_cl_can_prefill(w) && td_cl_can_decode(w) ? "prefill+decode"
               : td_cl_can_prefill(w) ? "prefill" : "decode", w->url);
    }
    w->role = m->role;
    w->max_batch = m->max_batch;
    w->fingerprint = m->model_fingerprint;
    w->max_context = m->max_context;
    w->last_seen = uv_now(c->loop);
}

static void on_mail(void *arg, void *item)
{
    td_cluster *c = arg;
    td_ctl_msg *m = item;
    wkr *w;
    switch (m->body_case) {
    case TANDEM__CTL__ENVELOPE__BODY_REGISTER:
        on_register(c, m->register_);
        break;
    case TANDEM__CTL__ENVELOPE__BODY_HEARTBEAT:
        if ((w = td_cl_find_worker(c, m->heartbeat->worker_id))) {
            w->last_seen = uv_now(c->loop);
            w->running = m->heartbeat->running;
            w->waiting = m->heartbeat->waiting;
            w->kv_free = m->heartbeat->kv_free_bytes;
            w->draining = m->heartbeat->draining;
        }
        break;
    case TANDEM__CTL__ENVELOPE__BODY_KV_TICKET:
        on_kv_ticket(c, m->kv_ticket);
        break;
    case TANDEM__CTL__ENVELOPE__BODY_KV_READY:
        on_kv_ready(c, m->kv_ready);
        break;
    case TANDEM__CTL__ENVELOPE__BODY_KV_EVENTS:
        on_kv_events(c, m->kv_events);
        break;
    case TANDEM__CTL__ENVELOPE__BODY_TOKENS:
        on_tokens(c, m->tokens);
        break;
    default:
        td_log(TD_LOG_WARN, "cluster: control message %d ignored", (int)m->body_case);
    }
    td_ctl_free(m);
}

static void on_recv(void *arg, td_ctl_msg *m)
{
    td_cluster *c = arg;
    if (td_mbox_post(c->mbox, m))
        td_ctl_free(m);
}

static void on_sweep(uv_timer_t *t)
{
    td_cluster *c = t->data;
    uint64_t now = uv_now(c->loop);
    for (wkr *w = c->workers, *next; w; w = next) {
        next = w->next;
        if (now - w->last_seen > (uint64_t)c->o.heartbeat_timeout_ms)
            drop_worker(c, w, "no heartbeat");
    }
}

static void on_cancels(uv_timer_t *t)
{
    td_cluster *c = t->data;
    for (creq *r = c->reqs, *next; r; r = next) {
        next = r->next;
        if (r->cancelled)
            finish(c, r, TD_ROUTER_FINISH_CANCELLED, TD_OK, true);
    }
}

/* ---- the engine interface ------------------------------------------------------- */

static bool cl_ready(void *ctx)
{
    td_cluster *c = ctx;
    return td_cl_least_loaded(c, td_cl_can_prefill) || td_cl_least_loaded(c, td_cl_can_decode);
}

static int64_t cl_context_len(void *ctx)
{
    td_cluster *c = ctx;
    int64_t n = 0;
    for (wkr *w = c->workers; w; w = w->next)
        if (!n || (int64_t)w->max_context < n)
            n = (int64_t)w->max_context;
    return cl_ready(ctx) ? n : 0;
}

static td_err cl_submit(void *ctx, const td_router_gen_req *q, const td_router_gen_cb *cb,
                        uint64_t *id)
{
    td_cluster *c = ctx;
    if (!cl_ready(c))
        return TD_EBUSY;
    if (q->n_prompt == 0 || q->max_tokens < 1 || !cb->on_token || !cb->on_finish)
        return TD_EINVAL;
    if ((int64_t)q->n_prompt + q->max_tokens > cl_context_len(c))
        return TD_ETOOLONG;
    creq *r = calloc(1, sizeof *r);
    if (!r)
        return TD_ENOMEM;
    r->prompt = malloc(q->n_prompt * sizeof *r->prompt);
    r->stops = malloc((q->n_stop_ids + 1) * sizeof *r->stops);
    if (!r->prompt || !r->stops ||
        (q->session_id && !(r->session = strdup(q->session_id))) ||
        td_router_constraint_dup(&r->cons, &q->constraint)) {
        creq_free(r);
        return TD_ENOMEM;
    }
    memcpy(r->prompt, q->prompt, q->n_prompt * sizeof *r->prompt);
    r->n_prompt = q->n_prompt;
    if (c->o.policy == TD_CLUSTER_POLICY_PREFIX &&
        (r->chain = malloc((q->n_prompt / TD_BLOCKHASH_TOKENS + 1) * sizeof *r->chain)))
        r->n_chain = td_block_chain(r->prompt, r->n_prompt, TD_BLOCKHASH_TOKENS, r->chain);
    if (q->n_stop_ids)
        memcpy(r->stops, q->stop_ids, q->n_stop_ids * sizeof *r->stops);
    r->n_stop = q->n_stop_ids;
    r->max_tokens = q->max_tokens;
    r->s = q->sampling;
    if (r->s.top_p <= 0.0f || r->s.top_p > 1.0f)
        r->s.top_p = 1.0f;
    r->cb = *cb;
    r->id = ++c->next_id;
    td_err e = place(c, r);
    if (e) {
        release_attempt(r, true);
        creq_free(r);
        return e == TD_EBUSY ? TD_EBUSY : TD_EIO;
    }
    r->next = c->reqs;
    c->reqs = r;
    *id = r->id;
    return TD_OK;
}

static creq *find_id(td_cluster *c, uint64_t id)
{
    for (creq *r = c->reqs; r; r = r->next)
        if (r->id == id)
            return r;
    return NULL;
}

static void cl_cancel(void *ctx, uint64_t id)
{
    td_cluster *c = ctx;
    creq *r = find_id(c, id);
    if (!r || r->cancelled)
        return;
    r->cancelled = true;
    uv_timer_start(&c->cancels, on_cancels, 0, 0);
}

static void cl_pause(void *ctx, uint64_t id, bool paused)
{
    td_cluster *c = ctx;
    creq *r = find_id(c, id);
    if (!r)
        return;
    r->paused = paused;
    wkr *w = r->D ? r->D : r->P;  /* who generates */
    if (r->ph != PH_DECODE || !w)
        return;
    Tandem__Ctl__Pause pm = TANDEM__CTL__PAUSE__INIT;
    pm.request_id = r->wire;
    pm.paused = paused;
    td_ctl_msg env = TANDEM__CTL__ENVELOPE__INIT;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_PAUSE;
    env.pause = &pm;
    send_to(w, &env);
}

/* Running: in a decode worker's batch. A decode worker admits in order up
 * to its max_batch, so of the requests it holds, the first max_batch run
 * and the rest wait, as they would in-process. */
static void cl_load(void *ctx, td_router_load *out)
{
    td_cluster *c = ctx;
    *out = (td_router_load){0};
    for (creq *r = c->reqs; r; r = r->next)
        if (r->ph != PH_DECODE)
            out->waiting++;
    for (wkr *w = c->workers; w; w = w->next) {
        int64_t n = 0;
        for (creq *r = c->reqs; r; r = r->next)
            n += r->ph == PH_DECODE && (r->D ? r->D : r->P) == w;
        int64_t run = n < (int64_t)w->max_batch ? n : (int64_t)w->max_batch;
        out->running += run;
        out->waiting += n - run;
    }
}

/* The router's view of its workers, next to its HTTP metrics. */
static void cl_metrics(void *ctx, td_prom_buf *b)
{
    td_cluster *c = ctx;
    int np = 0, nd = 0, draining = 0;
    size_t blocks = 0;
    for (wkr *w = c->workers; w; w = w->next) {
        np += td_cl_can_prefill(w);
        nd += td_cl_can_decode(w);
        draining += w->draining;
        blocks += w->prefixes ? td_pidx_blocks(w->prefixes) : 0;
    }
    td_prom_family(b, "tandem_workers", "gauge",
                   "Registered workers by role (a colocated worker counts for both).");
    td_prom_put(b, "tandem_workers{role=\"prefill\"} %d\n", np);
    td_prom_put(b, "tandem_workers{role=\"decode\"} %d\n", nd);
    td_prom_gauge(b, "tandem_workers_draining", "Workers that stopped taking requests.",
                  draining);
    td_prom_gauge(b, "tandem_prefix_blocks_held",
                  "Token blocks the workers announced holding (KV events: memory or disk), "
                  "summed over workers: what prefix-aware placement can match.",
                  (double)blocks);
    static const char *const why[TD_CL_WHY_COUNT] = {
        [TD_CL_WHY_SESSION] = "session", [TD_CL_WHY_PREFIX] = "prefix",
        [TD_CL_WHY_LEAST_LOADED] = "least_loaded", [TD_CL_WHY_ROUND_ROBIN] = "round_robin",
        [TD_CL_WHY_LOCAL] = "decode_local",
    };
    td_prom_family(b, "tandem_placements_total", "counter",
                   "Requests placed, by how the worker was chosen (session: where its session's "
                   "state is; prefix: the longest announced prefix; decode_local: answered whole "
                   "by the decode worker holding the conversation).");
    for (int i = 0; i < TD_CL_WHY_COUNT; i++)
        td_prom_put(b, "tandem_placements_total{decision=\"%s\"} %llu\n", why[i],
                    (unsigned long long)c->m_placed[i]);
    td_prom_counter(b, "tandem_placement_prefix_tokens_total",
                    "Prompt tokens the chosen worker had announced holding (KV events): the "
                    "reuse the router expected.", c->m_prefix_tokens);
    td_prom_counter(b, "tandem_request_retries_total",
                    "Attempts that failed before any token reached the client and were "
                    "placed again.", c->m_retries);
    td_prom_counter(b, "tandem_workers_dropped_total",
                    "Workers dropped (missed heartbeats, or replaced).", c->m_dropped);
    td_prom_counter(b, "tandem_orphan_cancels_total",
                    "Requests of a previous router or an abandoned attempt cancelled on the "
                    "workers.", c->n_orphans);
}

td_router_engine td_cluster_interface(td_cluster *c)
{
    return (td_router_engine){.ctx = c, .ready = cl_ready, .context_len = cl_context_len,
                              .submit = cl_submit, .cancel = cl_cancel, .pause = cl_pause,
                              .load = cl_load, .metrics = cl_metrics};
}

/* ---- lifecycle ------------------------------------------------------------------- */

const char *td_cluster_url(const td_cluster *c) { return td_ctl_in_url(c->in); }

td_err td_cluster_create(td_cluster **out, uv_loop_t *loop, const td_cluster_opts *o,
                         char *err, size_t errlen)
{
    td_cluster *c = calloc(1, sizeof *c);
    if (!c)
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    c->o = *o;
    if (!c->o.heartbeat_timeout_ms)
        c->o.heartbeat_timeout_ms = 5000;
    if (!c->o.max_attempts)
        c->o.max_attempts = 3;
    c->loop = loop;
    /* Wire ids from the wall clock in ns: a router restarted on the same
     * address never reuses the ids of its predecessor's requests, whose
     * tokens the workers may still be sending. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    c->next_wire = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    td_err e = td_mbox_create(&c->mbox, loop, on_mail, c);
    if (e) {
        free(c);
        return td_errf(err, errlen, e, "cannot create the cluster's mailbox");
    }
    e = td_ctl_in_open(&c->in, o->listen_url, on_recv, c, err, errlen);
    if (e) {
        td_mbox_destroy(c->mbox);
        free(c);
        return e;
    }
    uv_timer_init(loop, &c->sweep);
    uv_timer_init(loop, &c->cancels);
    c->sweep.data = c->cancels.data = c;
    uint64_t every = (uint64_t)c->o.heartbeat_timeout_ms / 4 + 1;
    uv_timer_start(&c->sweep, on_sweep, every, every);
    *out = c;
    return TD_OK;
}

static void on_timer_closed(uv_handle_t *h)
{
    td_cluster *c = h->data;
    if (--c->closing == 0)
        free(c);
}

void td_cluster_destroy(td_cluster *c)
{
    td_ctl_in_close(c->in);
    td_mbox_destroy(c->mbox);  /* delivers what arrived */
    while (c->reqs)
        finish(c, c->reqs, TD_ROUTER_FINISH_CANCELLED, TD_OK, true);
    td_cl_sessions_free(c);
    while (c->workers) {
        wkr *w = c->workers;
        c->workers = w->next;
        td_pidx_destroy(w->prefixes);
        td_ctl_out_close(w->out);
        free(w->id);
        free(w->url);
        free(w->ucx);
        free(w);
    }
    c->closing = 2;
    uv_close((uv_handle_t *)&c->sweep, on_timer_closed);
    uv_close((uv_handle_t *)&c->cancels, on_timer_closed);
}
