/* Worker plumbing: registration, heartbeats, control messages in and out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "proto/blockhash.h"
#include "router/http.h"
#include "transport/ctl/ctl_link.h"
#include "transport/ctl/mailbox.h"
#include "worker/worker.h"

enum { SEND_TIMEOUT_MS = 2000, REGISTER_EVERY = 10 };

/* KV events that wait for the registration to go out (td_wk_send_kv). */
typedef struct held_kv {
    struct held_kv *next;
    bool stored;
    size_t k;
    uint64_t chain[];
} held_kv;

struct td_wk {
    td_wk_opts o;
    char id[64];
    char *listen_url;            /* the bound one */
    td_ctl_in *in;
    td_ctl_out *out;
    td_mbox *mbox;
    uv_timer_t timer;
    uint64_t beats;
    bool draining;
    bool router_down;            /* a send timed out; cleared by the next heartbeat through */
    bool registered;             /* a registration went through (it repeats anyway) */
    held_kv *held, **held_tail;  /* KV events from before it, in order */
    td_http_server *http;        /* /metrics */
    uv_timer_t drain_timer;
    bool (*drain_idle)(void *arg);
    void (*drain_cb)(void *arg);
    void *drain_arg;
    int closing;                 /* handles and the server still to close */
    double start_time;
};

static void on_recv(void *arg, td_ctl_msg *msg)
{
    td_wk *w = arg;
    if (td_mbox_post(w->mbox, msg))
        td_ctl_free(msg);  /* shutting down */
}

static void on_mail(void *arg, void *item)
{
    td_wk *w = arg;
    w->o.on_msg(w->o.arg, item);
}

/* Registration and heartbeats repeat: never wait for them, and one that
 * goes through says the router is back. */
static bool send_beat(td_wk *w, td_ctl_msg *env)
{
    char err[256];
    if (td_ctl_out_try_send(w->out, env, err, sizeof err) != TD_OK)
        return false;
    if (w->router_down)
        td_log(TD_LOG_INFO, "worker %s: the router takes messages again", w->id);
    w->router_down = false;
    return true;
}

static td_err send_kv(td_wk *w, bool stored, const uint64_t *chain, size_t k)
{
    Tandem__Ctl__KvEvents ev = TANDEM__CTL__KV_EVENTS__INIT;
    ev.worker_id = w->id;
    ev.block_tokens = TD_BLOCKHASH_TOKENS;
    if (stored) {
        ev.stored = (uint64_t *)chain;
        ev.n_stored = k;
    } else {
        ev.removed = (uint64_t *)chain;
        ev.n_removed = k;
    }
    td_ctl_msg env = TANDEM__CTL__ENVELOPE__INIT;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_KV_EVENTS;
    env.kv_events = &ev;
    return td_wk_send(w, &env);
}

td_err td_wk_send_kv(td_wk *w, bool stored, const uint64_t *chain, size_t k)
{
    if (w->registered)
        return send_kv(w, stored, chain, k);
    /* A restarted worker announces what its disk holds at once; the router
     * forgets a worker's blocks when it registers again, so events sent
     * before the registration would be lost with the old one. */
    held_kv *h = malloc(sizeof *h + k * sizeof *chain);
    if (!h)
        return TD_ENOMEM;  /* the router keeps a stale view: a placement that recomputes */
    h->next = NULL;
    h->stored = stored;
    h->k = k;
    memcpy(h->chain, chain, k * sizeof *chain);
    *w->held_tail = h;
    w->held_tail = &h->next;
    return TD_OK;
}

static void send_register(td_wk *w)
{
    Tandem__Ctl__WorkerRegister r = TANDEM__CTL__WORKER_REGISTER__INIT;
    r.worker_id = w->id;
    r.role = w->o.role;
    r.model_fingerprint = w->o.fingerprint;
    r.layout_version = w->o.layout_version;
    r.max_batch = w->o.max_batch;
    r.kv_capacity_bytes = w->o.kv_capacity_bytes;
    r.ucx_address = (ProtobufCBinaryData){w->o.ucx_address_len, (uint8_t *)w->o.ucx_address};
    r.control_url = w->listen_url;
    r.max_context = w->o.max_context;
    td_ctl_msg env = TANDEM__CTL__ENVELOPE__INIT;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_REGISTER;
    env.register_ = &r;
    if (!send_beat(w, &env))
        return;
    w->registered = true;
    /* behind the registration on the same socket: the router files them
     * under this registration */
    while (w->held) {
        held_kv *h = w->held;
        w->held = h->next;
        send_kv(w, h->stored, h->chain, h->k);
        free(h);
    }
    w->held_tail = &w->held;
}

static void on_timer(uv_timer_t *t)
{
    td_wk *w = t->data;
    /* Until one goes through (the connection comes up in the background),
     * then every REGISTER_EVERY beats, for a router that restarted. */
    if (!w->registered || w->beats % REGISTER_EVERY == 0)
        send_register(w);
    w->beats++;
    Tandem__Ctl__Heartbeat hb = TANDEM__CTL__HEARTBEAT__INIT;
    hb.worker_id = w->id;
    hb.seq = w->beats;
    hb.draining = w->draining;
    if (w->o.load)
        w->o.load(w->o.arg, &hb);
    td_ctl_msg env = TANDEM__CTL__ENVELOPE__INIT;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    send_beat(w, &env);
}

/* Results wait (up to the send timeout) for a slow router, but not for a
 * gone one: after one timeout they are dropped until a heartbeat gets
 * through again, so a dead router does not stall this loop per message. */
td_err td_wk_send(td_wk *w, td_ctl_msg *msg)
{
    char err[256];
    td_err e = w->router_down ? td_ctl_out_try_send(w->out, msg, err, sizeof err)
                              : td_ctl_out_send(w->out, msg, err, sizeof err);
    if (e == TD_ETIMEDOUT) {
        td_log(TD_LOG_WARN, "worker %s: the router does not take messages: dropping results "
               "until it does", w->id);
        w->router_down = true;
    } else if (e && !w->router_down) {
        td_log(TD_LOG_WARN, "worker %s: to the router: %s", w->id, err);
    }
    return e;
}

td_err td_wk_send_tokens(td_wk *w, uint64_t request_id, uint64_t index, const int32_t *ids,
                         size_t n, Tandem__Ctl__FinishReason finish, const char *error)
{
    Tandem__Ctl__TokenChunk tc = TANDEM__CTL__TOKEN_CHUNK__INIT;
    tc.request_id = request_id;
    tc.index = index;
    tc.token_ids = (int32_t *)ids;
    tc.n_token_ids = n;
    tc.finish = finish;
    tc.error = (char *)(error ? error : "");
    td_ctl_msg env = TANDEM__CTL__ENVELOPE__INIT;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_TOKENS;
    env.tokens = &tc;
    return td_wk_send(w, &env);
}

const char *td_wk_id(const td_wk *w) { return w->id; }

td_router_constraint td_wk_constraint(const Tandem__Ctl__SamplingParams *s)
{
    bool tools = s->tools && s->tools[0];
    return (td_router_constraint){
        .json_schema = s->json ? (s->json_schema ? s->json_schema : "") : NULL,
        .tools = tools ? s->tools : NULL,
        .force_name = tools && s->force_name && s->force_name[0] ? s->force_name : NULL,
        .single = s->single_call,
        .thinking = s->thinking,
    };
}

int td_wk_metrics_port(const td_wk *w) { return w->http ? td_http_server_port(w->http) : 0; }

static void on_http(void *arg, td_http_req *req)
{
    td_wk *w = arg;
    const char *path = td_http_req_path(req);
    if (td_http_req_error(req, NULL) || strcmp(td_http_req_method(req), "GET") ||
        (strcmp(path, "/metrics") && strcmp(path, "/health") && strcmp(path, "/ready"))) {
        td_http_head h = {.status = 404, .content_type = "text/plain"};
        td_http_respond(req, &h, "not found\n", 10);
        return;
    }
    if (!strcmp(path, "/health")) {
        td_http_head h = {.status = 200, .content_type = "application/json"};
        td_http_respond(req, &h, "{\"status\":\"ok\"}", 15);
        return;
    }
    if (!strcmp(path, "/ready")) {  /* takes work: registered, not draining */
        bool ready = w->registered && !w->draining;
        const char *body = ready ? "{\"status\":\"ready\"}"
                                 : w->draining ? "{\"status\":\"draining\"}"
                                               : "{\"status\":\"registering\"}";
        td_http_head h = {.status = ready ? 200 : 503, .content_type = "application/json"};
        td_http_respond(req, &h, body, strlen(body));
        return;
    }
    td_prom_buf b = {0};
    td_prom_family(&b, "tandem_worker_info", "gauge", "This worker: its role and id.");
    td_prom_put(&b, "tandem_worker_info{role=\"%s\",worker_id=\"%s\"} 1\n",
                w->o.role == TANDEM__CTL__ROLE__ROLE_PREFILL ? "prefill" : "decode", w->id);
    td_prom_gauge(&b, "tandem_process_start_time_seconds",
                  "Start time of the process, unix seconds.", w->start_time);
    if (w->o.metrics)
        w->o.metrics(w->o.arg, &b);
    td_http_head h = {.status = b.oom ? 500 : 200,
                      .content_type = "text/plain; version=0.0.4; charset=utf-8"};
    td_http_respond(req, &h, b.oom ? "" : b.p, b.oom ? 0 : b.len);
    free(b.p);
}

void td_wk_set_draining(td_wk *w, bool draining) { w->draining = draining; }

static void on_drain_check(uv_timer_t *t)
{
    td_wk *w = t->data;
    if (!w->drain_cb || !w->drain_idle(w->o.arg))
        return;
    void (*cb)(void *) = w->drain_cb;
    w->drain_cb = NULL;
    uv_timer_stop(t);
    cb(w->drain_arg);
}

void td_wk_drain(td_wk *w, bool (*idle)(void *arg), void (*cb)(void *cbarg), void *cbarg)
{
    w->draining = true;
    on_timer(&w->timer);  /* the heartbeat that says so, now */
    w->drain_idle = idle;
    w->drain_cb = cb;
    w->drain_arg = cbarg;
    uv_timer_start(&w->drain_timer, on_drain_check, 0, 20);
}

td_err td_wk_create(td_wk **out, uv_loop_t *loop, const td_wk_opts *o, char *err,
                    size_t errlen)
{
    td_wk *w = calloc(1, sizeof *w);
    if (!w)
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    w->o = *o;
    w->held_tail = &w->held;
    if (!w->o.heartbeat_ms)
        w->o.heartbeat_ms = 200;
    if (o->worker_id)
        snprintf(w->id, sizeof w->id, "%s", o->worker_id);
    else
        snprintf(w->id, sizeof w->id, "%s-%ld",
                 o->role == TANDEM__CTL__ROLE__ROLE_PREFILL ? "prefill" : "decode",
                 (long)getpid());
    td_err e = td_mbox_create(&w->mbox, loop, on_mail, w);
    if (e) {
        free(w);
        return td_errf(err, errlen, e, "cannot create the worker's mailbox");
    }
    e = td_ctl_in_open(&w->in, o->listen_url ? o->listen_url : "tcp://127.0.0.1:0", on_recv,
                       w, err, errlen);
    if (!e && !(w->listen_url = strdup(td_ctl_in_url(w->in))))
        e = td_errf(err, errlen, TD_ENOMEM, "out of memory");
    if (!e)
        e = td_ctl_out_open(&w->out, o->router_url, SEND_TIMEOUT_MS, err, errlen);
    if (e) {
        td_wk_destroy(w);
        return e;
    }
    if (o->metrics_port >= 0) {
        td_http_opts ho = {.host = o->metrics_host ? o->metrics_host : "127.0.0.1",
                           .port = o->metrics_port, .max_body = 4096, .on_request = on_http,
                           .arg = w};
        e = td_http_server_create(&w->http, loop, &ho, err, errlen);
        if (e) {
            td_wk_destroy(w);
            return e;
        }
        td_log(TD_LOG_INFO, "worker %s: metrics on http://%s:%d/metrics", w->id, ho.host,
               td_http_server_port(w->http));
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    w->start_time = (double)ts.tv_sec + ts.tv_nsec * 1e-9;
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    uv_timer_init(loop, &w->drain_timer);
    w->drain_timer.data = w;
    uv_timer_start(&w->timer, on_timer, 0, (uint64_t)w->o.heartbeat_ms);
    td_log(TD_LOG_INFO, "worker %s: listening on %s, registering with %s", w->id,
           w->listen_url, o->router_url);
    *out = w;
    return TD_OK;
}

static void closed_one(td_wk *w)
{
    if (--w->closing == 0)
        free(w);
}

static void on_timer_closed(uv_handle_t *h) { closed_one(h->data); }

static void on_http_drained(void *arg)
{
    td_wk *w = arg;
    td_http_server_destroy(w->http);
    w->http = NULL;
    closed_one(w);
}

void td_wk_destroy(td_wk *w)
{
    if (!w)
        return;
    td_ctl_in_close(w->in);  /* no on_recv after this */
    while (w->held) {
        held_kv *h = w->held;
        w->held = h->next;
        free(h);
    }
    td_mbox_destroy(w->mbox);
    td_ctl_out_close(w->out);
    free(w->listen_url);
    w->closing = 1;          /* released below, once the rest is under way */
    if (w->http) {
        w->closing++;
        td_http_server_close_all(w->http);
        td_http_server_drain(w->http, on_http_drained, w);
    }
    if (w->timer.data) {
        w->closing += 2;
        uv_timer_stop(&w->timer);
        uv_close((uv_handle_t *)&w->timer, on_timer_closed);
        uv_close((uv_handle_t *)&w->drain_timer, on_timer_closed);
    }
    closed_one(w);
}
