/* One generation request, from the parsed body to the last byte of the
 * answer: submit to the engine, decode tokens to text (UTF-8 safe), find
 * stop strings, and answer as one JSON object or as server-sent events.
 *
 * A td_gen lives until both the engine has finished it (on_finish) and the
 * HTTP exchange has ended; either may come first (a stop string ends the
 * answer before the engine hears the cancel; a client that leaves ends the
 * exchange before the engine stops).
 *
 * Chat answers go through the DSML parser (router/dsml.h): reasoning (before
 * </think> in thinking mode) becomes reasoning_content, <｜DSML｜tool_calls>
 * blocks become tool_calls, the rest content; in a stream each arrives as
 * its own delta as soon as it is decided.
 *
 * Backpressure: when the connection's write queue passes its high watermark
 * the engine is asked to pause this request, and to resume on drain, so a
 * slow reader costs a bounded amount of memory, not a growing buffer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "router/dsml.h"
#include "router/router_internal.h"

typedef struct {
    char id[40];                 /* call_... */
    td_tok_bytes name, args;
    bool done, aborted;
} gen_call;

struct td_gen {
    td_router *rt;
    td_gen *prev, *next;
    td_http_req *req;            /* NULL once the exchange has ended */
    uint64_t id;                 /* the engine's id */
    bool engine_done;            /* on_finish arrived */
    bool text_done;              /* the answer is complete; ignore tokens */
    bool paused;
    bool chat, stream, include_usage;
    size_t n_prompt, n_completion;
    char resp_id[48];
    long long created;
    td_tok_stream ts;
    td_router_stop stop;
    td_tok_bytes text;           /* non-stream: the answer; stream: one event */
    td_tok_bytes prefix;         /* stream: `data: {"id":...,"model":...,` */
    /* chat */
    td_dsml *dsml;
    bool thinking, parallel;
    td_tok_bytes reasoning;      /* non-stream: reasoning_content */
    gen_call *calls;             /* tool calls reported so far */
    int ncalls;
    int calls_ok, calls_aborted; /* among the calls the answer carries */
};

/* ---- JSON text ---------------------------------------------------------- */

static int append(td_tok_bytes *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->len + n + 1)
            nc *= 2;
        char *nd = realloc(b->data, nc);
        if (!nd)
            return -1;
        b->data = nd;
        b->cap = nc;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static int appends(td_tok_bytes *b, const char *s) { return append(b, s, strlen(s)); }

int td_router_json_escape(td_tok_bytes *b, const char *s, size_t n)
{
    size_t run = 0;  /* bytes copied as they are, in one append */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        if (append(b, s + run, i - run))
            return -1;
        char esc[8];
        switch (ch) {
        case '"': memcpy(esc, "\\\"", 3); break;
        case '\\': memcpy(esc, "\\\\", 3); break;
        case '\n': memcpy(esc, "\\n", 3); break;
        case '\r': memcpy(esc, "\\r", 3); break;
        case '\t': memcpy(esc, "\\t", 3); break;
        default: snprintf(esc, sizeof esc, "\\u%04x", ch); break;
        }
        if (appends(b, esc))
            return -1;
        run = i + 1;
    }
    return append(b, s + run, n - run);
}

/* ---- the answer ---------------------------------------------------------- */

static void gen_destroy(td_gen *g)
{
    td_dsml_destroy(g->dsml);
    td_tok_bytes_free(&g->reasoning);
    for (int i = 0; i < g->ncalls; i++) {
        td_tok_bytes_free(&g->calls[i].name);
        td_tok_bytes_free(&g->calls[i].args);
    }
    free(g->calls);
    td_tok_stream_free(&g->ts);
    td_router_stop_free(&g->stop);
    td_tok_bytes_free(&g->text);
    td_tok_bytes_free(&g->prefix);
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

static void stream_event(td_gen *g)
{
    appends(&g->text, "\n\n");
    td_http_stream_write(g->req, g->text.data, g->text.len);
    g->text.len = 0;
    if (!g->paused && td_http_req_congested(g->req)) {
        g->paused = true;
        g->rt->engine.pause(g->rt->engine.ctx, g->id, true);
    }
}

/* Text that is final (past any stop-string doubt) goes to the client. */
static void gen_emit(td_gen *g, const char *s, size_t n)
{
    if (!n || !g->req)
        return;
    if (!g->stream) {
        append(&g->text, s, n);
        return;
    }
    g->text.len = 0;
    append(&g->text, g->prefix.data, g->prefix.len);
    appends(&g->text, g->chat ? "\"choices\":[{\"index\":0,\"delta\":{\"content\":\""
                              : "\"choices\":[{\"index\":0,\"text\":\"");
    td_router_json_escape(&g->text, s, n);
    appends(&g->text, g->chat ? "\"},\"logprobs\":null,\"finish_reason\":null}]}"
                              : "\",\"logprobs\":null,\"finish_reason\":null}]}");
    stream_event(g);
}

/* ---- chat: reasoning, content and tool calls ------------------------------------ */

static void stream_chunk_begin(td_gen *g)
{
    g->text.len = 0;
    append(&g->text, g->prefix.data, g->prefix.len);
    appends(&g->text, "\"choices\":[{\"index\":0,\"delta\":{");
}

static void stream_chunk_end(td_gen *g)
{
    appends(&g->text, "},\"logprobs\":null,\"finish_reason\":null}]}");
    stream_event(g);
}

static gen_call *call_at(td_gen *g, int index)
{
    return index >= 0 && index < g->ncalls ? &g->calls[index] : NULL;
}

/* Events of the output parser. Call i of the output is calls[i]; with
 * parallel_tool_calls false only call 0 is kept. */
static void on_dsml(void *arg, const td_dsml_event *ev)
{
    td_gen *g = arg;
    if (!g->req)
        return;
    gen_call *c = call_at(g, ev->index);
    char head[160];
    switch (ev->kind) {
    case TD_DSML_CONTENT:
        gen_emit(g, ev->text, ev->len);
        break;
    case TD_DSML_REASONING:
        if (!g->stream) {
            append(&g->reasoning, ev->text, ev->len);
            break;
        }
        stream_chunk_begin(g);
        appends(&g->text, "\"reasoning_content\":\"");
        td_router_json_escape(&g->text, ev->text, ev->len);
        appends(&g->text, "\"");
        stream_chunk_end(g);
        break;
    case TD_DSML_CALL_BEGIN: {
        if ((!g->parallel && ev->index > 0) || ev->index != g->ncalls)
            break;
        gen_call *nc = realloc(g->calls, (size_t)(g->ncalls + 1) * sizeof *nc);
        if (!nc)
            break;
        g->calls = nc;
        c = &nc[g->ncalls++];
        memset(c, 0, sizeof *c);
        td_router *rt = g->rt;
        snprintf(c->id, sizeof c->id, "call_%016llx%08llx",
                 (unsigned long long)(rt->id_salt * 0x9E3779B97F4A7C15ull),
                 (unsigned long long)++rt->next_id);
        append(&c->name, ev->text, ev->len);
        if (!g->stream)
            break;
        stream_chunk_begin(g);
        snprintf(head, sizeof head, "\"tool_calls\":[{\"index\":%d,\"id\":\"%s\","
                 "\"type\":\"function\",\"function\":{\"name\":\"", ev->index, c->id);
        appends(&g->text, head);
        td_router_json_escape(&g->text, ev->text, ev->len);
        appends(&g->text, "\",\"arguments\":\"\"}}]");
        stream_chunk_end(g);
        break;
    }
    case TD_DSML_CALL_ARGS:
        if (!c)
            break;
        append(&c->args, ev->text, ev->len);
        if (!g->stream)
            break;
        stream_chunk_begin(g);
        snprintf(head, sizeof head, "\"tool_calls\":[{\"index\":%d,\"function\":"
                 "{\"arguments\":\"", ev->index);
        appends(&g->text, head);
        td_router_json_escape(&g->text, ev->text, ev->len);
        appends(&g->text, "\"}}]");
        stream_chunk_end(g);
        break;
    case TD_DSML_CALL_END:
        if (c) {
            c->done = true;
            g->calls_ok++;
        }
        break;
    case TD_DSML_CALL_ABORT:
        /* A stream cannot take back what it sent: the call's arguments stay
         * incomplete and the finish reason is not "tool_calls". */
        if (c) {
            c->aborted = true;
            g->calls_aborted++;
        }
        break;
    }
}

/* The chat message of a non-streamed answer. */
static json_t *chat_message(td_gen *g, json_t *content)
{
    json_t *msg = json_pack("{s:s}", "role", "assistant");
    json_t *calls = json_array();
    for (int i = 0; i < g->ncalls; i++) {
        gen_call *c = &g->calls[i];
        if (!c->done || c->aborted)
            continue;
        json_array_append_new(calls, json_pack("{s:s, s:s, s:{s:s%, s:s%}}", "id", c->id,
            "type", "function", "function", "name", c->name.data ? c->name.data : "",
            c->name.len, "arguments", c->args.data ? c->args.data : "", c->args.len));
    }
    bool has_calls = json_array_size(calls) > 0;
    if (has_calls && json_string_length(content) == 0) {
        json_decref(content);
        content = json_null();
    }
    json_object_set_new(msg, "content", content);
    if (g->thinking) {
        json_t *r = json_stringn(g->reasoning.data ? g->reasoning.data : "", g->reasoning.len);
        json_object_set_new(msg, "reasoning_content", r ? r : json_string(""));
    }
    if (has_calls)
        json_object_set_new(msg, "tool_calls", calls);
    else
        json_decref(calls);
    return msg;
}

static json_t *usage_json(const td_gen *g)
{
    return json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)g->n_prompt,
                     "completion_tokens", (json_int_t)g->n_completion,
                     "total_tokens", (json_int_t)(g->n_prompt + g->n_completion));
}

/* Ends the answer with a finish reason and ends the exchange. */
static void gen_complete(td_gen *g, const char *reason)
{
    g->text_done = true;
    td_http_req *req = g->req;
    if (!req)
        return;
    td_router *rt = g->rt;
    if (g->dsml) {
        /* What the parser held back comes out now; an answer that ended
         * with complete tool calls (and none broken) finishes "tool_calls". */
        td_dsml_finish(g->dsml, NULL);
        if (!strcmp(reason, "stop") && g->calls_ok > 0 && g->calls_aborted == 0)
            reason = "tool_calls";
    }
    if (g->stream) {
        char tail[160];
        g->text.len = 0;
        append(&g->text, g->prefix.data, g->prefix.len);
        snprintf(tail, sizeof tail,
                 g->chat ? "\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,"
                           "\"finish_reason\":\"%s\"}]}"
                         : "\"choices\":[{\"index\":0,\"text\":\"\",\"logprobs\":null,"
                           "\"finish_reason\":\"%s\"}]}", reason);
        appends(&g->text, tail);
        stream_event(g);
        if (g->include_usage) {
            json_t *uj = usage_json(g);
            char *u = uj ? json_dumps(uj, JSON_COMPACT) : NULL;
            json_decref(uj);
            append(&g->text, g->prefix.data, g->prefix.len);
            appends(&g->text, "\"choices\":[],\"usage\":");
            if (u)
                appends(&g->text, u);
            appends(&g->text, "}");
            free(u);
            stream_event(g);
        }
        appends(&g->text, "data: [DONE]");
        stream_event(g);
        g->req = NULL;
        td_http_stream_end(req);
        return;
    }
    json_t *text = json_stringn(g->text.data ? g->text.data : "", g->text.len);
    if (!text)
        text = json_string("");
    json_t *choice = json_object();
    json_object_set_new(choice, "index", json_integer(0));
    if (g->chat)
        json_object_set_new(choice, "message", chat_message(g, text));
    else
        json_object_set_new(choice, "text", text);
    json_object_set_new(choice, "logprobs", json_null());
    json_object_set_new(choice, "finish_reason", json_string(reason));
    json_t *obj = json_pack("{s:s, s:s, s:I, s:s, s:[o], s:o}", "id", g->resp_id,
                            "object", g->chat ? "chat.completion" : "text_completion",
                            "created", (json_int_t)g->created, "model", rt->model_id,
                            "choices", choice, "usage", usage_json(g));
    g->req = NULL;
    td_router_send_json(req, 200, obj);
}

/* Ends the answer with an error: an error event in a stream (its status line
 * is long gone), an error response otherwise. */
static void gen_fail(td_gen *g, int status, const char *code, const char *msg)
{
    g->text_done = true;
    td_http_req *req = g->req;
    if (!req)
        return;
    g->req = NULL;
    if (!g->stream) {
        td_router_error(req, status, NULL, code, "%s", msg);
        return;
    }
    json_t *err = json_pack("{s:{s:s, s:s, s:n, s:s}}", "error", "message", msg, "type",
                            status >= 500 ? "server_error" : "invalid_request_error",
                            "param", "code", code);
    char *s = json_dumps(err, JSON_COMPACT);
    json_decref(err);
    g->text.len = 0;
    appends(&g->text, "data: ");
    if (s)
        appends(&g->text, s);
    free(s);
    appends(&g->text, "\n\ndata: [DONE]\n\n");
    td_http_stream_write(req, g->text.data, g->text.len);
    td_http_stream_end(req);
}

static void feed(td_gen *g, const char *s, size_t n, bool final)
{
    const char *out;
    size_t on;
    bool hit = td_router_stop_feed(&g->stop, s, n, final, &out, &on);
    if (g->dsml)
        td_dsml_feed(g->dsml, out, on);  /* fails only without memory; then text is lost */
    else
        gen_emit(g, out, on);
    if (hit) {
        g->rt->engine.cancel(g->rt->engine.ctx, g->id);
        gen_complete(g, "stop");
    }
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
        td_log(TD_LOG_ERROR, "router: %s: %s", g->resp_id, err);
        g->rt->engine.cancel(g->rt->engine.ctx, g->id);
        gen_fail(g, 500, "internal_error", "the engine produced an invalid token");
        return;
    }
    feed(g, piece, n, false);
}

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
                gen_complete(g, why == TD_ROUTER_FINISH_STOP ? "stop" : "length");
            break;
        case TD_ROUTER_FINISH_CANCELLED:
            gen_fail(g, 503, "cancelled", "the request was cancelled: the server is "
                     "shutting down");
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

/* ---- the handler ----------------------------------------------------------- */

static void make_prefix(td_gen *g)
{
    char head[160];
    snprintf(head, sizeof head, "data: {\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,"
             "\"model\":", g->resp_id, g->chat ? "chat.completion.chunk" : "text_completion",
             g->created);
    appends(&g->prefix, head);
    appends(&g->prefix, g->rt->model_id_json);
    appends(&g->prefix, ",");
}

void td_router_generate(td_router *rt, td_http_req *req, bool chat)
{
    if (rt->shutting_down) {
        td_router_error(req, 503, NULL, "shutting_down", "the server is shutting down");
        return;
    }
    if (!rt->engine.ready(rt->engine.ctx)) {
        td_router_error(req, 503, NULL, "engine_not_ready",
                        "the engine is not ready yet (the model is loading)");
        return;
    }
    size_t blen;
    const char *body = td_http_req_body(req, &blen);
    td_router_params p;
    td_router_apierr e;
    if (td_router_params_parse(rt, chat, body, blen, &p, &e)) {
        td_router_send_error(req, &e);
        return;
    }
    td_gen *g = calloc(1, sizeof *g);
    if (!g || td_router_stop_init(&g->stop, p.stops, p.stop_lens, p.nstops)) {
        free(g);
        td_router_params_free(&p);
        td_router_error(req, 500, NULL, NULL, "out of memory");
        return;
    }
    g->rt = rt;
    g->req = req;
    g->chat = chat;
    g->stream = p.stream;
    g->include_usage = p.stream && p.include_usage;
    g->n_prompt = p.prompt.len;
    g->thinking = p.thinking;
    g->parallel = p.parallel_tool_calls;
    td_dsml_opts dopts = {.thinking = p.thinking, .tools = p.tools};
    if (chat && td_dsml_create(&g->dsml, &dopts, on_dsml, g)) {
        gen_destroy(g);
        td_router_params_free(&p);
        td_router_error(req, 500, NULL, NULL, "out of memory");
        return;
    }
    g->created = (long long)time(NULL);
    snprintf(g->resp_id, sizeof g->resp_id, "%s-%016llx%08llx", chat ? "chatcmpl" : "cmpl",
             (unsigned long long)rt->id_salt, (unsigned long long)++rt->next_id);
    /* Special tokens are decoded like any other (flags 0), as `tandem
     * generate` does: the same ids give the same text. */
    td_tok_stream_init(&g->ts, rt->tok, 0);
    make_prefix(g);

    td_router_gen_req gr = {
        .prompt = p.prompt.ids, .n_prompt = p.prompt.len, .max_tokens = p.max_tokens,
        .sampling = p.sampling, .stop_ids = &rt->chat_ids.eos, .n_stop_ids = 1,
    };
    td_router_gen_cb cb = {.on_token = on_token, .on_finish = on_finish, .arg = g};
    td_err err = rt->engine.submit(rt->engine.ctx, &gr, &cb, &g->id);
    td_router_params_free(&p);
    if (err) {
        gen_destroy(g);  /* not linked yet */
        td_router_error(req, 503, NULL, "engine_error", "the engine refused the request: %s",
                        td_strerror(err));
        return;
    }
    g->next = rt->gens;
    if (rt->gens)
        rt->gens->prev = g;
    rt->gens = g;
    td_http_req_set_handlers(req, on_abort, on_drain, g);
    if (g->stream) {
        td_http_head h = {.status = 200, .content_type = "text/event-stream",
                          .extra_headers = "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"};
        td_http_stream_begin(req, &h);
        if (chat) {
            append(&g->text, g->prefix.data, g->prefix.len);
            appends(&g->text, "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
                    "\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}");
            stream_event(g);
        }
    }
}

void td_router_cancel_all(td_router *rt)
{
    for (td_gen *g = rt->gens; g; g = g->next)
        if (!g->engine_done)
            rt->engine.cancel(rt->engine.ctx, g->id);
}
