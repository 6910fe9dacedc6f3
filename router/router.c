/* The router: routes, the small endpoints, errors, shutdown, and the
 * operations layer in front of the API (API keys, the queue limit, session
 * ids, metrics). Generation endpoints live in api_*_gen.c, the generation
 * lifecycle they share in gen.c.
 *
 * The operations layer wraps the engine table: gen.c calls rt->engine,
 * which is a metered engine here that times tokens for the metrics, adds
 * the request's session id and forwards to the real engine. So gen.c
 * needs no metrics code, and the per-token cost is one clock read and one
 * histogram bump on the loop thread. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "router/api_anthropic.h"
#include "router/api_responses.h"
#include "router/resp_store.h"
#include "router/auth.h"
#include "router/metrics.h"
#include "router/router_internal.h"

/* The router with its operations state. It is allocated here only, so the
 * state lives beside struct td_router (router_internal.h, shared with the
 * API files) instead of inside it; ops_of() gets back to it. */
typedef struct {
    td_router rt;                /* first: a td_router * is a router_ops * */
    td_router_engine inner;      /* the real engine */
    td_metrics *metrics;
    td_auth *auth;
    int64_t max_waiting;
    double start_time;
    /* The request being handed to td_router_generate: the metered submit
     * (called inside it) takes its session id and arrival time from here. */
    const char *cur_session;
    uint64_t cur_arrival;        /* uv_hrtime() */
} router_ops;

static router_ops *ops_of(td_router *rt) { return (router_ops *)rt; }

/* ---- responses ------------------------------------------------------------ */

void td_router_send_json(td_http_req *req, int status, json_t *v)
{
    char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    td_http_head h = {.status = s ? status : 500, .content_type = "application/json"};
    static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":"
                              "\"server_error\",\"param\":null,\"code\":null}}";
    td_http_respond(req, &h, s ? s : oom, s ? strlen(s) : sizeof oom - 1);
    free(s);
}

/* Anthropic's endpoints answer every error in Anthropic's shape. */
static bool is_anthropic(const td_http_req *req)
{
    return !strncmp(td_http_req_path(req), "/v1/messages", 12);
}

void td_router_send_error(td_http_req *req, const td_router_apierr *e)
{
    if (is_anthropic(req)) {
        td_anth_send_error(req, e->status, NULL, e->message);
        return;
    }
    json_t *err = json_object();
    json_object_set_new(err, "message", json_string(e->message));
    json_object_set_new(err, "type", json_string(e->status >= 500 ? "server_error"
                                                                  : "invalid_request_error"));
    json_object_set_new(err, "param", e->param ? json_string(e->param) : json_null());
    json_object_set_new(err, "code", e->code ? json_string(e->code) : json_null());
    json_t *v = json_object();
    json_object_set_new(v, "error", err);
    td_router_send_json(req, e->status, v);
}

/* An OpenAI-shaped error with a chosen type and extra header lines. */
static void send_error_h(td_http_req *req, int status, const char *type, const char *code,
                         const char *extra_headers, const char *msg)
{
    if (is_anthropic(req)) {
        td_anth_send_error(req, status, extra_headers, msg);
        return;
    }
    json_t *v = json_pack("{s:{s:s, s:s, s:n, s:s?}}", "error", "message", msg, "type", type,
                          "param", "code", code);
    char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    td_http_head h = {.status = status, .content_type = "application/json",
                      .extra_headers = extra_headers};
    td_http_respond(req, &h, s ? s : "", s ? strlen(s) : 0);
    free(s);
}

void td_router_error(td_http_req *req, int status, const char *param, const char *code,
                     const char *fmt, ...)
{
    td_router_apierr e = {.status = status, .param = param, .code = code};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    td_router_send_error(req, &e);
}

/* ---- small endpoints --------------------------------------------------------- */

static void models(td_router *rt, td_http_req *req)
{
    json_t *m = json_pack("{s:s, s:s, s:I, s:s}", "id", rt->model_id, "object", "model",
                          "created", (json_int_t)rt->started, "owned_by", "tandem");
    int64_t ctx = rt->engine.context_len(rt->engine.ctx);
    if (m && ctx > 0)
        json_object_set_new(m, "max_model_len", json_integer(ctx));
    td_router_send_json(req, 200, json_pack("{s:s, s:[o]}", "object", "list", "data", m));
}

static void load_of(router_ops *o, td_router_load *l)
{
    *l = (td_router_load){0};
    if (o->inner.load)
        o->inner.load(o->inner.ctx, l);
}

static void metrics(router_ops *o, td_http_req *req)
{
    td_router *rt = &o->rt;
    td_router_load l;
    load_of(o, &l);
    td_metrics_gauges g = {
        .running = l.running, .waiting = l.waiting, .max_waiting = o->max_waiting,
        .connections = td_http_server_nconns(rt->http),
        .ready = !rt->shutting_down && rt->engine.ready(rt->engine.ctx),
        .start_time = o->start_time,
    };
    td_resp_store_stats rs = td_resp_store_get_stats(rt->responses);
    g.responses_stored = (int64_t)rs.entries;
    g.responses_stored_bytes = (int64_t)rs.bytes;
    g.responses_evicted = (int64_t)rs.evictions;
    g.engine_metrics = o->inner.metrics;
    g.engine_ctx = o->inner.ctx;
    char *text;
    size_t len;
    if (td_metrics_render(o->metrics, &g, &text, &len)) {
        td_router_error(req, 500, NULL, NULL, "out of memory");
        return;
    }
    td_http_head h = {.status = 200, .content_type = "text/plain; version=0.0.4; charset=utf-8"};
    td_http_respond(req, &h, text, len);
    free(text);
}

/* ---- the metered engine ---------------------------------------------------------- */

/* One generation as the metered engine sees it. */
typedef struct {
    router_ops *o;
    td_router_gen_cb cb;         /* gen.c's */
    uint64_t arrival, last;      /* uv_hrtime() */
    bool first_done;
} metered;

static double seconds_between(uint64_t a, uint64_t b) { return (double)(b - a) * 1e-9; }

static void metered_on_token(void *arg, int32_t token)
{
    metered *m = arg;
    uint64_t now = uv_hrtime();
    td_metrics_token(m->o->metrics, !m->first_done,
                     seconds_between(m->first_done ? m->last : m->arrival, now));
    m->first_done = true;
    m->last = now;
    m->cb.on_token(m->cb.arg, token);
}

static void metered_on_cached(void *arg, size_t n)
{
    metered *m = arg;
    td_metrics_cached(m->o->metrics, n);
    if (m->cb.on_cached)
        m->cb.on_cached(m->cb.arg, n);
}

static void metered_on_finish(void *arg, td_router_finish why, td_err err)
{
    metered *m = arg;
    td_metrics_finish(m->o->metrics, seconds_between(m->arrival, uv_hrtime()));
    td_router_gen_cb cb = m->cb;
    free(m);
    cb.on_finish(cb.arg, why, err);
}

static td_err metered_submit(void *ctx, const td_router_gen_req *req,
                             const td_router_gen_cb *cb, uint64_t *id)
{
    router_ops *o = ctx;
    metered *m = malloc(sizeof *m);
    if (!m)
        return TD_ENOMEM;
    *m = (metered){.o = o, .cb = *cb,
                   .arrival = o->cur_arrival ? o->cur_arrival : uv_hrtime()};
    td_router_gen_req r = *req;
    if (!r.session_id)
        r.session_id = o->cur_session;
    td_router_gen_cb mcb = {.on_token = metered_on_token, .on_finish = metered_on_finish,
                            .on_cached = metered_on_cached, .arg = m};
    td_err e = o->inner.submit(o->inner.ctx, &r, &mcb, id);
    if (e) {
        free(m);
        return e;
    }
    td_metrics_prompt(o->metrics, req->n_prompt, 0);
    return TD_OK;
}

static bool metered_ready(void *ctx)
{
    router_ops *o = ctx;
    return o->inner.ready(o->inner.ctx);
}

static int64_t metered_context_len(void *ctx)
{
    router_ops *o = ctx;
    return o->inner.context_len(o->inner.ctx);
}

static void metered_cancel(void *ctx, uint64_t id)
{
    router_ops *o = ctx;
    o->inner.cancel(o->inner.ctx, id);
}

static void metered_pause(void *ctx, uint64_t id, bool paused)
{
    router_ops *o = ctx;
    o->inner.pause(o->inner.ctx, id, paused);
}

static void metered_load(void *ctx, td_router_load *out) { load_of(ctx, out); }

/* ---- session identity -------------------------------------------------------------- */

/* Headers that agent clients send with a stable value per conversation,
 * most specific first (sources in docs/serve.md). */
static const char *const session_headers[] = {
    "X-Session-ID",              /* generic; OpenRouter, opencode, crush */
    "X-Claude-Code-Session-Id",  /* Claude Code */
    "session_id",                /* Codex CLI (codex-rs) */
    "session-id",                /* Codex CLI, newer */
    "x-session-affinity",        /* opencode, nanobot, crush; Fireworks */
    "x-opencode-session",        /* opencode to its own gateway */
    "conversation_id",           /* Codex CLI, older */
    "OpenAI-Conversation-ID",
};

/* Longest session id passed on; longer values are ignored (not truncated:
 * two sessions must not collide on a shared prefix). */
#define SESSION_MAX 256

static const char *session_of(const td_http_req *req)
{
    for (size_t i = 0; i < sizeof session_headers / sizeof session_headers[0]; i++) {
        const char *v = td_http_req_header(req, session_headers[i]);
        if (v && *v && strlen(v) <= SESSION_MAX)
            return v;
    }
    return NULL;
}

/* ---- routing ---------------------------------------------------------------- */

typedef enum { EP_HEALTH, EP_READY, EP_MODELS, EP_COMPLETIONS, EP_CHAT, EP_METRICS,
               EP_MESSAGES, EP_COUNT_TOKENS, EP_RESPONSES } endpoint;

static const struct {
    const char *path;
    const char *method;
    endpoint ep;
} routes[] = {
    {"/health", "GET", EP_HEALTH},
    {"/ready", "GET", EP_READY},
    {"/v1/models", "GET", EP_MODELS},
    {"/v1/completions", "POST", EP_COMPLETIONS},
    {"/v1/chat/completions", "POST", EP_CHAT},
    {"/metrics", "GET", EP_METRICS},
    {"/v1/messages", "POST", EP_MESSAGES},
    {"/v1/messages/count_tokens", "POST", EP_COUNT_TOKENS},
    {"/v1/responses", "POST", EP_RESPONSES},
};

static void on_response(void *arg, td_http_req *req, int status)
{
    router_ops *o = arg;
    td_metrics_response(o->metrics, td_metrics_endpoint_of(td_http_req_path(req)), status);
}

/* 429 when the engine's queue is full: shed load before parsing the body. */
static bool queue_full(router_ops *o)
{
    if (!o->inner.load || o->max_waiting <= 0)
        return false;
    td_router_load l;
    load_of(o, &l);
    return l.waiting >= o->max_waiting;
}

static void generate(router_ops *o, td_http_req *req, bool chat)
{
    if (queue_full(o) && !o->rt.shutting_down) {
        char msg[160];
        snprintf(msg, sizeof msg, "the server is busy: %lld requests are already waiting; "
                 "retry later", (long long)o->max_waiting);
        send_error_h(req, 429, "rate_limit_error", "rate_limit_exceeded", "Retry-After: 1\r\n",
                     msg);
        return;
    }
    o->cur_session = session_of(req);
    o->cur_arrival = uv_hrtime();
    td_router_generate(&o->rt, req, chat);
    o->cur_session = NULL;
    o->cur_arrival = 0;
}

/* The Anthropic Messages API (api_anthropic_gen.c), with the same queue
 * limit and session ids as the OpenAI endpoints. */
static void messages(router_ops *o, td_http_req *req, bool count_only)
{
    if (!count_only && queue_full(o) && !o->rt.shutting_down) {
        td_anth_send_error(req, 429, "Retry-After: 1\r\n",
                           "the server is busy: too many requests are waiting; retry later");
        return;
    }
    o->cur_session = session_of(req);
    o->cur_arrival = uv_hrtime();
    td_router_anthropic(&o->rt, req, count_only, o->cur_session);
    o->cur_session = NULL;
    o->cur_arrival = 0;
}

/* The OpenAI Responses API (api_responses_gen.c), with the same queue
 * limit and session ids as the other generation endpoints. */
static void responses(router_ops *o, td_http_req *req)
{
    if (queue_full(o) && !o->rt.shutting_down) {
        send_error_h(req, 429, "rate_limit_error", "rate_limit_exceeded", "Retry-After: 1\r\n",
                     "the server is busy: too many requests are waiting; retry later");
        return;
    }
    o->cur_session = session_of(req);
    o->cur_arrival = uv_hrtime();
    td_router_responses(&o->rt, req);
    o->cur_session = NULL;
    o->cur_arrival = 0;
}

/* GET and DELETE /v1/responses/{id}: the answers the store keeps. */
static void stored_response(router_ops *o, td_http_req *req, const char *method,
                            const char *path)
{
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    if (!get && strcmp(method, "DELETE")) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s /v1/responses/{id} is not allowed; use GET or DELETE",
                 method);
        send_error_h(req, 405, "invalid_request_error", "method_not_allowed",
                     "Allow: GET, DELETE\r\n", msg);
        return;
    }
    td_router_stored_response(&o->rt, req, path, get);
}

static void on_request(void *arg, td_http_req *req)
{
    router_ops *o = arg;
    td_router *rt = &o->rt;
    const char *why;
    int status = td_http_req_error(req, &why);
    if (status) {
        td_router_error(req, status, NULL, status == 413 ? "request_too_large" : NULL,
                        "%s", why);
        return;
    }
    const char *path = td_http_req_path(req);
    const char *method = td_http_req_method(req);
    /* Probes stay open (a load balancer has no key); everything else,
     * /metrics and unknown paths included, needs one when keys are set. */
    if (strcmp(path, "/health") && strcmp(path, "/ready") &&
        !td_auth_check(o->auth, td_http_req_header(req, "Authorization"),
                       td_http_req_header(req, "x-api-key"))) {
        bool none = !td_http_req_header(req, "Authorization") &&
                    !td_http_req_header(req, "x-api-key");
        send_error_h(req, 401, "invalid_request_error", "invalid_api_key",
                     "WWW-Authenticate: Bearer realm=\"tandem\"\r\n",
                     none ? "You didn't provide an API key: send it as `Authorization: Bearer "
                            "KEY` or `x-api-key: KEY`."
                          : "Incorrect API key provided.");
        return;
    }
    if (td_resp_path_parse(path, NULL, NULL) != TD_RESP_PATH_NONE) {
        stored_response(o, req, method, path);
        return;
    }
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(path, routes[i].path))
            continue;
        bool head = !strcmp(method, "HEAD") && !strcmp(routes[i].method, "GET");
        if (strcmp(method, routes[i].method) && !head) {
            char allow[64], msg[512];
            snprintf(allow, sizeof allow, "Allow: %s\r\n", routes[i].method);
            snprintf(msg, sizeof msg, "%s %s is not allowed; use %s", method, path,
                     routes[i].method);
            send_error_h(req, 405, "invalid_request_error", "method_not_allowed", allow, msg);
            return;
        }
        switch (routes[i].ep) {
        case EP_HEALTH:
            td_router_send_json(req, 200, json_pack("{s:s}", "status", "ok"));
            return;
        case EP_READY: {
            bool ready = !rt->shutting_down && rt->engine.ready(rt->engine.ctx);
            td_router_send_json(req, ready ? 200 : 503,
                                json_pack("{s:s}", "status", ready ? "ready"
                                          : rt->shutting_down ? "shutting_down" : "loading"));
            return;
        }
        case EP_MODELS:
            models(rt, req);
            return;
        case EP_COMPLETIONS:
            generate(o, req, false);
            return;
        case EP_CHAT:
            generate(o, req, true);
            return;
        case EP_METRICS:
            metrics(o, req);
            return;
        case EP_MESSAGES:
        case EP_COUNT_TOKENS:
            messages(o, req, routes[i].ep == EP_COUNT_TOKENS);
            return;
        case EP_RESPONSES:
            responses(o, req);
            return;
        }
    }
    td_router_error(req, 404, NULL, "unknown_url", "Invalid URL (%s %s)", method, path);
}

/* ---- lifecycle --------------------------------------------------------------- */

td_err td_router_create(td_router **out, uv_loop_t *loop, const td_router_opts *opts,
                        char *err, size_t errlen)
{
    router_ops *o = calloc(1, sizeof *o);
    if (!o)
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    td_router *rt = &o->rt;
    rt->loop = loop;
    o->inner = opts->engine;
    rt->engine = (td_router_engine){
        .ctx = o, .ready = metered_ready, .context_len = metered_context_len,
        .submit = metered_submit, .cancel = metered_cancel, .pause = metered_pause,
        .load = metered_load,
    };
    o->max_waiting = opts->max_waiting ? opts->max_waiting : 256;
    rt->tok = opts->tok;
    rt->grace_ms = opts->shutdown_grace_ms ? opts->shutdown_grace_ms : 10000;
    rt->started = (long long)time(NULL);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    o->start_time = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    rt->id_salt = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)rt;
    td_err e = td_router_chat_ids_load(opts->tok, &rt->chat_ids, err, errlen);
    if (e)
        goto fail;
    if ((e = td_metrics_create(&o->metrics))) {
        td_errf(err, errlen, e, "out of memory");
        goto fail;
    }
    if ((e = td_auth_create(&o->auth, opts->api_key_file, opts->api_keys, err, errlen)))
        goto fail;
    size_t store_mib = opts->responses_store_mib ? opts->responses_store_mib : 64;
    if ((e = td_resp_store_create(&rt->responses, opts->responses_store_off ? 0
                                                  : store_mib << 20))) {
        td_errf(err, errlen, e, "out of memory");
        goto fail;
    }
    if (td_auth_count(o->auth))
        td_log(TD_LOG_INFO, "router: %zu API key(s): requests need one (except /health, "
               "/ready)", td_auth_count(o->auth));
    rt->model_id = strdup(opts->model_id ? opts->model_id : "model");
    json_t *idj = json_string(rt->model_id);
    rt->model_id_json = idj ? json_dumps(idj, JSON_ENCODE_ANY) : NULL;
    json_decref(idj);
    if (!rt->model_id || !rt->model_id_json) {
        e = td_errf(err, errlen, TD_EINVAL, "the model id must be valid UTF-8");
        goto fail;
    }
    td_http_opts ho = {.host = opts->host, .port = opts->port, .max_body = opts->max_body,
                       .write_high = opts->write_buffer, .on_request = on_request,
                       .on_response = on_response, .arg = o};
    if ((e = td_http_server_create(&rt->http, loop, &ho, err, errlen)))
        goto fail;
    uv_timer_init(loop, &rt->timer);
    rt->timer.data = rt;
    *out = rt;
    return TD_OK;
fail:
    td_metrics_destroy(o->metrics);
    td_auth_destroy(o->auth);
    td_resp_store_destroy(rt->responses);
    free(rt->model_id);
    free(rt->model_id_json);
    free(o);
    return e;
}

int td_router_port(const td_router *rt) { return td_http_server_port(rt->http); }

static void on_timer_closed(uv_handle_t *h)
{
    td_router *rt = h->data;
    if (rt->on_shutdown)
        rt->on_shutdown(rt->shutdown_arg);
}

static void on_drained(void *arg)
{
    td_router *rt = arg;
    rt->timer_stage = 2;  /* nothing left to cancel or close */
    uv_close((uv_handle_t *)&rt->timer, on_timer_closed);
}

/* Stage 1: the grace time is over: cancel what runs. Stage 2: connections
 * that still have not closed (a client that stopped reading) are closed. */
static void on_shutdown_timer(uv_timer_t *t)
{
    td_router *rt = t->data;
    if (rt->timer_stage == 0) {
        td_log(TD_LOG_INFO, "router: shutdown: cancelling requests still running");
        td_router_cancel_all(rt);
        rt->timer_stage = 1;
        uv_timer_start(&rt->timer, on_shutdown_timer, 2000, 0);
    } else {
        td_http_server_close_all(rt->http);
    }
}

void td_router_shutdown(td_router *rt, void (*cb)(void *arg), void *arg)
{
    rt->on_shutdown = cb;
    rt->shutdown_arg = arg;
    if (rt->shutting_down) {
        if (rt->timer_stage == 0) {  /* asked twice: skip the grace time */
            uv_timer_stop(&rt->timer);
            on_shutdown_timer(&rt->timer);
        }
        return;
    }
    rt->shutting_down = true;
    uv_timer_start(&rt->timer, on_shutdown_timer, rt->grace_ms, 0);
    td_http_server_drain(rt->http, on_drained, rt);
}

void td_router_destroy(td_router *rt)
{
    if (!rt)
        return;
    router_ops *o = ops_of(rt);
    td_http_server_destroy(rt->http);
    td_metrics_destroy(o->metrics);
    td_auth_destroy(o->auth);
    td_resp_store_destroy(rt->responses);
    free(rt->model_id);
    free(rt->model_id_json);
    free(o);
}
