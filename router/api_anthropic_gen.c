/* POST /v1/messages and /v1/messages/count_tokens: a decoded request
 * (api_anthropic.c) → prompt ids → the engine; tokens → text → stop
 * sequences → the DSML parser → the event encoder (api_anthropic_enc.c) →
 * the client. The lifecycle mirrors api_gen.c's td_gen (which is private
 * to that file): an anth_gen lives until both the engine has finished it
 * and the HTTP exchange has ended, and a congested stream pauses the
 * engine until the connection drains.
 *
 * Generations here are not in rt->gens (that list belongs to api_gen.c),
 * so they are kept in a list of their own for the shutdown cancel.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "router/api_anthropic.h"
#include "router/router_internal.h"

typedef struct anth_gen anth_gen;

struct anth_gen {
    td_router *rt;
    anth_gen *prev, *next;
    td_http_req *req;            /* NULL once the exchange has ended */
    uint64_t id;
    bool engine_done, text_done, paused, stream;
    size_t n_completion;
    td_tok_stream ts;
    td_router_stop stop;
    char **stops;                /* to name the stop sequence that matched */
    int nstops;
    char msg_id[48], tool_prefix[48];  /* the encoder points at these */
    td_dsml *dsml;
    td_anth_enc enc;
};

/* Generations in flight, per loop (one router per process in practice). */
static anth_gen *anth_gens;

static void gen_destroy(anth_gen *g)
{
    td_dsml_destroy(g->dsml);
    td_anth_enc_free(&g->enc);
    td_tok_stream_free(&g->ts);
    td_router_stop_free(&g->stop);
    for (int i = 0; i < g->nstops; i++)
        free(g->stops[i]);
    free(g->stops);
    free(g);
}

static void gen_maybe_free(anth_gen *g)
{
    if (!g->engine_done || g->req)
        return;
    if (g->prev)
        g->prev->next = g->next;
    else
        anth_gens = g->next;
    if (g->next)
        g->next->prev = g->prev;
    gen_destroy(g);
}

/* Stream: sends what the encoder produced. */
static void flush(anth_gen *g)
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
    anth_gen *g = arg;
    if (!g->req)
        return;
    td_anth_enc_event(&g->enc, ev);
    flush(g);
}

static void gen_complete(anth_gen *g, td_anth_stop why, const char *stop_sequence)
{
    g->text_done = true;
    td_http_req *req = g->req;
    if (!req)
        return;
    td_dsml_finish(g->dsml, NULL);  /* reports what it held back */
    td_anth_enc_finish(&g->enc, why, stop_sequence, g->n_completion);
    if (g->stream) {
        flush(g);
        g->req = NULL;
        td_http_stream_end(req);
        return;
    }
    g->req = NULL;
    if (g->enc.oom) {
        td_anth_send_error(req, 500, NULL, "out of memory");
        return;
    }
    td_http_head h = {.status = 200, .content_type = "application/json"};
    td_http_respond(req, &h, g->enc.out.data, g->enc.out.len);
}

static void gen_fail(anth_gen *g, int status, const char *msg)
{
    g->text_done = true;
    td_http_req *req = g->req;
    if (!req)
        return;
    if (!g->stream) {
        g->req = NULL;
        td_anth_send_error(req, status, NULL, msg);
        return;
    }
    g->enc.out.len = 0;
    td_anth_enc_error(&g->enc, status, msg);
    flush(g);
    g->req = NULL;
    td_http_stream_end(req);
}

static void feed(anth_gen *g, const char *s, size_t n, bool final)
{
    /* Nothing new and nothing held: skip the matcher, which would pass its
     * NULL buffer to memmem (UBSan; stopstr.c is not ours to change). */
    if (n == 0 && !g->stop.held)
        return;
    const char *out;
    size_t on;
    bool hit = td_router_stop_feed(&g->stop, s, n, final, &out, &on);
    td_dsml_feed(g->dsml, out, on);  /* fails only without memory */
    if (!hit)
        return;
    /* On a match the emitted text is the matcher's held text up to the
     * stop sequence, so the sequence starts right after it. */
    const char *seq = NULL;
    size_t rest = g->stop.held_len - on;
    for (int i = 0; i < g->nstops && !seq; i++)
        if (rest >= g->stop.lens[i] && !memcmp(out + on, g->stops[i], g->stop.lens[i]))
            seq = g->stops[i];
    g->rt->engine.cancel(g->rt->engine.ctx, g->id);
    gen_complete(g, TD_ANTH_STOP_SEQUENCE, seq);
}

/* ---- engine and HTTP callbacks ---------------------------------------------- */

static void on_token(void *arg, int32_t token)
{
    anth_gen *g = arg;
    if (g->text_done)
        return;
    g->n_completion++;
    const char *piece;
    size_t n;
    char err[128];
    if (td_tok_stream_push(&g->ts, token, &piece, &n, err, sizeof err)) {
        td_log(TD_LOG_ERROR, "router: %s: %s", g->enc.o.msg_id, err);
        g->rt->engine.cancel(g->rt->engine.ctx, g->id);
        gen_fail(g, 500, "the engine produced an invalid token");
        return;
    }
    feed(g, piece, n, false);
}

static void on_finish(void *arg, td_router_finish why, td_err err)
{
    anth_gen *g = arg;
    g->engine_done = true;
    if (!g->text_done) {
        const char *rest;
        size_t n;
        switch (why) {
        case TD_ROUTER_FINISH_STOP:
        case TD_ROUTER_FINISH_LENGTH:
            td_tok_stream_flush(&g->ts, &rest, &n);
            feed(g, rest, n, true);
            if (!g->text_done)
                gen_complete(g, why == TD_ROUTER_FINISH_STOP ? TD_ANTH_STOP_END_TURN
                                                             : TD_ANTH_STOP_MAX_TOKENS, NULL);
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
    anth_gen *g = arg;
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
    anth_gen *g = arg;
    if (g->paused) {
        g->paused = false;
        g->rt->engine.pause(g->rt->engine.ctx, g->id, false);
    }
}

/* ---- the handler ---------------------------------------------------------------- */

static void send_err(td_http_req *req, int status, const char *fmt, const char *arg)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, arg);
    td_anth_send_error(req, status, NULL, msg);
}

void td_router_anthropic(td_router *rt, td_http_req *req, bool count_only,
                         const char *session)
{
    if (!count_only && rt->shutting_down) {
        td_anth_send_error(req, 503, NULL, "the server is shutting down");
        return;
    }
    if (!count_only && !rt->engine.ready(rt->engine.ctx)) {
        td_anth_send_error(req, 503, NULL, "the engine is not ready yet (the model is loading)");
        return;
    }
    size_t blen;
    const char *body = td_http_req_body(req, &blen);
    td_anth_req r;
    td_anth_err e;
    if (td_anth_decode(body, blen, count_only ? TD_ANTH_COUNT_ONLY : 0, &r, &e)) {
        td_anth_send_error(req, e.status, NULL, e.message);
        return;
    }
    td_tok_ids prompt = {0};
    char err[256];
    td_err te = td_chat_render_ids(r.conv, rt->tok, &rt->chat_ids, &prompt, err, sizeof err);
    if (te) {
        td_anth_req_free(&r);
        send_err(req, te == TD_ENOMEM ? 500 : 400, "%s", err);
        return;
    }
    if (count_only) {
        td_anth_req_free(&r);
        td_router_send_json(req, 200, json_pack("{s:I}", "input_tokens",
                                                (json_int_t)prompt.len));
        td_tok_ids_free(&prompt);
        return;
    }
    int64_t ctx = rt->engine.context_len(rt->engine.ctx);
    if (prompt.len == 0 || (int64_t)prompt.len >= ctx) {
        char msg[256];
        snprintf(msg, sizeof msg, "prompt is too long: %zu tokens > %lld maximum",
                 prompt.len, (long long)ctx - 1);
        td_anth_send_error(req, 400, NULL, msg);
        goto out;
    }
    anth_gen *g = calloc(1, sizeof *g);
    if (!g || td_router_stop_init(&g->stop, r.stops, r.stop_lens, r.nstops)) {
        free(g);
        td_anth_send_error(req, 500, NULL, "out of memory");
        goto out;
    }
    g->rt = rt;
    g->req = req;
    g->stream = r.stream;
    /* The decoder's stop strings move here: we name the one that matched. */
    g->stops = r.stops;
    g->nstops = r.nstops;
    r.stops = NULL;
    r.nstops = 0;
    uint64_t n = ++rt->next_id;
    snprintf(g->msg_id, sizeof g->msg_id, "msg_%016llx%08llx", (unsigned long long)rt->id_salt,
             (unsigned long long)n);
    snprintf(g->tool_prefix, sizeof g->tool_prefix, "toolu_%016llx%08llx_",
             (unsigned long long)(rt->id_salt * 0x9E3779B97F4A7C15ull), (unsigned long long)n);
    td_anth_enc_opts eo = {.stream = r.stream, .parallel = r.parallel, .msg_id = g->msg_id,
                           .model = rt->model_id, .tool_id_prefix = g->tool_prefix,
                           .input_tokens = prompt.len};
    td_dsml_opts dopts = {.thinking = r.thinking, .tools = r.tools};
    if (td_anth_enc_init(&g->enc, &eo) || td_dsml_create(&g->dsml, &dopts, on_dsml, g)) {
        gen_destroy(g);
        td_anth_send_error(req, 500, NULL, "out of memory");
        goto out;
    }
    td_tok_stream_init(&g->ts, rt->tok, 0);
    int64_t max_tokens = r.max_tokens;
    if (max_tokens > ctx - (int64_t)prompt.len)
        max_tokens = ctx - (int64_t)prompt.len;
    r.sampling.seed = rt->id_salt ^ (n * 0x9E3779B97F4A7C15ull);
    td_router_gen_req gr = {
        .prompt = prompt.ids, .n_prompt = prompt.len, .max_tokens = max_tokens,
        .sampling = r.sampling, .stop_ids = &rt->chat_ids.eos, .n_stop_ids = 1,
        /* A session header wins; else metadata.user_id carries it. */
        .session_id = session ? NULL : r.session,
    };
    td_router_gen_cb cb = {.on_token = on_token, .on_finish = on_finish, .arg = g};
    te = rt->engine.submit(rt->engine.ctx, &gr, &cb, &g->id);
    if (te) {
        gen_destroy(g);
        send_err(req, 503, "the engine refused the request: %s", td_strerror(te));
        goto out;
    }
    g->next = anth_gens;
    if (anth_gens)
        anth_gens->prev = g;
    anth_gens = g;
    td_http_req_set_handlers(req, on_abort, on_drain, g);
    if (g->stream) {
        td_http_head h = {.status = 200, .content_type = "text/event-stream",
                          .extra_headers = "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"};
        td_http_stream_begin(req, &h);
        td_anth_enc_start(&g->enc);
        flush(g);
    }
out:
    td_tok_ids_free(&prompt);
    td_anth_req_free(&r);
}

void td_router_anthropic_cancel_all(td_router *rt)
{
    for (anth_gen *g = anth_gens; g; g = g->next)
        if (g->rt == rt && !g->engine_done)
            rt->engine.cancel(rt->engine.ctx, g->id);
}
