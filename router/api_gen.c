/* POST /v1/completions and /v1/chat/completions: the OpenAI wire format of
 * a generation (the lifecycle is gen.c's). The answer is one JSON object,
 * or server-sent events of chat.completion.chunk / text_completion objects
 * ending in `data: [DONE]`.
 *
 * Chat answers go through the DSML parser (router/dsml.h): reasoning (before
 * </think> in thinking mode) becomes reasoning_content, <｜DSML｜tool_calls>
 * blocks become tool_calls, the rest content; in a stream each arrives as
 * its own delta as soon as it is decided.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "router/gen.h"
#include "router/router_internal.h"

typedef struct {
    char id[40];                 /* call_... */
    td_tok_bytes name, args;
    bool done, aborted;
} gen_call;

/* The OpenAI encoder (td_gen_enc_ops below). */
typedef struct {
    td_gen_enc base;             /* first */
    td_router *rt;               /* call ids come from its counter */
    bool chat, include_usage;
    size_t n_prompt;
    char resp_id[48];
    long long created;
    td_tok_bytes text;           /* non-stream: the answer */
    td_tok_bytes prefix;         /* stream: `data: {"id":...,"model":...,` */
    /* chat */
    bool thinking, parallel;
    td_tok_bytes reasoning;      /* non-stream: reasoning_content */
    gen_call *calls;             /* tool calls reported so far */
    int ncalls;
    int calls_ok, calls_aborted; /* among the calls the answer carries */
} oai_enc;

/* ---- JSON text ---------------------------------------------------------- */

static int append(td_tok_bytes *b, const char *s, size_t n)
{
    return td_conv_bytes_append(b, s, n);
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


/* ---- the encoder ----------------------------------------------------------- */

static void put_escaped(oai_enc *o, const char *s, size_t n)
{
    if (td_router_json_escape(&o->base.out, s, n))
        o->base.oom = true;
}

/* stream: one event is `data: {"id":...,"model":...,` + rest + a blank line */
static void chunk_begin(oai_enc *o, const char *rest)
{
    td_gen_put(&o->base, o->prefix.data, o->prefix.len);
    td_gen_puts(&o->base, rest);
}

static void chunk_end(oai_enc *o, const char *rest)
{
    td_gen_puts(&o->base, rest);
    td_gen_puts(&o->base, "\n\n");
}

/* Content that is final (past any stop-string doubt). */
static void emit_text(oai_enc *o, const char *s, size_t n)
{
    if (!n)
        return;
    if (!o->base.stream) {
        append(&o->text, s, n);
        return;
    }
    chunk_begin(o, o->chat ? "\"choices\":[{\"index\":0,\"delta\":{\"content\":\""
                           : "\"choices\":[{\"index\":0,\"text\":\"");
    put_escaped(o, s, n);
    chunk_end(o, o->chat ? "\"},\"logprobs\":null,\"finish_reason\":null}]}"
                         : "\",\"logprobs\":null,\"finish_reason\":null}]}");
}

/* stream: a chat delta {head"<escaped s>"tail} */
static void delta(oai_enc *o, const char *head, const char *s, size_t n, const char *tail)
{
    chunk_begin(o, "\"choices\":[{\"index\":0,\"delta\":{");
    td_gen_puts(&o->base, head);
    put_escaped(o, s, n);
    td_gen_puts(&o->base, tail);
    chunk_end(o, "},\"logprobs\":null,\"finish_reason\":null}]}");
}

static gen_call *call_at(oai_enc *o, int index)
{
    return index >= 0 && index < o->ncalls ? &o->calls[index] : NULL;
}

static gen_call *call_begin(oai_enc *o, const td_dsml_event *ev)
{
    if ((!o->parallel && ev->index > 0) || ev->index != o->ncalls)
        return NULL;
    gen_call *nc = realloc(o->calls, (size_t)(o->ncalls + 1) * sizeof *nc);
    if (!nc)
        return NULL;
    o->calls = nc;
    gen_call *c = &nc[o->ncalls++];
    memset(c, 0, sizeof *c);
    td_router *rt = o->rt;
    snprintf(c->id, sizeof c->id, "call_%016llx%08llx",
             (unsigned long long)(rt->id_salt * 0x9E3779B97F4A7C15ull),
             (unsigned long long)++rt->next_id);
    append(&c->name, ev->text, ev->len);
    return c;
}

/* Events of the output parser. Call i of the output is calls[i]; with
 * parallel_tool_calls false only call 0 is kept. */
static void oai_event(td_gen_enc *base, const td_dsml_event *ev)
{
    oai_enc *o = (oai_enc *)base;
    gen_call *c = call_at(o, ev->index);
    char head[160];
    switch (ev->kind) {
    case TD_DSML_CONTENT:
        emit_text(o, ev->text, ev->len);
        break;
    case TD_DSML_REASONING:
        if (!o->base.stream)
            append(&o->reasoning, ev->text, ev->len);
        else
            delta(o, "\"reasoning_content\":\"", ev->text, ev->len, "\"");
        break;
    case TD_DSML_CALL_BEGIN:
        if (!(c = call_begin(o, ev)) || !o->base.stream)
            break;
        snprintf(head, sizeof head, "\"tool_calls\":[{\"index\":%d,\"id\":\"%s\","
                 "\"type\":\"function\",\"function\":{\"name\":\"", ev->index, c->id);
        delta(o, head, ev->text, ev->len, "\",\"arguments\":\"\"}}]");
        break;
    case TD_DSML_CALL_ARGS:
        if (!c)
            break;
        append(&c->args, ev->text, ev->len);
        if (!o->base.stream)
            break;
        snprintf(head, sizeof head, "\"tool_calls\":[{\"index\":%d,\"function\":"
                 "{\"arguments\":\"", ev->index);
        delta(o, head, ev->text, ev->len, "\"}}]");
        break;
    case TD_DSML_CALL_END:
        if (c) {
            c->done = true;
            o->calls_ok++;
        }
        break;
    case TD_DSML_CALL_ABORT:
        /* A stream cannot take back what it sent: the call's arguments stay
         * incomplete and the finish reason is not "tool_calls". */
        if (c) {
            c->aborted = true;
            o->calls_aborted++;
        }
        break;
    }
}

/* The chat message of a non-streamed answer. */
static json_t *chat_message(oai_enc *o, json_t *content)
{
    json_t *msg = json_pack("{s:s}", "role", "assistant");
    json_t *calls = json_array();
    for (int i = 0; i < o->ncalls; i++) {
        gen_call *c = &o->calls[i];
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
    if (o->thinking) {
        json_t *r = json_stringn(o->reasoning.data ? o->reasoning.data : "", o->reasoning.len);
        json_object_set_new(msg, "reasoning_content", r ? r : json_string(""));
    }
    if (has_calls)
        json_object_set_new(msg, "tool_calls", calls);
    else
        json_decref(calls);
    return msg;
}

static json_t *usage_json(const oai_enc *o, size_t n_completion)
{
    return json_pack("{s:I, s:I, s:I, s:{s:I}}", "prompt_tokens", (json_int_t)o->n_prompt,
                     "completion_tokens", (json_int_t)n_completion,
                     "total_tokens", (json_int_t)(o->n_prompt + n_completion),
                     "prompt_tokens_details", "cached_tokens",
                     (json_int_t)o->base.cached_tokens);
}

static void oai_finish(td_gen_enc *base, td_gen_end why, const char *stop_seq,
                       size_t n_completion)
{
    (void)stop_seq;
    oai_enc *o = (oai_enc *)base;
    const char *reason = why == TD_GEN_END_LENGTH ? "length" : "stop";
    /* An answer that ended with complete tool calls (and none broken)
     * finishes "tool_calls". */
    if (o->chat && why != TD_GEN_END_LENGTH && o->calls_ok > 0 && o->calls_aborted == 0)
        reason = "tool_calls";
    if (o->base.stream) {
        char tail[160];
        snprintf(tail, sizeof tail,
                 o->chat ? "\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,"
                           "\"finish_reason\":\"%s\"}]}"
                         : "\"choices\":[{\"index\":0,\"text\":\"\",\"logprobs\":null,"
                           "\"finish_reason\":\"%s\"}]}", reason);
        chunk_begin(o, tail);
        chunk_end(o, "");
        if (o->include_usage) {
            json_t *uj = usage_json(o, n_completion);
            char *u = uj ? json_dumps(uj, JSON_COMPACT) : NULL;
            json_decref(uj);
            chunk_begin(o, "\"choices\":[],\"usage\":");
            if (u)
                td_gen_puts(&o->base, u);
            chunk_end(o, "}");
            free(u);
        }
        td_gen_puts(&o->base, "data: [DONE]\n\n");
        return;
    }
    json_t *text = json_stringn(o->text.data ? o->text.data : "", o->text.len);
    if (!text)
        text = json_string("");
    json_t *choice = json_object();
    json_object_set_new(choice, "index", json_integer(0));
    if (o->chat)
        json_object_set_new(choice, "message", chat_message(o, text));
    else
        json_object_set_new(choice, "text", text);
    json_object_set_new(choice, "logprobs", json_null());
    json_object_set_new(choice, "finish_reason", json_string(reason));
    o->base.out.len = 0;
    td_gen_put_json(&o->base, json_pack("{s:s, s:s, s:I, s:s, s:[o], s:o}", "id", o->resp_id,
                          "object", o->chat ? "chat.completion" : "text_completion",
                          "created", (json_int_t)o->created, "model", o->rt->model_id,
                          "choices", choice, "usage", usage_json(o, n_completion)));
}

static void oai_error(td_gen_enc *base, int status, const char *code, const char *msg)
{
    oai_enc *o = (oai_enc *)base;
    td_gen_puts(&o->base, "data: ");
    td_gen_put_json(&o->base, json_pack("{s:{s:s, s:s, s:n, s:s}}", "error", "message", msg, "type",
                          status >= 500 ? "server_error" : "invalid_request_error",
                          "param", "code", code));
    td_gen_puts(&o->base, "\n\ndata: [DONE]\n\n");
}

static void oai_start(td_gen_enc *base)
{
    oai_enc *o = (oai_enc *)base;
    if (o->chat) {
        chunk_begin(o, "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
                       "\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}");
        chunk_end(o, "");
    }
}

static void oai_send_error(td_http_req *req, int status, const char *code, const char *msg)
{
    td_router_error(req, status, NULL, code, "%s", msg);
}

static void oai_fini(td_gen_enc *base)
{
    oai_enc *o = (oai_enc *)base;
    td_tok_bytes_free(&o->reasoning);
    for (int i = 0; i < o->ncalls; i++) {
        td_tok_bytes_free(&o->calls[i].name);
        td_tok_bytes_free(&o->calls[i].args);
    }
    free(o->calls);
    td_tok_bytes_free(&o->text);
    td_tok_bytes_free(&o->prefix);
    td_tok_bytes_free(&o->base.out);
}

static const td_gen_enc_ops oai_ops = {
    .start = oai_start, .event = oai_event, .finish = oai_finish, .error = oai_error,
    .send_error = oai_send_error, .fini = oai_fini,
    .cancelled = "the request was cancelled: the server is shutting down",
};

/* ---- the handler ----------------------------------------------------------- */

static void make_prefix(oai_enc *o)
{
    char head[160];
    snprintf(head, sizeof head, "data: {\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,"
             "\"model\":", o->resp_id, o->chat ? "chat.completion.chunk" : "text_completion",
             o->created);
    appends(&o->prefix, head);
    appends(&o->prefix, o->rt->model_id_json);
    appends(&o->prefix, ",");
}

void td_router_generate(td_router *rt, td_http_req *req, bool chat)
{
    if (!td_gen_admit(rt, req, &oai_ops))
        return;
    size_t blen;
    const char *body = td_http_req_body(req, &blen);
    td_router_params p;
    td_router_apierr e;
    if (td_router_params_parse(rt, chat, body, blen, &p, &e)) {
        td_router_send_error(req, &e);
        return;
    }
    oai_enc *o = calloc(1, sizeof *o);
    if (!o) {
        td_router_params_free(&p);
        td_router_error(req, 500, NULL, NULL, "out of memory");
        return;
    }
    o->base.ops = &oai_ops;
    o->base.stream = p.stream;
    o->rt = rt;
    o->chat = chat;
    o->include_usage = p.stream && p.include_usage;
    o->n_prompt = p.prompt.len;
    o->thinking = p.thinking;
    o->parallel = p.parallel_tool_calls;
    o->created = (long long)time(NULL);
    snprintf(o->resp_id, sizeof o->resp_id, "%s-%016llx%08llx", chat ? "chatcmpl" : "cmpl",
             (unsigned long long)rt->id_salt, (unsigned long long)++rt->next_id);
    make_prefix(o);
    td_dsml_opts dopts = {.thinking = p.thinking, .tools = p.tools};
    td_gen_opts go = {
        .enc = &o->base, .log_id = o->resp_id,
        .run = {.prompt = p.prompt.ids, .n_prompt = p.prompt.len, .max_tokens = p.max_tokens,
                .sampling = p.sampling, .stop_ids = &rt->chat_ids.eos, .n_stop_ids = 1,
                .constraint = {.json_schema = p.json_schema, .tools = p.cons.tools,
                               .force_name = p.cons.force_name, .single = p.cons.single,
                               .thinking = p.thinking}},
        .stops = p.stops, .stop_lens = p.stop_lens, .nstops = p.nstops,
        .dsml = chat ? &dopts : NULL,
    };
    td_gen_start(rt, req, &go);
    td_router_params_free(&p);
}
