/* The router: routes, the small endpoints, errors, shutdown. Generation
 * endpoints live in api_gen.c. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "router/router_internal.h"

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

void td_router_send_error(td_http_req *req, const td_router_apierr *e)
{
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

/* ---- routing ---------------------------------------------------------------- */

typedef enum { EP_HEALTH, EP_READY, EP_MODELS, EP_COMPLETIONS, EP_CHAT } endpoint;

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
};

static void on_request(void *arg, td_http_req *req)
{
    td_router *rt = arg;
    const char *why;
    int status = td_http_req_error(req, &why);
    if (status) {
        td_router_error(req, status, NULL, status == 413 ? "request_too_large" : NULL,
                        "%s", why);
        return;
    }
    const char *path = td_http_req_path(req);
    const char *method = td_http_req_method(req);
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(path, routes[i].path))
            continue;
        bool head = !strcmp(method, "HEAD") && !strcmp(routes[i].method, "GET");
        if (strcmp(method, routes[i].method) && !head) {
            char allow[64];
            snprintf(allow, sizeof allow, "Allow: %s\r\n", routes[i].method);
            td_router_apierr e = {.status = 405, .code = "method_not_allowed"};
            snprintf(e.message, sizeof e.message, "%s %s is not allowed; use %s", method,
                     path, routes[i].method);
            /* send_error with an extra header: build it by hand. */
            json_t *v = json_pack("{s:{s:s, s:s, s:n, s:s}}", "error", "message", e.message,
                                  "type", "invalid_request_error", "param", "code", e.code);
            char *s = json_dumps(v, JSON_COMPACT);
            json_decref(v);
            td_http_head h = {.status = 405, .content_type = "application/json",
                              .extra_headers = allow};
            td_http_respond(req, &h, s ? s : "", s ? strlen(s) : 0);
            free(s);
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
            td_router_generate(rt, req, false);
            return;
        case EP_CHAT:
            td_router_generate(rt, req, true);
            return;
        }
    }
    td_router_error(req, 404, NULL, "unknown_url", "Invalid URL (%s %s)", method, path);
}

/* ---- lifecycle --------------------------------------------------------------- */

td_err td_router_create(td_router **out, uv_loop_t *loop, const td_router_opts *opts,
                        char *err, size_t errlen)
{
    td_router *rt = calloc(1, sizeof *rt);
    if (!rt)
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    rt->loop = loop;
    rt->engine = opts->engine;
    rt->tok = opts->tok;
    rt->grace_ms = opts->shutdown_grace_ms ? opts->shutdown_grace_ms : 10000;
    rt->started = (long long)time(NULL);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    rt->id_salt = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)rt;
    td_err e = td_router_chat_ids_load(opts->tok, &rt->chat_ids, err, errlen);
    if (e)
        goto fail;
    rt->model_id = strdup(opts->model_id ? opts->model_id : "model");
    json_t *idj = json_string(rt->model_id);
    rt->model_id_json = idj ? json_dumps(idj, JSON_ENCODE_ANY) : NULL;
    json_decref(idj);
    if (!rt->model_id || !rt->model_id_json) {
        e = td_errf(err, errlen, TD_EINVAL, "the model id must be valid UTF-8");
        goto fail;
    }
    td_http_opts ho = {.host = opts->host, .port = opts->port, .max_body = opts->max_body,
                       .write_high = opts->write_buffer, .on_request = on_request, .arg = rt};
    if ((e = td_http_server_create(&rt->http, loop, &ho, err, errlen)))
        goto fail;
    uv_timer_init(loop, &rt->timer);
    rt->timer.data = rt;
    *out = rt;
    return TD_OK;
fail:
    free(rt->model_id);
    free(rt->model_id_json);
    free(rt);
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
    td_http_server_destroy(rt->http);
    free(rt->model_id);
    free(rt->model_id_json);
    free(rt);
}
