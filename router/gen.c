/* The generation lifecycle shared by every API (gen.h): the engine's
 * callbacks, stop strings, the output parser, backpressure, the end of the
 * answer. The bytes are the encoder's business (api_*_gen.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "router/gen.h"
#include "router/router_internal.h"

struct td_gen {
    td_router *rt;
    td_gen *prev, *next;         /* rt->gens: in flight, for the shutdown cancel */
    td_http_req *req;            /* NULL once the exchange has ended */
    uint64_t id;                 /* the engine's id */
    bool engine_done;            /* on_finish arrived */
    bool text_done;              /* the answer is complete; ignore tokens */
    bool paused;
    size_t n_completion;
    td_tok_stream ts;
    td_router_stop stop;
    td_dsml *dsml;               /* NULL: plain text */
    td_gen_enc *enc;
    char log_id[64];
};

static void gen_destroy(td_gen *g)
{
    td_dsml_destroy(g->dsml);
    td_tok_stream_free(&g->ts);
    td_router_stop_free(&g->stop);
    g->enc->ops->fini(g->enc);
    free(g->enc);
    free(g);
}

static void gen_maybe_free(td_gen *g)
{
    if (!g->engine_done || g->req)
        return;
    td_router *rt = g->rt;
    if (g->prev)
        g->prev->next = g->next;
    else
        rt->gens = g->next;
    if (g->next)
        g->next->prev = g->prev;
    gen_destroy(g);
}

/* Stream: sends what the encoder produced. A congested connection pauses
 * the engine until it drains; at the end of the answer there is nothing
 * left to pause. */
static void flush(td_gen *g, bool last)
{
    td_gen_enc *e = g->enc;
    if (!e->stream || !g->req || e->out.len == 0)
        return;
    td_http_stream_write(g->req, e->out.data, e->out.len);
    e->out.len = 0;
    if (!last && !g->paused && td_http_req_congested(g->req)) {
        g->paused = true;
        g->rt->engine.pause(g->rt->engine.ctx, g->id, true);
    }
}

static void on_dsml(void *arg, const td_dsml_event *ev)
{
    td_gen *g = arg;
    if (!g->req)
        return;
    g->enc->ops->event(g->enc, ev);
    flush(g, false);
}

/* Ends the answer and the exchange. */
static void gen_complete(td_gen *g, td_gen_end why, const char *stop_seq)
{
    g->text_done = true;
    td_http_req *req = g->req;
    if (!req)
        return;
    if (g->dsml)
        td_dsml_finish(g->dsml, NULL);  /* reports what it held back */
    td_gen_enc *e = g->enc;
    e->ops->finish(e, why, stop_seq, g->n_completion);
    if (e->stream) {
        flush(g, true);
        g->req = NULL;
        td_http_stream_end(req);
        return;
    }
    g->req = NULL;
    if (e->oom) {
        e->ops->send_error(req, 500, NULL, "out of memory");
        return;
    }
    td_http_head h = {.status = 200, .content_type = "application/json"};
    td_http_respond(req, &h, e->out.data, e->out.len);
}

/* Ends the answer with an error: an error event in a stream (its status line
 * is long gone), an error response otherwise. */
static void gen_fail(td_gen *g, int status, const char *code, const char *msg)
{
    g->text_done = true;
    td_http_req *req = g->req;
    if (!req)
        return;
    td_gen_enc *e = g->enc;
    if (!e->stream) {
        g->req = NULL;
        e->ops->send_error(req, status, code, msg);
        return;
    }
    e->out.len = 0;
    e->ops->error(e, status, code, msg);
    flush(g, true);
    g->req = NULL;
    td_http_stream_end(req);
}

static void feed(td_gen *g, const char *s, size_t n, bool final)
{
    /* Nothing new and nothing held: nothing to do (and no NULL buffer for
     * the matcher to pass on). */
    if (n == 0 && !g->stop.held)
        return;
    const char *out;
    size_t on;
    bool hit = td_router_stop_feed(&g->stop, s, n, final, &out, &on);
    if (g->dsml) {
        td_dsml_feed(g->dsml, out, on);  /* fails only without memory; then text is lost */
    } else if (on) {
        td_dsml_event ev = {.kind = TD_DSML_CONTENT, .text = out, .len = on};
        on_dsml(g, &ev);
    }
    if (!hit)
        return;
    /* On a match the emitted text is the matcher's held text up to the
     * stop string, so the string starts right after it. */
    const char *seq = NULL;
    size_t rest = g->stop.held_len - on;
    for (int i = 0; i < g->stop.n && !seq; i++)
        if (rest >= g->stop.lens[i] && !memcmp(out + on, g->stop.stops[i], g->stop.lens[i]))
            seq = g->stop.stops[i];
    g->rt->engine.cancel(g->rt->engine.ctx, g->id);
    gen_complete(g, TD_GEN_END_STOP_SEQ, seq);
}

/* ---- engine callbacks ---------------------------------------------------- */

static void on_token(void *arg, int32_t token)
{
    td_gen *g = arg;
    if (g->text_done)
        return;
    g->n_completion++;
    const char *piece;
    size_t n;
    char err[128];
    if (td_tok_stream_push(&g->ts, token, &piece, &n, err, sizeof err)) {
        td_log(TD_LOG_ERROR, "router: %s: %s", g->log_id, err);
        g->rt->engine.cancel(g->rt->engine.ctx, g->id);
        gen_fail(g, 500, "internal_error", "the engine produced an invalid token");
        return;
    }
    feed(g, piece, n, false);
}

static void on_cached(void *arg, size_t n) { ((td_gen *)arg)->enc->cached_tokens = n; }

static void on_finish(void *arg, td_router_finish why, td_err err)
{
    td_gen *g = arg;
    g->engine_done = true;
    if (!g->text_done) {
        const char *rest;
        size_t n;
        switch (why) {
        case TD_ROUTER_FINISH_STOP:
        case TD_ROUTER_FINISH_LENGTH:
            /* Bytes of an unfinished character come out as U+FFFD, as
             * `tandem generate` prints them. */
            td_tok_stream_flush(&g->ts, &rest, &n);
            feed(g, rest, n, true);
            if (!g->text_done)
                gen_complete(g, why == TD_ROUTER_FINISH_STOP ? TD_GEN_END_STOP
                                                             : TD_GEN_END_LENGTH, NULL);
            break;
        case TD_ROUTER_FINISH_CANCELLED:
            gen_fail(g, 503, "cancelled", g->enc->ops->cancelled);
            break;
        case TD_ROUTER_FINISH_ERROR:
            gen_fail(g, 500, "internal_error", td_strerror(err));
            break;
        }
    }
    gen_maybe_free(g);
}

/* ---- HTTP callbacks ------------------------------------------------------ */

static void on_abort(void *arg)
{
    td_gen *g = arg;
    g->text_done = true;
    g->rt->engine.cancel(g->rt->engine.ctx, g->id);
    td_http_req *req = g->req;
    g->req = NULL;
    if (req)
        td_http_stream_end(req);  /* writes nothing: frees the request */
    gen_maybe_free(g);
}

static void on_drain(void *arg)
{
    td_gen *g = arg;
    if (g->paused) {
        g->paused = false;
        g->rt->engine.pause(g->rt->engine.ctx, g->id, false);
    }
}

/* ---- start and shutdown ------------------------------------------------------ */

bool td_gen_admit(td_router *rt, td_http_req *req, const td_gen_enc_ops *ops)
{
    if (rt->shutting_down) {
        ops->send_error(req, 503, "shutting_down", "the server is shutting down");
        return false;
    }
    if (!rt->engine.ready(rt->engine.ctx)) {
        ops->send_error(req, 503, "engine_not_ready",
                        "the engine is not ready yet (the model is loading)");
        return false;
    }
    return true;
}

void td_gen_start(td_router *rt, td_http_req *req, const td_gen_opts *o)
{
    td_gen_enc *e = o->enc;
    const td_gen_enc_ops *ops = e->ops;
    td_gen *g = calloc(1, sizeof *g);
    if (!g || td_router_stop_init(&g->stop, o->stops, o->stop_lens, o->nstops)) {
        free(g);
        ops->fini(e);
        free(e);
        ops->send_error(req, 500, NULL, "out of memory");
        return;
    }
    g->rt = rt;
    g->req = req;
    g->enc = e;
    snprintf(g->log_id, sizeof g->log_id, "%s", o->log_id);
    if (o->dsml && td_dsml_create(&g->dsml, o->dsml, on_dsml, g)) {
        gen_destroy(g);
        ops->send_error(req, 500, NULL, "out of memory");
        return;
    }
    /* Special tokens are decoded like any other (flags 0), as `tandem
     * generate` does: the same ids give the same text. */
    td_tok_stream_init(&g->ts, rt->tok, 0);
    td_router_gen_cb cb = {.on_token = on_token, .on_finish = on_finish,
                           .on_cached = on_cached, .arg = g};
    td_err err = rt->engine.submit(rt->engine.ctx, &o->run, &cb, &g->id);
    if (err) {
        gen_destroy(g);  /* not linked yet */
        char msg[256];
        snprintf(msg, sizeof msg, "the engine refused the request: %s", td_strerror(err));
        ops->send_error(req, 503, "engine_error", msg);
        return;
    }
    g->next = rt->gens;
    if (rt->gens)
        rt->gens->prev = g;
    rt->gens = g;
    td_http_req_set_handlers(req, on_abort, on_drain, g);
    if (e->stream) {
        td_http_head h = {.status = 200, .content_type = "text/event-stream",
                          .extra_headers = "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"};
        td_http_stream_begin(req, &h);
        if (ops->start)
            ops->start(e);
        flush(g, false);
    }
}

void td_router_cancel_all(td_router *rt)
{
    for (td_gen *g = rt->gens; g; g = g->next)
        if (!g->engine_done)
            rt->engine.cancel(rt->engine.ctx, g->id);
}
