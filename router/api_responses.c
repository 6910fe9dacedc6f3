/* The OpenAI Responses API: request decoder (see api_responses.h). No
 * server state is touched here, so the unit tests and the fuzzer drive it
 * directly. The event encoder is in api_responses_enc.c. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/api_responses.h"

static int fail(td_resp_err *e, const char *param, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(td_resp_err *e, const char *param, int status, const char *fmt, ...)
{
    e->status = status;
    e->param = param;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return status;
}

#define OOM(e) fail(e, NULL, 500, "out of memory")

static const json_t *field(const json_t *o, const char *name)
{
    const json_t *v = json_object_get(o, name);
    return json_is_null(v) ? NULL : v;
}

static const char *type_of(const json_t *o)
{
    return json_string_value(json_object_get(o, "type"));
}

/* Message content: a string, or parts {type: input_text|output_text|text,
 * text} joined into one string (as the chat path joins its text parts). */
static int content_text(const json_t *c, size_t ii, const char *where, td_tok_bytes *out,
                        td_resp_err *e)
{
    if (json_is_string(c))
        return td_conv_bytes_append(out, json_string_value(c), json_string_length(c))
               ? OOM(e) : 0;
    if (!json_is_array(c))
        return fail(e, "input", 400, "input[%zu].%s: must be a string or an array of "
                    "content parts", ii, where);
    size_t k;
    const json_t *p;
    json_array_foreach(c, k, p) {
        const char *t = type_of(p);
        const json_t *s = json_object_get(p, "text");
        if (t && (!strcmp(t, "input_image") || !strcmp(t, "input_file") ||
                  !strcmp(t, "input_audio")))
            return fail(e, "input", 400, "input[%zu].%s[%zu]: %s parts are not supported by "
                        "this model (text only)", ii, where, k, t);
        if (!t || (strcmp(t, "input_text") && strcmp(t, "output_text") && strcmp(t, "text") &&
                   strcmp(t, "reasoning_text") && strcmp(t, "summary_text")) ||
            !json_is_string(s))
            return fail(e, "input", 400, "input[%zu].%s[%zu]: must be an input_text or "
                        "output_text part with a string text", ii, where, k);
        if (td_conv_bytes_append(out, json_string_value(s), json_string_length(s)))
            return OOM(e);
    }
    return 0;
}

/* The chat messages being built: assistant pieces (reasoning, message,
 * function calls) gather into one pending assistant message. */
typedef struct {
    json_t *msgs;
    json_t *asst;                /* pending assistant message, or NULL */
} builder;

static int flush(builder *b, td_resp_err *e)
{
    if (!b->asst)
        return 0;
    if (!json_object_get(b->asst, "content"))
        json_object_set_new(b->asst, "content", json_string(""));
    int rc = json_array_append_new(b->msgs, b->asst) ? OOM(e) : 0;
    b->asst = NULL;
    return rc;
}

static int pending(builder *b, bool new_turn, td_resp_err *e)
{
    int rc;
    if (b->asst && new_turn && (rc = flush(b, e)))
        return rc;
    if (!b->asst && !(b->asst = json_pack("{s:s}", "role", "assistant")))
        return OOM(e);
    return 0;
}

static int add_text_msg(builder *b, const char *role, const char *s, size_t n,
                        td_resp_err *e)
{
    int rc = flush(b, e);
    if (rc)
        return rc;
    return json_array_append_new(b->msgs, json_pack("{s:s, s:s%}", "role", role, "content",
                                                    s ? s : "", n)) ? OOM(e) : 0;
}

static int item_message(builder *b, const json_t *it, size_t i, td_resp_err *e)
{
    const char *role = json_string_value(json_object_get(it, "role"));
    if (!role || (strcmp(role, "user") && strcmp(role, "system") && strcmp(role, "developer") &&
                  strcmp(role, "assistant")))
        return fail(e, "input", 400, "input[%zu].role: must be \"user\", \"system\", "
                    "\"developer\" or \"assistant\"", i);
    td_tok_bytes text = {0};
    int rc = content_text(json_object_get(it, "content"), i, "content", &text, e);
    if (rc)
        goto out;
    if (strcmp(role, "assistant")) {
        rc = add_text_msg(b, role, text.data, text.len, e);
        goto out;
    }
    /* A message after content or calls starts a new assistant turn; after
     * reasoning only, it is that reasoning's answer. */
    bool new_turn = b->asst && (json_object_get(b->asst, "content") ||
                                json_object_get(b->asst, "tool_calls"));
    if ((rc = pending(b, new_turn, e)))
        goto out;
    if (json_object_set_new(b->asst, "content", json_stringn(text.data ? text.data : "",
                                                             text.len)))
        rc = OOM(e);
out:
    td_tok_bytes_free(&text);
    return rc;
}

static int item_reasoning(builder *b, const json_t *it, size_t i, td_resp_err *e)
{
    td_tok_bytes text = {0};
    int rc = 0;
    const json_t *c = field(it, "content"), *s = field(it, "summary");
    /* The full reasoning text if given, else the summary. */
    if (c && json_array_size(c) > 0)
        rc = content_text(c, i, "content", &text, e);
    else if (s)
        rc = content_text(s, i, "summary", &text, e);
    if (rc)
        goto out;
    if ((rc = pending(b, b->asst != NULL, e)))
        goto out;
    if (json_object_set_new(b->asst, "reasoning_content",
                            json_stringn(text.data ? text.data : "", text.len)))
        rc = OOM(e);
out:
    td_tok_bytes_free(&text);
    return rc;
}

static int item_call(builder *b, const json_t *it, size_t i, td_resp_err *e)
{
    const json_t *id = json_object_get(it, "call_id"), *name = json_object_get(it, "name");
    const json_t *args = json_object_get(it, "arguments");
    if (!json_is_string(id) || !json_is_string(name) || !json_is_string(args))
        return fail(e, "input", 400, "input[%zu]: a function_call item needs string call_id, "
                    "name and arguments", i);
    int rc = pending(b, false, e);
    if (rc)
        return rc;
    json_t *calls = json_object_get(b->asst, "tool_calls");
    if (!calls) {
        calls = json_array();
        if (json_object_set_new(b->asst, "tool_calls", calls))
            return OOM(e);
    }
    return json_array_append_new(calls, json_pack("{s:O, s:s, s:{s:O, s:O}}", "id", id,
                                 "type", "function", "function", "name", name,
                                 "arguments", args)) ? OOM(e) : 0;
}

static int item_call_output(builder *b, const json_t *it, size_t i, td_resp_err *e)
{
    const json_t *id = json_object_get(it, "call_id");
    if (!json_is_string(id))
        return fail(e, "input", 400, "input[%zu].call_id: must be a string", i);
    td_tok_bytes text = {0};
    int rc = content_text(json_object_get(it, "output"), i, "output", &text, e);
    if (!rc)
        rc = flush(b, e);
    if (!rc && json_array_append_new(b->msgs, json_pack("{s:s, s:O, s:s%}", "role", "tool",
            "tool_call_id", id, "content", text.data ? text.data : "", text.len)))
        rc = OOM(e);
    td_tok_bytes_free(&text);
    return rc;
}

/* Input items, in order, onto the messages being built. */
static int add_items(builder *b, const json_t *items, td_resp_err *e)
{
    size_t i;
    const json_t *it;
    json_array_foreach(items, i, it) {
        if (!json_is_object(it))
            return fail(e, "input", 400, "input[%zu]: must be an object", i);
        const char *t = type_of(it);
        int rc;
        if (!t || !strcmp(t, "message"))
            rc = item_message(b, it, i, e);
        else if (!strcmp(t, "reasoning"))
            rc = item_reasoning(b, it, i, e);
        else if (!strcmp(t, "function_call"))
            rc = item_call(b, it, i, e);
        else if (!strcmp(t, "function_call_output"))
            rc = item_call_output(b, it, i, e);
        else if (!strcmp(t, "item_reference"))
            rc = fail(e, "input", 400, "input[%zu]: item_reference is not supported: name the "
                      "last answer in previous_response_id instead", i);
        else
            rc = fail(e, "input", 400, "input[%zu]: item type '%s' is not supported", i, t);
        if (rc)
            return rc;
    }
    return 0;
}

/* The request's input as an array of items (a string is one user message):
 * what the store files as this turn's input. */
static int input_items(const json_t *input, json_t **out, td_resp_err *e)
{
    if (json_is_string(input))
        *out = json_pack("[{s:s, s:s, s:O}]", "type", "message", "role", "user", "content",
                         input);
    else if (!json_is_array(input))
        return fail(e, "input", 400, input ? "input: must be a string or an array of items"
                                           : "input: Field required");
    else if (json_array_size(input) == 0)
        return fail(e, "input", 400, "input: at least one item is required");
    else
        *out = json_incref((json_t *)input);
    return *out ? 0 : OOM(e);
}

/* The conversation before this turn, when the request continues a stored
 * answer. */
static int add_history(builder *b, const json_t *root, const td_resp_history *hist,
                       td_resp_req *r, td_resp_err *e)
{
    const json_t *v = field(root, "previous_response_id");
    if (!v)
        return 0;
    if (!json_is_string(v))
        return fail(e, "previous_response_id", 400, "previous_response_id: must be a string");
    if (!hist)
        return fail(e, "previous_response_id", 400, "previous_response_id is not supported: "
                    "this server stores no responses; send the whole conversation in input");
    if (!(r->previous_response_id = strdup(json_string_value(v))))
        return OOM(e);
    json_t *items = NULL;
    td_err te = hist->fn(hist->arg, r->previous_response_id, &items);
    if (te == TD_ENOENT)
        return fail(e, "previous_response_id", 400, "Previous response with id '%s' not "
                    "found (it was never stored, or was deleted or evicted; send the whole "
                    "conversation in input)", r->previous_response_id);
    if (te)
        return OOM(e);
    int rc = add_items(b, items, e);
    json_decref(items);
    return rc;
}

/* Flat function tools → the chat path's nested ones. */
static int add_tools(json_t *body, const json_t *tools, td_resp_err *e)
{
    if (!json_is_array(tools))
        return fail(e, "tools", 400, "tools: must be an array");
    json_t *out = json_array();
    if (json_object_set_new(body, "tools", out))
        return OOM(e);
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        const char *type = type_of(t);
        const json_t *name = json_object_get(t, "name");
        if (!type || strcmp(type, "function"))
            return fail(e, "tools", 400, "tools[%zu]: tool type '%s' is not supported (only "
                        "function tools)", i, type ? type : "missing");
        if (!json_is_string(name))
            return fail(e, "tools", 400, "tools[%zu].name: must be a string", i);
        json_t *fn = json_pack("{s:O}", "name", name);
        const json_t *d = field(t, "description"), *p = field(t, "parameters");
        if (d && !json_is_string(d)) {
            json_decref(fn);
            return fail(e, "tools", 400, "tools[%zu].description: must be a string", i);
        }
        if (p && !json_is_object(p)) {
            json_decref(fn);
            return fail(e, "tools", 400, "tools[%zu].parameters: must be an object", i);
        }
        /* json_object_set takes no const value; these keep a reference. */
        if (fn && d)
            json_object_set_new(fn, "description", json_incref((json_t *)d));
        if (fn && p)
            json_object_set_new(fn, "parameters", json_incref((json_t *)p));
        if (json_array_append_new(out, json_pack("{s:s, s:o*}", "type", "function",
                                                 "function", fn)))
            return OOM(e);
    }
    return 0;
}

static int add_tool_choice(json_t *body, const json_t *tc, td_resp_err *e)
{
    json_t *v = NULL;
    const char *t = type_of(tc);
    if (json_is_string(tc))
        v = json_incref((json_t *)tc);  /* auto / none / required: checked by conv */
    else if (t && !strcmp(t, "function") && json_is_string(json_object_get(tc, "name")))
        v = json_pack("{s:s, s:{s:O}}", "type", "function", "function", "name",
                      json_object_get(tc, "name"));
    else
        return fail(e, "tool_choice", 400, "tool_choice: must be \"auto\", \"none\", "
                    "\"required\" or {\"type\": \"function\", \"name\": ...}");
    return json_object_set_new(body, "tool_choice", v) ? OOM(e) : 0;
}

static int get_number(const json_t *root, const char *name, double lo, double hi,
                      double *out, td_resp_err *e)
{
    const json_t *v = field(root, name);
    if (!v)
        return 0;
    double d = json_number_value(v);
    if (!json_is_number(v) || !(d >= lo && d <= hi))
        return fail(e, name, 400, "%s: must be a number in [%g, %g]", name, lo, hi);
    *out = d;
    return 0;
}

static int decode_scalars(const json_t *root, json_t *oa, td_resp_req *r, td_resp_err *e)
{
    const json_t *v;
    if (!json_is_string(field(root, "model")))
        return fail(e, "model", 400, field(root, "model") ? "model: must be a string"
                                                          : "model: Field required");
    if ((v = field(root, "conversation")))
        return fail(e, "conversation", 400, "conversation is not supported: this server "
                    "stores no conversations");
    if ((v = field(root, "background")) && !json_is_false(v))
        return fail(e, "background", 400, "background is not supported");
    if ((v = field(root, "store")) && !json_is_boolean(v))
        return fail(e, "store", 400, "store: must be a boolean");
    r->store = !json_is_false(v);  /* OpenAI's default: stored */
    if ((v = field(root, "max_output_tokens"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 1)
            return fail(e, "max_output_tokens", 400, "max_output_tokens: must be an "
                        "integer >= 1");
        r->max_tokens = json_integer_value(v);
    }
    double temperature = 1.0, top_p = 1.0;
    int rc;
    if ((rc = get_number(root, "temperature", 0.0, 2.0, &temperature, e)) ||
        (rc = get_number(root, "top_p", 0.0, 1.0, &top_p, e)))
        return rc;
    if (top_p <= 0.0)
        return fail(e, "top_p", 400, "top_p: must be in (0, 1]");
    r->sampling = (td_router_sampling){.temperature = (float)temperature,
                                       .top_p = (float)top_p};
    if ((v = field(root, "stream")) && !json_is_boolean(v))
        return fail(e, "stream", 400, "stream: must be a boolean");
    r->stream = json_is_true(v);
    if ((v = field(root, "parallel_tool_calls")) &&
        json_object_set(oa, "parallel_tool_calls", (json_t *)v))
        return OOM(e);
    if ((v = field(root, "reasoning"))) {
        if (!json_is_object(v))
            return fail(e, "reasoning", 400, "reasoning: must be an object");
        const json_t *eff = field(v, "effort");
        if (eff && json_object_set(oa, "reasoning_effort", (json_t *)eff))
            return OOM(e);
    }
    if ((v = field(root, "text"))) {
        const char *t = type_of(json_object_get(v, "format"));
        if (t && strcmp(t, "text"))
            return fail(e, "text", 400, "text.format: only {\"type\": \"text\"} is supported");
    }
    return 0;
}

int td_resp_decode(const char *body, size_t len, const td_resp_history *hist, td_resp_req *r,
                   td_resp_err *e)
{
    memset(r, 0, sizeof *r);
    memset(e, 0, sizeof *e);
    json_error_t je;
    json_t *root = json_loadb(body, len, 0, &je);
    json_t *oa = NULL;
    builder b = {0};
    int rc = 0;
    if (!root)
        return fail(e, NULL, 400, "the body is not valid JSON: %s (line %d, column %d)",
                    je.text, je.line, je.column);
    if (!json_is_object(root)) {
        rc = fail(e, NULL, 400, "the body must be a JSON object");
        goto done;
    }
    oa = json_object();
    b.msgs = json_array();
    if (!oa || json_object_set_new(oa, "messages", b.msgs)) {
        rc = OOM(e);
        goto done;
    }
    if ((rc = decode_scalars(root, oa, r, e)))
        goto done;
    const json_t *v;
    if ((v = field(root, "instructions"))) {
        if (!json_is_string(v)) {
            rc = fail(e, "instructions", 400, "instructions: must be a string");
            goto done;
        }
        if ((rc = add_text_msg(&b, "system", json_string_value(v), json_string_length(v), e)))
            goto done;
    }
    if ((rc = input_items(field(root, "input"), &r->input_items, e)) ||
        (rc = add_history(&b, root, hist, r, e)) ||
        (rc = add_items(&b, r->input_items, e)) || (rc = flush(&b, e)))
        goto done;
    if ((v = field(root, "tools")) && (rc = add_tools(oa, v, e)))
        goto done;
    if ((v = field(root, "tool_choice")) && (rc = add_tool_choice(oa, v, e)))
        goto done;
    char err[256];
    const char *param = NULL;
    td_err te = td_conv_from_request(&r->conv, oa, &param, err, sizeof err);
    if (te) {
        /* The translated body names chat fields; map them back. */
        const char *p = !param ? NULL : !strcmp(param, "messages") ? "input"
                        : !strcmp(param, "reasoning_effort") ? "reasoning" : param;
        static const char *const names[] = {"input", "reasoning", "tools", "tool_choice",
                                            "parallel_tool_calls"};
        const char *stable = NULL;  /* e->param must outlive oa: use a literal */
        for (size_t k = 0; p && k < sizeof names / sizeof names[0]; k++)
            if (!strcmp(p, names[k]))
                stable = names[k];
        rc = fail(e, stable, te == TD_ENOMEM ? 500 : 400, "%s", err);
        goto done;
    }
    r->thinking = td_conv_get_think(r->conv) != TD_CONV_THINK_NONE;
    r->tools = td_conv_has_tools(r->conv);
    r->parallel = td_conv_parallel_tool_calls(r->conv);
    char cerr[256];
    td_err ce = td_conv_constraint_get(r->conv, &r->cons, cerr, sizeof cerr);
    if (ce)
        rc = ce == TD_ENOMEM ? OOM(e) : fail(e, "tool_choice", 400, "%s", cerr);
done:
    json_decref(b.asst);
    json_decref(oa);
    json_decref(root);
    if (rc)
        td_resp_req_free(r);
    return rc;
}

void td_resp_req_free(td_resp_req *r)
{
    td_conv_destroy(r->conv);
    td_conv_constraint_fini(&r->cons);
    json_decref(r->input_items);
    free(r->previous_response_id);
    memset(r, 0, sizeof *r);
}

td_resp_path_kind td_resp_path_parse(const char *path, const char **id, size_t *id_len)
{
    static const char prefix[] = "/v1/responses/";
    if (!path || strncmp(path, prefix, sizeof prefix - 1) || !path[sizeof prefix - 1])
        return TD_RESP_PATH_NONE;
    const char *s = path + sizeof prefix - 1;
    size_t n = strcspn(s, "/");
    if (!n)
        return TD_RESP_PATH_UNKNOWN;
    if (id)
        *id = s;
    if (id_len)
        *id_len = n;
    if (!s[n])
        return TD_RESP_PATH_ID;
    return strcmp(s + n, "/input_items") ? TD_RESP_PATH_UNKNOWN : TD_RESP_PATH_INPUT_ITEMS;
}
