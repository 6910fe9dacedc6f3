/* The Anthropic Messages API: request decoder, error shape and the event
 * encoder (see api_anthropic.h). No server state is touched here, so the
 * unit tests and the fuzzer drive these functions directly. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/api_anthropic.h"

/* ---- errors ---------------------------------------------------------------- */

const char *td_anth_error_type(int status)
{
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503: return "overloaded_error";
    default: return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

static json_t *error_json(int status, const char *message)
{
    return json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type",
                     td_anth_error_type(status), "message", message ? message : "");
}

void td_anth_send_error(td_http_req *req, int status, const char *extra_headers,
                        const char *message)
{
    json_t *v = error_json(status, message);
    char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    static const char oom[] = "{\"type\":\"error\",\"error\":{\"type\":\"api_error\","
                              "\"message\":\"out of memory\"}}";
    td_http_head h = {.status = s ? status : 500, .content_type = "application/json",
                      .extra_headers = extra_headers};
    td_http_respond(req, &h, s ? s : oom, s ? strlen(s) : sizeof oom - 1);
    free(s);
}

static int fail(td_anth_err *e, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(td_anth_err *e, int status, const char *fmt, ...)
{
    e->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return status;
}

/* ---- the request decoder ------------------------------------------------------ */

static const json_t *field(const json_t *o, const char *name)
{
    const json_t *v = json_object_get(o, name);
    return json_is_null(v) ? NULL : v;
}

static const char *type_of(const json_t *block)
{
    return json_string_value(json_object_get(block, "type"));
}

#define OOM(e) fail(e, 500, "out of memory")

/* Appends {"type":"text","text":t} to parts. */
static int text_part(json_t *parts, const json_t *t, td_anth_err *e)
{
    if (json_array_append_new(parts, json_pack("{s:s, s:O}", "type", "text", "text", t)))
        return OOM(e);
    return 0;
}

/* system: a string or a list of text blocks → a system message. */
static int add_system(json_t *msgs, const json_t *sys, td_anth_err *e)
{
    if (json_is_string(sys))
        return json_array_append_new(msgs, json_pack("{s:s, s:O}", "role", "system",
                                                     "content", sys)) ? OOM(e) : 0;
    if (!json_is_array(sys))
        return fail(e, 400, "system: must be a string or an array of text blocks");
    json_t *parts = json_array();
    size_t i;
    const json_t *b;
    json_array_foreach(sys, i, b) {
        const char *t = type_of(b);
        const json_t *text = json_object_get(b, "text");
        if (!t || strcmp(t, "text") || !json_is_string(text)) {
            json_decref(parts);
            return fail(e, 400, "system.%zu: must be a text block with a string text", i);
        }
        if (text_part(parts, text, e)) {
            json_decref(parts);
            return e->status;
        }
    }
    if (json_array_size(parts) == 0) {
        json_decref(parts);
        return 0;
    }
    return json_array_append_new(msgs, json_pack("{s:s, s:o}", "role", "system",
                                                 "content", parts)) ? OOM(e) : 0;
}

/* A tool_result's content: a string or text blocks; is_error marks it so
 * the model can tell a failure from an answer (there is no field for it in
 * the V4 format). */
static int tool_result(json_t *msgs, const json_t *b, int mi, size_t bi, td_anth_err *e)
{
    const json_t *id = json_object_get(b, "tool_use_id");
    const json_t *c = field(b, "content");
    if (!json_is_string(id))
        return fail(e, 400, "messages.%d.content.%zu.tool_use_id: Field required", mi, bi);
    td_tok_bytes text = {0};
    int rc = 0;
    if (json_is_true(field(b, "is_error")) && td_conv_bytes_append(&text, "Error: ", 7))
        rc = OOM(e);
    if (json_is_string(c)) {
        if (!rc && td_conv_bytes_append(&text, json_string_value(c), json_string_length(c)))
            rc = OOM(e);
    } else if (json_is_array(c)) {
        size_t k;
        const json_t *p;
        json_array_foreach(c, k, p) {
            const char *t = type_of(p);
            const json_t *s = json_object_get(p, "text");
            if (rc)
                break;
            if (!t || strcmp(t, "text") || !json_is_string(s))
                rc = fail(e, 400, "messages.%d.content.%zu.content.%zu: only text blocks are "
                          "supported in a tool_result (type %s)", mi, bi, k, t ? t : "missing");
            else if ((k > 0 && td_conv_bytes_append(&text, "\n\n", 2)) ||
                     td_conv_bytes_append(&text, json_string_value(s), json_string_length(s)))
                rc = OOM(e);
        }
    } else if (c) {
        rc = fail(e, 400, "messages.%d.content.%zu.content: must be a string or an array of "
                  "text blocks", mi, bi);
    }
    if (!rc && json_array_append_new(msgs, json_pack("{s:s, s:O, s:s%}", "role", "tool",
            "tool_call_id", id, "content", text.data ? text.data : "", text.len)))
        rc = OOM(e);
    td_tok_bytes_free(&text);
    return rc;
}

/* A user turn: text blocks join into one user message; each tool_result
 * becomes a tool message (the encoder merges them back into the user turn
 * and orders them by the calls they answer). */
static int user_turn(json_t *msgs, const json_t *content, int mi, td_anth_err *e)
{
    if (json_is_string(content))
        return json_array_append_new(msgs, json_pack("{s:s, s:O}", "role", "user",
                                                     "content", content)) ? OOM(e) : 0;
    json_t *parts = json_array();
    size_t i;
    const json_t *b;
    int rc = 0;
    json_array_foreach(content, i, b) {
        const char *t = type_of(b);
        if (!t) {
            rc = fail(e, 400, "messages.%d.content.%zu.type: Field required", mi, i);
        } else if (!strcmp(t, "text")) {
            const json_t *s = json_object_get(b, "text");
            rc = json_is_string(s) ? text_part(parts, s, e)
                 : fail(e, 400, "messages.%d.content.%zu.text: must be a string", mi, i);
        } else if (!strcmp(t, "tool_result")) {
            rc = tool_result(msgs, b, mi, i, e);
        } else if (!strcmp(t, "image") || !strcmp(t, "document")) {
            rc = fail(e, 400, "messages.%d.content.%zu: %s blocks are not supported by this "
                      "model (text only)", mi, i, t);
        } else {
            rc = fail(e, 400, "messages.%d.content.%zu: block type '%s' is not supported in "
                      "a user turn", mi, i, t);
        }
        if (rc)
            break;
    }
    if (!rc && json_array_size(parts) > 0 &&
        json_array_append_new(msgs, json_pack("{s:s, s:O}", "role", "user", "content", parts)))
        rc = OOM(e);
    json_decref(parts);
    return rc;
}

/* An assistant turn: text → content, thinking → reasoning_content,
 * redacted_thinking → dropped (it is opaque to us), tool_use → tool_calls
 * with the input object as the arguments text. */
static int assistant_turn(json_t *msgs, const json_t *content, int mi, td_anth_err *e)
{
    if (json_is_string(content))
        return json_array_append_new(msgs, json_pack("{s:s, s:O}", "role", "assistant",
                                                     "content", content)) ? OOM(e) : 0;
    td_tok_bytes text = {0}, reasoning = {0};
    json_t *calls = json_array();
    size_t i;
    const json_t *b;
    int rc = 0;
    bool has_reasoning = false;
    json_array_foreach(content, i, b) {
        const char *t = type_of(b);
        if (!t) {
            rc = fail(e, 400, "messages.%d.content.%zu.type: Field required", mi, i);
        } else if (!strcmp(t, "text")) {
            const json_t *s = json_object_get(b, "text");
            if (!json_is_string(s))
                rc = fail(e, 400, "messages.%d.content.%zu.text: must be a string", mi, i);
            else if (td_conv_bytes_append(&text, json_string_value(s), json_string_length(s)))
                rc = OOM(e);
        } else if (!strcmp(t, "thinking")) {
            const json_t *s = json_object_get(b, "thinking");
            has_reasoning = true;
            if (!json_is_string(s))
                rc = fail(e, 400, "messages.%d.content.%zu.thinking: must be a string", mi, i);
            else if (td_conv_bytes_append(&reasoning, json_string_value(s),
                                          json_string_length(s)))
                rc = OOM(e);
        } else if (!strcmp(t, "redacted_thinking")) {
            continue;
        } else if (!strcmp(t, "tool_use")) {
            const json_t *id = json_object_get(b, "id"), *name = json_object_get(b, "name");
            const json_t *input = json_object_get(b, "input");
            if (!json_is_string(id) || !json_is_string(name) || !json_is_object(input)) {
                rc = fail(e, 400, "messages.%d.content.%zu: a tool_use block needs a string "
                          "id, a string name and an object input", mi, i);
                break;
            }
            char *args = json_dumps(input, JSON_COMPACT);
            json_t *call = args ? json_pack("{s:O, s:s, s:{s:O, s:s}}", "id", id, "type",
                                            "function", "function", "name", name,
                                            "arguments", args) : NULL;
            free(args);
            if (json_array_append_new(calls, call))
                rc = OOM(e);
        } else {
            rc = fail(e, 400, "messages.%d.content.%zu: block type '%s' is not supported in "
                      "an assistant turn", mi, i, t);
        }
        if (rc)
            break;
    }
    json_t *m = rc ? NULL : json_pack("{s:s, s:s%}", "role", "assistant", "content",
                                      text.data ? text.data : "", text.len);
    if (m && has_reasoning)
        json_object_set_new(m, "reasoning_content",
                            json_stringn(reasoning.data ? reasoning.data : "", reasoning.len));
    if (m && json_array_size(calls))
        json_object_set(m, "tool_calls", calls);
    if (!rc && json_array_append_new(msgs, m))
        rc = OOM(e);
    json_decref(calls);
    td_tok_bytes_free(&text);
    td_tok_bytes_free(&reasoning);
    return rc;
}

static int add_messages(json_t *msgs, const json_t *messages, td_anth_err *e)
{
    if (!json_is_array(messages))
        return fail(e, 400, messages ? "messages: must be an array"
                                     : "messages: Field required");
    if (json_array_size(messages) == 0)
        return fail(e, 400, "messages: at least one message is required");
    size_t i;
    const json_t *m;
    json_array_foreach(messages, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        const json_t *content = json_object_get(m, "content");
        int mi = (int)i, rc;
        if (!role || (strcmp(role, "user") && strcmp(role, "assistant")))
            return fail(e, 400, "messages.%d.role: must be \"user\" or \"assistant\"", mi);
        if (!json_is_string(content) && !json_is_array(content))
            return fail(e, 400, "messages.%d.content: must be a string or an array of "
                        "content blocks", mi);
        rc = !strcmp(role, "user") ? user_turn(msgs, content, mi, e)
                                   : assistant_turn(msgs, content, mi, e);
        if (rc)
            return rc;
    }
    return 0;
}

static int add_tools(json_t *body, const json_t *tools, td_anth_err *e)
{
    if (!json_is_array(tools))
        return fail(e, 400, "tools: must be an array");
    json_t *out = json_array();
    json_object_set_new(body, "tools", out);
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        const json_t *name = json_object_get(t, "name");
        const json_t *schema = json_object_get(t, "input_schema");
        const char *type = json_string_value(field(t, "type"));
        if (type && strcmp(type, "custom"))
            return fail(e, 400, "tools.%zu: server tool '%s' is not supported (only custom "
                        "tools with an input_schema)", i, type);
        if (!json_is_string(name) || !json_is_object(schema))
            return fail(e, 400, "tools.%zu: a tool needs a string name and an object "
                        "input_schema", i);
        json_t *fn = json_pack("{s:O}", "name", name);
        const json_t *d = field(t, "description");
        /* json_object_set takes no const value; these keep a reference. */
        if (fn && json_is_string(d))
            json_object_set_new(fn, "description", json_incref((json_t *)d));
        if (fn)
            json_object_set_new(fn, "parameters", json_incref((json_t *)schema));
        if (json_array_append_new(out, json_pack("{s:s, s:o*}", "type", "function",
                                                 "function", fn)))
            return OOM(e);
    }
    return 0;
}

/* tool_choice {type: auto | any | tool {name} | none} → OpenAI's. */
static int add_tool_choice(json_t *body, const json_t *tc, td_anth_err *e)
{
    const char *t = json_string_value(json_object_get(tc, "type"));
    json_t *v = NULL;
    if (t && !strcmp(t, "auto"))
        v = json_string("auto");
    else if (t && !strcmp(t, "any"))
        v = json_string("required");
    else if (t && !strcmp(t, "none"))
        v = json_string("none");
    else if (t && !strcmp(t, "tool") && json_is_string(json_object_get(tc, "name")))
        v = json_pack("{s:s, s:{s:O}}", "type", "function", "function", "name",
                      json_object_get(tc, "name"));
    else
        return fail(e, 400, "tool_choice: must be {\"type\": \"auto\"}, {\"type\": \"any\"}, "
                    "{\"type\": \"tool\", \"name\": ...} or {\"type\": \"none\"}");
    if (json_is_true(field(tc, "disable_parallel_tool_use")))
        json_object_set_new(body, "parallel_tool_calls", json_false());
    return json_object_set_new(body, "tool_choice", v) ? OOM(e) : 0;
}

/* The budget from which a thinking request gets Think Max instead of Think
 * High: Claude Code's largest budget ("ultrathink", 31999 tokens) is meant
 * as "think as hard as you can"; its smaller ones (4000, 10000) are not. */
#define THINK_MAX_BUDGET 16384

static int add_thinking(json_t *body, const json_t *th, int64_t max_tokens, unsigned flags,
                        td_anth_err *e)
{
    const char *t = json_string_value(json_object_get(th, "type"));
    if (t && !strcmp(t, "disabled"))
        return json_object_set_new(body, "reasoning_effort", json_string("none")) ? OOM(e) : 0;
    if (!t || strcmp(t, "enabled"))
        return fail(e, 400, "thinking: must be {\"type\": \"enabled\", \"budget_tokens\": N} "
                    "or {\"type\": \"disabled\"}");
    const json_t *b = json_object_get(th, "budget_tokens");
    if (!json_is_integer(b) || json_integer_value(b) < 1024)
        return fail(e, 400, "thinking.enabled.budget_tokens: must be an integer >= 1024");
    if (!(flags & TD_ANTH_COUNT_ONLY) && json_integer_value(b) >= max_tokens)
        return fail(e, 400, "max_tokens: must be greater than thinking.budget_tokens");
    const char *effort = json_integer_value(b) >= THINK_MAX_BUDGET ? "max" : "high";
    return json_object_set_new(body, "reasoning_effort", json_string(effort)) ? OOM(e) : 0;
}

static int add_stops(td_anth_req *r, const json_t *v, td_anth_err *e)
{
    if (!json_is_array(v))
        return fail(e, 400, "stop_sequences: must be an array of strings");
    if (json_array_size(v) > TD_ANTH_MAX_STOPS)
        return fail(e, 400, "stop_sequences: at most %d", TD_ANTH_MAX_STOPS);
    r->stops = calloc(TD_ANTH_MAX_STOPS, sizeof *r->stops);
    r->stop_lens = calloc(TD_ANTH_MAX_STOPS, sizeof *r->stop_lens);
    if (!r->stops || !r->stop_lens)
        return OOM(e);
    size_t i;
    const json_t *s;
    json_array_foreach(v, i, s) {
        if (!json_is_string(s))
            return fail(e, 400, "stop_sequences.%zu: must be a string", i);
        if (json_string_length(s) == 0)
            continue;  /* would match everywhere */
        if (!(r->stops[r->nstops] = strdup(json_string_value(s))))
            return OOM(e);
        r->stop_lens[r->nstops++] = json_string_length(s);
    }
    return 0;
}

static int get_number(const json_t *root, const char *name, double lo, double hi,
                      double *out, td_anth_err *e)
{
    const json_t *v = field(root, name);
    if (!v)
        return 0;
    double d = json_number_value(v);
    if (!json_is_number(v) || !(d >= lo && d <= hi))
        return fail(e, 400, "%s: must be a number in [%g, %g]", name, lo, hi);
    *out = d;
    return 0;
}

char *td_anth_session_of(const char *user_id)
{
    if (!user_id || !*user_id)
        return NULL;
    const char *s = strstr(user_id, "_session_");
    return strdup(s && s[9] ? s + 9 : user_id);
}

/* Sampling, limits and the other scalar fields. */
static int decode_scalars(const json_t *root, unsigned flags, td_anth_req *r, td_anth_err *e)
{
    const json_t *model = field(root, "model");
    if (!json_is_string(model))
        return fail(e, 400, model ? "model: must be a string" : "model: Field required");
    const json_t *mt = field(root, "max_tokens");
    if (!(flags & TD_ANTH_COUNT_ONLY)) {
        if (!mt)
            return fail(e, 400, "max_tokens: Field required");
        if (!json_is_integer(mt) || json_integer_value(mt) < 1)
            return fail(e, 400, "max_tokens: must be an integer >= 1");
        r->max_tokens = json_integer_value(mt);
    }
    double temperature = 1.0, top_p = 1.0;
    int rc;
    if ((rc = get_number(root, "temperature", 0.0, 1.0, &temperature, e)) ||
        (rc = get_number(root, "top_p", 0.0, 1.0, &top_p, e)))
        return rc;
    if (field(root, "top_p") && top_p <= 0.0)
        return fail(e, 400, "top_p: must be in (0, 1]");
    const json_t *tk = field(root, "top_k");
    if (tk && (!json_is_integer(tk) || json_integer_value(tk) < 0 ||
               json_integer_value(tk) > (1 << 30)))
        return fail(e, 400, "top_k: must be an integer >= 0");
    r->sampling = (td_router_sampling){.temperature = (float)temperature,
                                       .top_p = (float)top_p,
                                       .top_k = tk ? (int)json_integer_value(tk) : 0};
    const json_t *st = field(root, "stream");
    if (st && !json_is_boolean(st))
        return fail(e, 400, "stream: must be a boolean");
    r->stream = json_is_true(st);
    const json_t *ss = field(root, "stop_sequences");
    if (ss && (rc = add_stops(r, ss, e)))
        return rc;
    const json_t *md = field(root, "metadata");
    if (md && !json_is_object(md))
        return fail(e, 400, "metadata: must be an object");
    const json_t *uid = field(md, "user_id");
    if (uid && !json_is_string(uid))
        return fail(e, 400, "metadata.user_id: must be a string");
    if (uid && strlen(json_string_value(uid)) <= 256 &&
        !(r->session = td_anth_session_of(json_string_value(uid))) &&
        json_string_length(uid))
        return OOM(e);
    return 0;
}

int td_anth_decode(const char *body, size_t len, unsigned flags, td_anth_req *r,
                   td_anth_err *e)
{
    memset(r, 0, sizeof *r);
    json_error_t je;
    json_t *root = json_loadb(body, len, 0, &je);
    json_t *oa = NULL;
    int rc = 0;
    if (!root)
        return fail(e, 400, "the body is not valid JSON: %s (line %d, column %d)", je.text,
                    je.line, je.column);
    if (!json_is_object(root)) {
        rc = fail(e, 400, "the body must be a JSON object");
        goto done;
    }
    if ((rc = decode_scalars(root, flags, r, e)))
        goto done;
    /* The OpenAI chat body the conversation is built from. */
    oa = json_object();
    json_t *msgs = json_array();
    if (!oa || json_object_set_new(oa, "messages", msgs)) {
        rc = OOM(e);
        goto done;
    }
    const json_t *v;
    if ((v = field(root, "system")) && (rc = add_system(msgs, v, e)))
        goto done;
    if ((rc = add_messages(msgs, field(root, "messages"), e)))
        goto done;
    if ((v = field(root, "tools")) && (rc = add_tools(oa, v, e)))
        goto done;
    if ((v = field(root, "tool_choice")) && (rc = add_tool_choice(oa, v, e)))
        goto done;
    if ((v = field(root, "thinking")) && (rc = add_thinking(oa, v, r->max_tokens, flags, e)))
        goto done;
    char err[256];
    const char *param = NULL;
    td_err te = td_conv_from_request(&r->conv, oa, &param, err, sizeof err);
    if (te) {
        /* The translated body names OpenAI fields; the message still says
         * what is wrong, which is what a client can act on. */
        rc = fail(e, te == TD_ENOMEM ? 500 : 400, "%s", err);
        goto done;
    }
    /* A last assistant turn is a prefill: the answer continues it (no EOS
     * after it). In think mode its reasoning is closed by </think> in the
     * prompt, so the output is answer text from the first token. */
    bool prefill = td_conv_continue_last(r->conv);
    r->thinking = td_conv_get_think(r->conv) != TD_CONV_THINK_NONE && !prefill;
    r->tools = td_conv_has_tools(r->conv);
    r->parallel = td_conv_parallel_tool_calls(r->conv);
    char cerr[256];
    /* A prefilled answer continues the text it was given: not forced. */
    td_err ce = prefill ? TD_OK : td_conv_constraint_get(r->conv, &r->cons, cerr, sizeof cerr);
    if (ce)
        rc = ce == TD_ENOMEM ? OOM(e) : fail(e, 400, "tool_choice: %s", cerr);
done:
    json_decref(oa);
    json_decref(root);
    if (rc)
        td_anth_req_free(r);
    return rc;
}

void td_anth_req_free(td_anth_req *r)
{
    td_conv_destroy(r->conv);
    for (int i = 0; i < r->nstops; i++)
        free(r->stops[i]);
    free(r->stops);
    free(r->stop_lens);
    free(r->session);
    td_conv_constraint_fini(&r->cons);
    memset(r, 0, sizeof *r);
}
