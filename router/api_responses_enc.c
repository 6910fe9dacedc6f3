/* The Responses event encoder (api_responses.h): output-parser events →
 * output items.
 *
 * Items follow the parser: reasoning opens a reasoning item, content a
 * message item, a tool call a function_call item; a change of kind closes
 * the item in progress. An item starts only when it has something in it.
 * The finished items are kept in both modes, so the stream's final
 * response.completed carries the same response object a non-streamed
 * request gets. A function call the parser aborts is dropped from the
 * output; in a stream (where it was already announced) its
 * output_item.done says status "incomplete" and it stays in the final
 * object that way, so output indices keep matching.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/api_responses.h"
#include "router/router_internal.h"

/* event: NAME\ndata: {"type":NAME,"sequence_number":N,...v}\n\n (takes v) */
static void event(td_resp_enc *enc, const char *name, json_t *v)
{
    json_t *d = json_pack("{s:s, s:I}", "type", name, "sequence_number",
                          (json_int_t)enc->seq++);
    if (!d || !v || json_object_update(d, v)) {
        json_decref(d);
        json_decref(v);
        enc->base.oom = true;
        return;
    }
    json_decref(v);
    td_gen_sse_json(&enc->base, name, d);
}

td_err td_resp_enc_init(td_resp_enc *enc, const td_resp_enc_opts *opts)
{
    memset(enc, 0, sizeof *enc);
    enc->base.ops = &td_resp_enc_ops;
    enc->base.stream = opts->stream;
    enc->o = *opts;
    td_gen_parts_init(&enc->parts);
    if (!(enc->output = json_array()))
        return TD_ENOMEM;
    return TD_OK;
}

void td_resp_enc_free(td_resp_enc *enc)
{
    json_decref(enc->output);
    json_decref(enc->final);
    td_tok_bytes_free(&enc->base.out);
    td_tok_bytes_free(&enc->text);
    td_tok_bytes_free(&enc->name);
    memset(enc, 0, sizeof *enc);
}

/* The response object (takes output). */
static json_t *response(const td_resp_enc *enc, const char *status, json_t *output,
                        bool incomplete, size_t output_tokens, bool with_usage)
{
    char id[128];
    snprintf(id, sizeof id, "resp_%s", enc->o.id);
    json_t *usage = with_usage
        ? json_pack("{s:I, s:{s:I}, s:I, s:{s:I}, s:I}",
                    "input_tokens", (json_int_t)enc->o.input_tokens,
                    "input_tokens_details", "cached_tokens",
                    (json_int_t)enc->base.cached_tokens,
                    "output_tokens", (json_int_t)output_tokens,
                    "output_tokens_details", "reasoning_tokens", (json_int_t)0,
                    "total_tokens", (json_int_t)(enc->o.input_tokens + output_tokens))
        : json_null();
    json_t *details = incomplete ? json_pack("{s:s}", "reason", "max_output_tokens")
                                 : json_null();
    json_t *prev = enc->o.previous_response_id ? json_string(enc->o.previous_response_id)
                                               : json_null();
    return json_pack("{s:s, s:s, s:I, s:s, s:s, s:o, s:o, s:o, s:n, s:b, s:o, s:b}",
                     "id", id, "object", "response", "created_at",
                     (json_int_t)enc->o.created_at, "status", status, "model", enc->o.model,
                     "output", output, "usage", usage, "incomplete_details", details,
                     "error", "parallel_tool_calls", enc->o.parallel,
                     "previous_response_id", prev, "store", enc->o.store);
}

void td_resp_enc_start(td_resp_enc *enc)
{
    if (!enc->o.stream)
        return;
    event(enc, "response.created", json_pack("{s:o}", "response",
          response(enc, "in_progress", json_array(), false, 0, false)));
    event(enc, "response.in_progress", json_pack("{s:o}", "response",
          response(enc, "in_progress", json_array(), false, 0, false)));
}

static const char *str(const td_tok_bytes *b) { return b->data ? b->data : ""; }

/* The open item as an object; text is the finished text (or "" at start). */
static json_t *item(const td_resp_enc *enc, const char *text, size_t len, const char *status)
{
    switch (enc->parts.open) {
    case TD_GEN_PART_REASONING:
        return json_pack("{s:s, s:s, s:[], s:[{s:s, s:s%}]}", "type", "reasoning", "id",
                         enc->item_id, "summary", "content", "type", "reasoning_text", "text",
                         text, len);
    case TD_GEN_PART_TEXT:
        return json_pack("{s:s, s:s, s:s, s:s, s:[{s:s, s:s%, s:[]}]}", "type", "message",
                         "id", enc->item_id, "role", "assistant", "status", status, "content",
                         "type", "output_text", "text", text, len, "annotations");
    default: {
        char call_id[128];
        snprintf(call_id, sizeof call_id, "call_%s_%d", enc->o.id, enc->parts.open_call);
        return json_pack("{s:s, s:s, s:s, s:s%, s:s%, s:s}", "type", "function_call", "id",
                         enc->item_id, "call_id", call_id, "name", str(&enc->name),
                         enc->name.len, "arguments", text, len, "status", status);
    }
    }
}

static json_t *part(const td_resp_enc *enc, const char *text, size_t len)
{
    if (enc->parts.open == TD_GEN_PART_REASONING)
        return json_pack("{s:s, s:s%}", "type", "reasoning_text", "text", text, len);
    return json_pack("{s:s, s:s%, s:[]}", "type", "output_text", "text", text, len,
                     "annotations");
}

/* Ends the open item; keep false: an aborted call. */
static void close_item(td_gen_enc *base, bool keep)
{
    td_resp_enc *enc = (td_resp_enc *)base;
    int index = enc->nitems - 1;
    const char *t = str(&enc->text);
    size_t n = enc->text.len;
    if (enc->o.stream) {
        if (enc->parts.open == TD_GEN_PART_CALL) {
            event(enc, "response.function_call_arguments.done",
                  json_pack("{s:s, s:i, s:s%, s:s%}", "item_id", enc->item_id,
                            "output_index", index, "name", str(&enc->name), enc->name.len,
                            "arguments", t, n));
        } else {
            bool r = enc->parts.open == TD_GEN_PART_REASONING;
            event(enc, r ? "response.reasoning_text.done" : "response.output_text.done",
                  r ? json_pack("{s:s, s:i, s:i, s:s%}", "item_id", enc->item_id,
                                "output_index", index, "content_index", 0, "text", t, n)
                    : json_pack("{s:s, s:i, s:i, s:s%, s:[]}", "item_id", enc->item_id,
                                "output_index", index, "content_index", 0, "text", t, n,
                                "logprobs"));
            event(enc, "response.content_part.done",
                  json_pack("{s:s, s:i, s:i, s:o}", "item_id", enc->item_id, "output_index",
                            index, "content_index", 0, "part", part(enc, t, n)));
        }
    }
    if (keep || enc->o.stream) {
        json_t *it = item(enc, t, n, keep ? "completed" : "incomplete");
        if (enc->o.stream)
            event(enc, "response.output_item.done", json_pack("{s:i, s:O}", "output_index",
                  index, "item", it));
        if (json_array_append_new(enc->output, it))
            enc->base.oom = true;
    } else {
        enc->nitems--;  /* a dropped non-streamed item frees its index again */
    }
    enc->text.len = 0;
    enc->name.len = 0;
}

static void open_item(td_gen_enc *base, td_gen_part kind, const char *name, size_t name_len)
{
    td_resp_enc *enc = (td_resp_enc *)base;
    int index = enc->nitems++;
    static const char *const prefix[] = {[TD_GEN_PART_REASONING] = "rs",
                                         [TD_GEN_PART_TEXT] = "msg",
                                         [TD_GEN_PART_CALL] = "fc"};
    snprintf(enc->item_id, sizeof enc->item_id, "%s_%s_%d", prefix[kind], enc->o.id, index);
    if (name && td_conv_bytes_append(&enc->name, name, name_len))
        enc->base.oom = true;
    if (!enc->o.stream)
        return;
    /* Announced empty: the deltas fill it. */
    json_t *it = item(enc, "", 0, "in_progress");
    if (it && (kind == TD_GEN_PART_TEXT || kind == TD_GEN_PART_REASONING))
        json_array_clear(json_object_get(it, "content"));
    event(enc, "response.output_item.added", json_pack("{s:i, s:o}", "output_index", index,
                                                       "item", it));
    if (kind != TD_GEN_PART_CALL)
        event(enc, "response.content_part.added",
              json_pack("{s:s, s:i, s:i, s:o}", "item_id", enc->item_id, "output_index",
                        index, "content_index", 0, "part", part(enc, "", 0)));
}

static void delta(td_gen_enc *base, const char *s, size_t n)
{
    td_resp_enc *enc = (td_resp_enc *)base;
    if (td_conv_bytes_append(&enc->text, s, n))
        enc->base.oom = true;
    if (!enc->o.stream)
        return;
    int index = enc->nitems - 1;
    switch (enc->parts.open) {
    case TD_GEN_PART_REASONING:
        event(enc, "response.reasoning_text.delta",
              json_pack("{s:s, s:i, s:i, s:s%}", "item_id", enc->item_id, "output_index",
                        index, "content_index", 0, "delta", s, n));
        break;
    case TD_GEN_PART_TEXT:
        event(enc, "response.output_text.delta",
              json_pack("{s:s, s:i, s:i, s:s%, s:[]}", "item_id", enc->item_id,
                        "output_index", index, "content_index", 0, "delta", s, n,
                        "logprobs"));
        break;
    default:
        event(enc, "response.function_call_arguments.delta",
              json_pack("{s:s, s:i, s:s%}", "item_id", enc->item_id, "output_index", index,
                        "delta", s, n));
        break;
    }
}

static const td_gen_parts_ops items = {.open = open_item, .delta = delta,
                                       .close = close_item};

void td_resp_enc_event(td_resp_enc *enc, const td_dsml_event *ev)
{
    td_gen_parts_event(&enc->parts, &items, &enc->base, enc->o.parallel, ev);
}

void td_resp_enc_finish(td_resp_enc *enc, bool incomplete, size_t output_tokens)
{
    /* An unfinished call (the output ended inside it) is not a call. */
    td_gen_parts_finish(&enc->parts, &items, &enc->base);
    json_t *r = response(enc, incomplete ? "incomplete" : "completed",
                         json_incref(enc->output), incomplete, output_tokens, true);
    json_decref(enc->final);
    enc->final = json_incref(r);
    if (enc->o.stream) {
        event(enc, incomplete ? "response.incomplete" : "response.completed",
              json_pack("{s:o}", "response", r));
        return;
    }
    enc->base.out.len = 0;
    td_gen_put_json(&enc->base, r);
}

void td_resp_enc_error(td_resp_enc *enc, int status, const char *message)
{
    event(enc, "error", json_pack("{s:s, s:s, s:n}", "code",
                                  status >= 500 ? "server_error" : "invalid_request_error",
                                  "message", message ? message : "", "param"));
}

/* ---- as a td_gen encoder ------------------------------------------------------ */

static td_resp_enc *of(td_gen_enc *e) { return (td_resp_enc *)e; }
static void op_start(td_gen_enc *e) { td_resp_enc_start(of(e)); }
static void op_event(td_gen_enc *e, const td_dsml_event *ev) { td_resp_enc_event(of(e), ev); }
static void op_fini(td_gen_enc *e) { td_resp_enc_free(of(e)); }

static void op_finish(td_gen_enc *e, td_gen_end why, const char *stop_seq, size_t output_tokens)
{
    (void)stop_seq;  /* the Responses API has no stop strings */
    td_resp_enc_finish(of(e), why == TD_GEN_END_LENGTH, output_tokens);
}

static void op_error(td_gen_enc *e, int status, const char *code, const char *msg)
{
    (void)code;
    td_resp_enc_error(of(e), status, msg);
}

/* Responses errors are OpenAI-shaped, without a code. */
static void op_send_error(td_http_req *req, int status, const char *code, const char *msg)
{
    (void)code;
    td_router_error(req, status, NULL, NULL, "%s", msg);
}

const td_gen_enc_ops td_resp_enc_ops = {
    .start = op_start, .event = op_event, .finish = op_finish, .error = op_error,
    .send_error = op_send_error, .fini = op_fini,
    .cancelled = "the request was cancelled (the server is shutting down)",
};
