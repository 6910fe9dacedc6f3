/* Parsing and validating the bodies of /v1/completions and
 * /v1/chat/completions into td_router_params, with OpenAI's error shape:
 * every rejection names the parameter. Unknown fields are ignored (clients
 * send many); known fields that would change the answer in a way we do not
 * implement yet (n > 1, logprobs, echo...) are refused, not ignored. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "constrain/constrain.h"
#include "router/router_internal.h"

#define MAX_STOPS 16

static int fail(td_router_apierr *e, int status, const char *param, const char *code,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int fail(td_router_apierr *e, int status, const char *param, const char *code,
                const char *fmt, ...)
{
    e->status = status;
    e->param = param;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return status;
}

/* A field that is absent or null takes its default. */
static const json_t *field(const json_t *root, const char *name)
{
    const json_t *v = json_object_get(root, name);
    return json_is_null(v) ? NULL : v;
}

static int get_number(const json_t *root, const char *name, double lo, double hi,
                      double *out, td_router_apierr *e)
{
    const json_t *v = field(root, name);
    if (!v)
        return 0;
    double d = json_number_value(v);
    if (!json_is_number(v) || !(d >= lo && d <= hi))
        return fail(e, 400, name, "invalid_value", "%s must be a number in [%g, %g]",
                    name, lo, hi);
    *out = d;
    return 0;
}

static int get_int(const json_t *root, const char *name, json_int_t lo, json_int_t hi,
                   json_int_t *out, td_router_apierr *e)
{
    const json_t *v = field(root, name);
    if (!v)
        return 0;
    /* 5.0 is accepted as 5, as Python-based servers do. */
    double d = json_number_value(v);
    json_int_t i = json_is_integer(v) ? json_integer_value(v) : (json_int_t)d;
    if (!json_is_number(v) || (json_is_real(v) && d != floor(d)) || i < lo || i > hi)
        return fail(e, 400, name, "invalid_value", "%s must be an integer in [%lld, %lld]",
                    name, (long long)lo, (long long)hi);
    *out = i;
    return 0;
}

static int get_bool(const json_t *root, const char *name, bool *out, td_router_apierr *e)
{
    const json_t *v = field(root, name);
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return fail(e, 400, name, "invalid_type", "%s must be a boolean", name);
    *out = json_is_true(v);
    return 0;
}

static int add_stop(td_router_params *p, const json_t *s, td_router_apierr *e)
{
    if (!json_is_string(s))
        return fail(e, 400, "stop", "invalid_type",
                    "stop must be a string or an array of strings");
    if (json_string_length(s) == 0)
        return 0;  /* matches everywhere; ignore it as OpenAI does */
    if (p->nstops == MAX_STOPS)
        return fail(e, 400, "stop", "invalid_value", "at most %d stop strings", MAX_STOPS);
    char *copy = malloc(json_string_length(s) + 1);
    if (!copy)
        return fail(e, 500, NULL, NULL, "out of memory");
    memcpy(copy, json_string_value(s), json_string_length(s) + 1);
    p->stops[p->nstops] = copy;
    p->stop_lens[p->nstops++] = json_string_length(s);
    return 0;
}

static int parse_stop(const json_t *root, td_router_params *p, td_router_apierr *e)
{
    const json_t *v = field(root, "stop");
    if (!v)
        return 0;
    p->stops = calloc(MAX_STOPS, sizeof *p->stops);
    p->stop_lens = calloc(MAX_STOPS, sizeof *p->stop_lens);
    if (!p->stops || !p->stop_lens)
        return fail(e, 500, NULL, NULL, "out of memory");
    if (!json_is_array(v))
        return add_stop(p, v, e);
    size_t i;
    const json_t *s;
    json_array_foreach(v, i, s) {
        int rc = add_stop(p, s, e);
        if (rc)
            return rc;
    }
    return 0;
}

/* Fields we recognise but do not implement: refuse rather than ignore. */
static int refuse_unsupported(const json_t *root, bool chat, td_router_apierr *e)
{
    json_int_t n = 1;
    int rc = get_int(root, "n", 1, 1, &n, e);
    if (rc)
        return fail(e, 400, "n", "invalid_value", "only n = 1 is supported");
    const json_t *lp = field(root, "logprobs");
    if (lp && !json_is_false(lp) && !(json_is_integer(lp) && json_integer_value(lp) == 0))
        return fail(e, 400, "logprobs", "unsupported_parameter", "logprobs are not supported yet");
    if (json_is_true(field(root, "echo")))
        return fail(e, 400, "echo", "unsupported_parameter", "echo is not supported");
    const json_t *bo = field(root, "best_of");
    if (bo && !(json_is_integer(bo) && json_integer_value(bo) == 1))
        return fail(e, 400, "best_of", "unsupported_parameter", "only best_of = 1 is supported");
    if (!chat && field(root, "suffix"))
        return fail(e, 400, "suffix", "unsupported_parameter", "suffix is not supported");
    return 0;
}

/* response_format: text (nothing to do), json_object (any JSON object) or
 * json_schema {"json_schema": {"schema": {...}}}; the schema must compile
 * (constrain/: the subset in docs/constrain.md). */
static int parse_response_format(const json_t *root, td_router_params *p, td_router_apierr *e)
{
    const json_t *rf = field(root, "response_format");
    if (!rf)
        return 0;
    const json_t *t = json_object_get(rf, "type");
    const char *type = json_is_string(t) ? json_string_value(t) : "";
    if (!strcmp(type, "text"))
        return 0;
    if (!strcmp(type, "json_object")) {
        if (!(p->json_schema = strdup("")))
            return fail(e, 500, NULL, NULL, "out of memory");
        return 0;
    }
    const json_t *schema = json_object_get(json_object_get(rf, "json_schema"), "schema");
    if (strcmp(type, "json_schema") || !json_is_object(schema))
        return fail(e, 400, "response_format", "invalid_value",
                    "response_format must be {\"type\": \"text\"}, {\"type\": \"json_object\"} "
                    "or {\"type\": \"json_schema\", \"json_schema\": {\"schema\": {...}}}");
    if (!(p->json_schema = json_dumps(schema, JSON_COMPACT | JSON_PRESERVE_ORDER)))
        return fail(e, 500, NULL, NULL, "out of memory");
    char err[256];
    td_cons_grammar *g;
    td_err te = td_cons_grammar_json(&g, p->json_schema, strlen(p->json_schema), err, sizeof err);
    if (te)
        return fail(e, te == TD_ENOMEM ? 500 : 400, "response_format",
                    te == TD_ENOMEM ? NULL : "invalid_value", "%s", err);
    td_cons_grammar_destroy(g);
    return 0;
}

static int parse_prompt(td_router *rt, const json_t *root, td_router_params *p,
                        td_router_apierr *e)
{
    const json_t *v = json_object_get(root, "prompt");
    if (json_is_array(v) && json_array_size(v) == 1 && json_is_string(json_array_get(v, 0)))
        v = json_array_get(v, 0);  /* a batch of one prompt */
    char err[256];
    if (json_is_string(v)) {
        /* A raw prompt is the caller's whole input, markers included: it is
         * encoded as `tandem generate` does (special tokens recognised, no
         * BOS added), so both give the same ids for the same text. */
        if (td_tok_encode(rt->tok, json_string_value(v), json_string_length(v), 0,
                          &p->prompt, err, sizeof err))
            return fail(e, 400, "prompt", NULL, "cannot tokenize the prompt: %s", err);
        return 0;
    }
    if (json_is_array(v) && json_array_size(v) > 0 && json_is_integer(json_array_get(v, 0))) {
        /* Token ids. */
        int32_t vocab = td_tok_vocab_size(rt->tok);
        size_t i;
        const json_t *t;
        p->prompt.ids = malloc(json_array_size(v) * sizeof *p->prompt.ids);
        if (!p->prompt.ids)
            return fail(e, 500, NULL, NULL, "out of memory");
        p->prompt.cap = json_array_size(v);
        json_array_foreach(v, i, t) {
            if (!json_is_integer(t) || json_integer_value(t) < 0 ||
                json_integer_value(t) >= vocab)
                return fail(e, 400, "prompt", "invalid_value",
                            "prompt[%zu] is not a token id in [0, %d)", i, vocab);
            p->prompt.ids[p->prompt.len++] = (int32_t)json_integer_value(t);
        }
        return 0;
    }
    if (!v)
        return fail(e, 400, "prompt", "missing_required_parameter", "prompt is required");
    return fail(e, 400, "prompt", "invalid_type",
                "prompt must be a string, an array of one string, or an array of token ids");
}

int td_router_params_parse(td_router *rt, bool chat, const char *body, size_t len,
                           td_router_params *p, td_router_apierr *e)
{
    memset(p, 0, sizeof *p);
    json_error_t je;
    json_t *root = json_loadb(body, len, 0, &je);
    int rc = 0;
    if (!root)
        return fail(e, 400, NULL, "invalid_json", "the body is not valid JSON: %s "
                    "(line %d, column %d)", je.text, je.line, je.column);
    if (!json_is_object(root)) {
        rc = fail(e, 400, NULL, "invalid_json", "the body must be a JSON object");
        goto done;
    }
    p->chat = chat;
    const json_t *model = field(root, "model");
    if (model && !json_is_string(model)) {
        rc = fail(e, 400, "model", "invalid_type", "model must be a string");
        goto done;
    }
    if (model && strcmp(json_string_value(model), rt->model_id)) {
        rc = fail(e, 404, "model", "model_not_found", "The model '%s' does not exist; "
                  "this server serves '%s'", json_string_value(model), rt->model_id);
        goto done;
    }
    if ((rc = refuse_unsupported(root, chat, e)))
        goto done;

    double temperature = 1.0, top_p = 1.0;
    json_int_t max_tokens = -1, top_k = 0, seed = -1;
    const char *max_name = chat && field(root, "max_completion_tokens")
                               ? "max_completion_tokens" : "max_tokens";
    if ((rc = get_number(root, "temperature", 0.0, 2.0, &temperature, e)) ||
        (rc = get_number(root, "top_p", 0.0, 1.0, &top_p, e)) ||
        (rc = get_int(root, "top_k", -1, 1 << 30, &top_k, e)) ||
        (rc = get_int(root, "seed", INT64_MIN, INT64_MAX, &seed, e)) ||
        (rc = get_int(root, max_name, 1, 1LL << 40, &max_tokens, e)) ||
        (rc = get_bool(root, "stream", &p->stream, e)) ||
        (rc = parse_stop(root, p, e)))
        goto done;
    if (top_p <= 0.0) {
        rc = fail(e, 400, "top_p", "invalid_value", "top_p must be in (0, 1]");
        goto done;
    }
    const json_t *so = field(root, "stream_options");
    if (so && (!json_is_object(so) || (rc = get_bool(so, "include_usage",
                                                     &p->include_usage, e)))) {
        rc = fail(e, 400, "stream_options", "invalid_type",
                  "stream_options must be an object with a boolean include_usage");
        goto done;
    }
    p->sampling.temperature = (float)temperature;
    p->sampling.top_p = (float)top_p;
    p->sampling.top_k = top_k < 0 ? 0 : (int)top_k;
    p->sampling.seed = seed >= 0 || field(root, "seed")
                           ? (uint64_t)seed
                           : rt->id_salt ^ (rt->next_id * 0x9E3779B97F4A7C15ull);

    if (chat) {
        /* messages, tools, tool_choice, reasoning_effort → a conversation →
         * the exact V4 prompt, as ids (router/conv.h, chat_encode.h). */
        char err[256];
        const char *param = "messages";
        td_conv *conv = NULL;
        td_err te = td_conv_from_request(&conv, root, &param, err, sizeof err);
        if (!te)
            te = td_chat_render_ids(conv, rt->tok, &rt->chat_ids, &p->prompt, err, sizeof err);
        if (!te) {
            p->thinking = td_conv_get_think(conv) != TD_CONV_THINK_NONE;
            p->tools = td_conv_has_tools(conv);
            p->parallel_tool_calls = td_conv_parallel_tool_calls(conv);
            param = "tool_choice";
            te = td_conv_constraint_get(conv, &p->cons, err, sizeof err);
        }
        td_conv_destroy(conv);
        if (te) {
            rc = fail(e, te == TD_ENOMEM ? 500 : 400, param ? param : "messages",
                      te == TD_ENOMEM ? NULL : "invalid_value", "%s", err);
            goto done;
        }
        if ((rc = parse_response_format(root, p, e)))
            goto done;
    } else if ((rc = parse_prompt(rt, root, p, e))) {
        goto done;
    }
    if (p->prompt.len == 0) {
        rc = fail(e, 400, chat ? "messages" : "prompt", "invalid_value",
                  "the prompt encodes to no tokens");
        goto done;
    }
    /* The prompt must leave room for at least one generated token. */
    int64_t ctx = rt->engine.context_len(rt->engine.ctx);
    if ((int64_t)p->prompt.len >= ctx) {
        rc = fail(e, 400, chat ? "messages" : "prompt", "context_length_exceeded",
                  "This model's maximum context length is %lld tokens; the prompt has "
                  "%zu tokens", (long long)ctx, p->prompt.len);
        goto done;
    }
    int64_t room = ctx - (int64_t)p->prompt.len;
    /* OpenAI's completions default is 16 tokens; chat runs to the context. */
    p->max_tokens = max_tokens > 0 ? max_tokens : chat ? room : 16;
    if (p->max_tokens > room)
        p->max_tokens = room;  /* as `tandem generate` clamps */
done:
    json_decref(root);
    if (rc)
        td_router_params_free(p);
    return rc;
}

void td_router_params_free(td_router_params *p)
{
    td_tok_ids_free(&p->prompt);
    for (int i = 0; i < p->nstops; i++)
        free(p->stops[i]);
    free(p->stops);
    free(p->stop_lens);
    td_conv_constraint_fini(&p->cons);
    free(p->json_schema);
    memset(p, 0, sizeof *p);
}
