/* POST /v1/responses: a decoded request (api_responses.c) → prompt ids →
 * the engine; tokens → text → the DSML parser → the event encoder
 * (api_responses_enc.c) → the client. The lifecycle mirrors
 * api_anthropic_gen.c: a resp_gen lives until both the engine has finished
 * it and the HTTP exchange has ended, and a congested stream pauses the
 * engine until the connection drains. The Responses API has no stop
 * strings, so no stop matcher sits in between. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "router/api_responses.h"
#include "router/router_internal.h"

typedef struct resp_gen resp_gen;

struct resp_gen {
    td_router *rt;
    resp_gen *prev, *next;
    td_http_req *req;            /* NULL once the exchange has ended */
    uint64_t id;
    bool engine_done, text_done, paused, stream;
    size_t n_completion;
    td_tok_stream ts;
    char resp_id[48];            /* the encoder points at this */
    td_dsml *dsml;
    td_resp_enc enc;
};

/* Generations in flight, per loop (one router per process in practice). */
static resp_gen *resp_gens;

static void gen_destroy(resp_gen *g)
{
    td_dsml_destroy(g->dsml);
    td_resp_enc_free(&g->enc);
    td_tok_stream_free(&g->ts);
    free(g);
}

static void gen_maybe_free(resp_gen *g)
{
    if (!g->engine_done || g->req)
        return;
    if (g->prev)
        g->prev->next = g->next;
    else
        resp_gens = g->next;
    if (g->next)
        g->next->prev = g->prev;
    gen_destroy(g);
}

static void flush(resp_gen *g)
{
    if (!g->stream || !g->req || g->enc.out.len == 0)
        return;
    td_http_stream_write(g->req, g->enc.out.data, g->enc.out.len);
    g->enc.out.len = 0;
    if (!g->paused && td_http_req_congested(g->req)) {
        g->paused = true;
        g->rt->engine.pause(g->rt->engine.ctx, g->id, true);
    }
}

static void on_dsml(void *arg, const td_dsml_event *ev)
{
    resp_gen *g = arg;
    if (!g->req)
        return;
    td_resp_enc_event(&g->enc, ev);
    flush(g);
}

static void gen_complete(resp_gen *g, bool incomplete)
{
    g->text_done = true;
    td_http_req *req = g->req;
    if (!req)
        return;
    td_dsml_finish(g->dsml, NULL);  /* reports what it held back */
    td_resp_enc_finish(&g->enc, incomplete, g->n_completion);
    if (g->stream) {
        flush(g);
        g->req = NULL;
        td_http_stream_end(req);
        return;
    }
    g->req = NULL;
    if (g->enc.oom) {
        td_router_error(req, 500, NULL, NULL, "out of memory");
        return;
    }
    td_http_head h = {.status = 200, .content_type = "application/json"};
    td_http_respond(req, &h, g->enc.out.data, g->enc.out.len);
}

static void gen_fail(resp_gen *g, int status, const char *msg)
{
    g->text_done = true;
    td_http_req *req = g->req;
    if (!req)
        return;
    if (!g->stream) {
        g->req = NULL;
        td_router_error(req, status, NULL, NULL, "%s", msg);
        return;
    }
    g->enc.out.len = 0;
    td_resp_enc_error(&g->enc, status, msg);
    flush(g);
    g->req = NULL;
    td_http_stream_end(req);
}

/* ---- engine and HTTP callbacks ---------------------------------------------- */

static void on_token(void *arg, int32_t token)
{
    resp_gen *g = arg;
    if (g->text_done)
        return;
    g->n_completion++;
    const char *piece;
    size_t n;
    char err[128];
    if (td_tok_stream_push(&g->ts, token, &piece, &n, err, sizeof err)) {
        td_log(TD_LOG_ERROR, "router: resp_%s: %s", g->resp_id, err);
        g->rt->engine.cancel(g->rt->engine.ctx, g->id);
        gen_fail(g, 500, "the engine produced an invalid token");
        return;
    }
    if (n)
        td_dsml_feed(g->dsml, piece, n);  /* fails only without memory */
}

static void on_finish(void *arg, td_router_finish why, td_err err)
{
    resp_gen *g = arg;
    g->engine_done = true;
    if (!g->text_done) {
        const char *rest;
        size_t n;
        switch (why) {
        case TD_ROUTER_FINISH_STOP:
        case TD_ROUTER_FINISH_LENGTH:
            td_tok_stream_flush(&g->ts, &rest, &n);
            if (n)
                td_dsml_feed(g->dsml, rest, n);
            gen_complete(g, why == TD_ROUTER_FINISH_LENGTH);
            break;
        case TD_ROUTER_FINISH_CANCELLED:
            gen_fail(g, 503, "the request was cancelled (the server is shutting down)");
            break;
        case TD_ROUTER_FINISH_ERROR:
            gen_fail(g, 500, td_strerror(err));
            break;
        }
    }
    gen_maybe_free(g);
}

static void on_abort(void *arg)
{
    resp_gen *g = arg;
    g->text_done = true;
    g->rt->engine.cancel(g->rt->engine.ctx, g->id);
    td_http_req *req = g->req;
    g->req = NULL;
    if (req)
        td_http_stream_end(req);
    gen_maybe_free(g);
}

static void on_drain(void *arg)
{
    resp_gen *g = arg;
    if (g->paused) {
        g->paused = false;
        g->rt->engine.pause(g->rt->engine.ctx, g->id, false);
    }
}

/* ---- the handler ---------------------------------------------------------------- */

void td_router_responses(td_router *rt, td_http_req *req)
{
    if (rt->shutting_down) {
        td_router_error(req, 503, NULL, NULL, "the server is shutting down");
        return;
    }
    if (!rt->engine.ready(rt->engine.ctx)) {
        td_router_error(req, 503, NULL, NULL,
                        "the engine is not ready yet (the model is loading)");
        return;
    }
    size_t blen;
    const char *body = td_http_req_body(req, &blen);
    td_resp_req r;
    td_resp_err e;
    if (td_resp_decode(body, blen, &r, &e)) {
        td_router_error(req, e.status, e.param, NULL, "%s", e.message);
        return;
    }
    td_tok_ids prompt = {0};
    char err[256];
    td_err te = td_chat_render_ids(r.conv, rt->tok, &rt->chat_ids, &prompt, err, sizeof err);
    if (te) {
        td_router_error(req, te == TD_ENOMEM ? 500 : 400, "input", NULL, "%s", err);
        goto out;
    }
    int64_t ctx = rt->engine.context_len(rt->engine.ctx);
    if (prompt.len == 0 || (int64_t)prompt.len >= ctx) {
        td_router_error(req, 400, "input", "context_length_exceeded",
                        "the input is too long: %zu tokens > %lld maximum", prompt.len,
                        (long long)ctx - 1);
        goto out;
    }
    resp_gen *g = calloc(1, sizeof *g);
    if (!g) {
        td_router_error(req, 500, NULL, NULL, "out of memory");
        goto out;
    }
    g->rt = rt;
    g->req = req;
    g->stream = r.stream;
    uint64_t n = ++rt->next_id;
    snprintf(g->resp_id, sizeof g->resp_id, "%016llx%08llx", (unsigned long long)rt->id_salt,
             (unsigned long long)n);
    td_resp_enc_opts eo = {.stream = r.stream, .parallel = r.parallel, .id = g->resp_id,
                           .model = rt->model_id, .created_at = (long long)time(NULL),
                           .input_tokens = prompt.len};
    td_dsml_opts dopts = {.thinking = r.thinking, .tools = r.tools};
    if (td_resp_enc_init(&g->enc, &eo) || td_dsml_create(&g->dsml, &dopts, on_dsml, g)) {
        gen_destroy(g);
        td_router_error(req, 500, NULL, NULL, "out of memory");
        goto out;
    }
    td_tok_stream_init(&g->ts, rt->tok, 0);
    int64_t max_tokens = r.max_tokens > 0 ? r.max_tokens : ctx;
    if (max_tokens > ctx - (int64_t)prompt.len)
        max_tokens = ctx - (int64_t)prompt.len;
    r.sampling.seed = rt->id_salt ^ (n * 0x9E3779B97F4A7C15ull);
    td_router_gen_req gr = {
        .prompt = prompt.ids, .n_prompt = prompt.len, .max_tokens = max_tokens,
        .sampling = r.sampling, .stop_ids = &rt->chat_ids.eos, .n_stop_ids = 1,
    };
    td_router_gen_cb cb = {.on_token = on_token, .on_finish = on_finish, .arg = g};
    te = rt->engine.submit(rt->engine.ctx, &gr, &cb, &g->id);
    if (te) {
        gen_destroy(g);
        td_router_error(req, 503, NULL, NULL, "the engine refused the request: %s",
                        td_strerror(te));
        goto out;
    }
    g->next = resp_gens;
    if (resp_gens)
        resp_gens->prev = g;
    resp_gens = g;
    td_http_req_set_handlers(req, on_abort, on_drain, g);
    if (g->stream) {
        td_http_head h = {.status = 200, .content_type = "text/event-stream",
                          .extra_headers = "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"};
        td_http_stream_begin(req, &h);
        td_resp_enc_start(&g->enc);
        flush(g);
    }
out:
    td_tok_ids_free(&prompt);
    td_resp_req_free(&r);
}

void td_router_responses_cancel_all(td_router *rt)
{
    for (resp_gen *g = resp_gens; g; g = g->next)
        if (g->rt == rt && !g->engine_done)
            rt->engine.cancel(rt->engine.ctx, g->id);
}
