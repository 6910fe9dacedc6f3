/* The Anthropic event encoder (api_anthropic.h): output-parser events →
 * content blocks.
 *
 * Blocks follow the parser: reasoning opens a thinking block, content a
 * text block, a tool call a tool_use block; a change of kind closes the
 * block in progress. In a stream every block is content_block_start, its
 * deltas, content_block_stop, as the real API sends them; a block starts
 * only when it has something in it, so no empty text block appears.
 * A tool call the parser aborts cannot be taken back in a stream: its
 * block is closed as it is and the stop reason is not tool_use. In a
 * non-streamed message it is dropped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/api_anthropic.h"

static td_gen_enc *out(td_anth_enc *enc) { return &enc->base; }

/* event: NAME\ndata: <head>"<escaped text>"<tail>\n\n */
static void event_text(td_anth_enc *enc, const char *name, const char *head,
                       const char *s, size_t n, const char *tail)
{
    td_gen_sse_begin(out(enc), name);
    td_gen_puts(out(enc), head);
    if (s)
        td_gen_put_jstring(out(enc), s, n);
    td_gen_puts(out(enc), tail);
    td_gen_sse_end(out(enc));
}

td_err td_anth_enc_init(td_anth_enc *enc, const td_anth_enc_opts *opts)
{
    memset(enc, 0, sizeof *enc);
    enc->base.ops = &td_anth_enc_ops;
    enc->base.stream = opts->stream;
    enc->o = *opts;
    td_gen_parts_init(&enc->parts);
    if (!opts->stream && !(enc->content = json_array()))
        return TD_ENOMEM;
    return TD_OK;
}

void td_anth_enc_free(td_anth_enc *enc)
{
    json_decref(enc->content);
    td_tok_bytes_free(&enc->base.out);
    td_tok_bytes_free(&enc->text);
    td_tok_bytes_free(&enc->name);
    memset(enc, 0, sizeof *enc);
}

static json_t *usage(const td_anth_enc *enc, size_t output_tokens)
{
    /* Anthropic's input_tokens leaves out what was read from a cache. */
    size_t cached = enc->base.cached_tokens;
    return json_pack("{s:I, s:I, s:I, s:I}", "input_tokens",
                     (json_int_t)(enc->o.input_tokens - cached),
                     "cache_creation_input_tokens", (json_int_t)0,
                     "cache_read_input_tokens", (json_int_t)cached,
                     "output_tokens", (json_int_t)output_tokens);
}

static json_t *message(const td_anth_enc *enc, json_t *content, json_t *stop_reason,
                       json_t *stop_sequence, size_t output_tokens)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o}", "id", enc->o.msg_id,
                     "type", "message", "role", "assistant", "model", enc->o.model,
                     "content", content, "stop_reason", stop_reason,
                     "stop_sequence", stop_sequence, "usage", usage(enc, output_tokens));
}

void td_anth_enc_start(td_anth_enc *enc)
{
    if (!enc->o.stream)
        return;
    td_gen_sse_json(out(enc), "message_start", json_pack("{s:s, s:o}", "type", "message_start",
               "message", message(enc, json_array(), json_null(), json_null(), 0)));
    td_gen_puts(out(enc), "event: ping\ndata: {\"type\":\"ping\"}\n\n");
}

static void tool_id(const td_anth_enc *enc, int index, char *buf, size_t n)
{
    snprintf(buf, n, "%s%02d", enc->o.tool_id_prefix ? enc->o.tool_id_prefix : "toolu_",
             index);
}

/* Ends the open block: content_block_stop, or the finished block object. */
static void close_block(td_gen_enc *base, bool keep)
{
    td_anth_enc *enc = (td_anth_enc *)base;
    int index = enc->nblocks - 1;
    if (enc->o.stream) {
        char head[96];
        snprintf(head, sizeof head, "{\"type\":\"content_block_stop\",\"index\":%d}", index);
        event_text(enc, "content_block_stop", head, NULL, 0, "");
    } else if (keep) {
        const char *t = enc->text.data ? enc->text.data : "";
        json_t *b = NULL;
        if (enc->parts.open == TD_GEN_PART_TEXT) {
            b = json_pack("{s:s, s:s%}", "type", "text", "text", t, enc->text.len);
        } else if (enc->parts.open == TD_GEN_PART_REASONING) {
            b = json_pack("{s:s, s:s%, s:s}", "type", "thinking", "thinking", t,
                          enc->text.len, "signature", "");
        } else {
            char id[64];
            tool_id(enc, enc->parts.open_call, id, sizeof id);
            json_t *input = json_loadb(t, enc->text.len, 0, NULL);
            if (!json_is_object(input)) {  /* the parser validated it; be safe */
                json_decref(input);
                input = json_object();
            }
            b = json_pack("{s:s, s:s, s:s%, s:o}", "type", "tool_use", "id", id, "name",
                          enc->name.data ? enc->name.data : "", enc->name.len, "input", input);
        }
        if (json_array_append_new(enc->content, b))
            enc->base.oom = true;
    } else {
        /* A non-streamed block that is dropped frees its index again. */
        enc->nblocks--;
    }
    enc->text.len = 0;
    enc->name.len = 0;
}

static void open_block(td_gen_enc *base, td_gen_part kind, const char *name, size_t name_len)
{
    td_anth_enc *enc = (td_anth_enc *)base;
    int index = enc->nblocks++;
    if (!enc->o.stream) {
        if (name && td_conv_bytes_append(&enc->name, name, name_len))
            enc->base.oom = true;
        return;
    }
    char head[192];
    if (kind == TD_GEN_PART_TEXT) {
        snprintf(head, sizeof head, "{\"type\":\"content_block_start\",\"index\":%d,"
                 "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}", index);
        event_text(enc, "content_block_start", head, NULL, 0, "");
    } else if (kind == TD_GEN_PART_REASONING) {
        snprintf(head, sizeof head, "{\"type\":\"content_block_start\",\"index\":%d,"
                 "\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\","
                 "\"signature\":\"\"}}", index);
        event_text(enc, "content_block_start", head, NULL, 0, "");
    } else {
        char id[64];
        tool_id(enc, enc->parts.open_call, id, sizeof id);
        snprintf(head, sizeof head, "{\"type\":\"content_block_start\",\"index\":%d,"
                 "\"content_block\":{\"type\":\"tool_use\",\"id\":\"%s\",\"name\":", index, id);
        event_text(enc, "content_block_start", head, name, name_len, ",\"input\":{}}}");
    }
}

/* A piece of the open block: a delta in a stream, kept text otherwise. */
static void block_delta(td_gen_enc *base, const char *s, size_t n)
{
    td_anth_enc *enc = (td_anth_enc *)base;
    if (!enc->o.stream) {
        if (td_conv_bytes_append(&enc->text, s, n))
            enc->base.oom = true;
        return;
    }
    static const char *const kinds[] = {
        [TD_GEN_PART_TEXT] = "\"text_delta\",\"text\":",
        [TD_GEN_PART_REASONING] = "\"thinking_delta\",\"thinking\":",
        [TD_GEN_PART_CALL] = "\"input_json_delta\",\"partial_json\":",
    };
    char head[128];
    snprintf(head, sizeof head, "{\"type\":\"content_block_delta\",\"index\":%d,"
             "\"delta\":{\"type\":%s", enc->nblocks - 1, kinds[enc->parts.open]);
    event_text(enc, "content_block_delta", head, s, n, "}}");
}

static const td_gen_parts_ops blocks = {.open = open_block, .delta = block_delta,
                                        .close = close_block};

void td_anth_enc_event(td_anth_enc *enc, const td_dsml_event *ev)
{
    td_gen_parts_event(&enc->parts, &blocks, out(enc), enc->o.parallel, ev);
}

static const char *stop_name(td_anth_stop why)
{
    switch (why) {
    case TD_ANTH_STOP_MAX_TOKENS: return "max_tokens";
    case TD_ANTH_STOP_SEQUENCE: return "stop_sequence";
    case TD_ANTH_STOP_TOOL_USE: return "tool_use";
    default: return "end_turn";
    }
}

void td_anth_enc_finish(td_anth_enc *enc, td_anth_stop why, const char *stop_sequence,
                        size_t output_tokens)
{
    /* An unfinished tool block (the output ended inside it) is not a call. */
    td_gen_parts_finish(&enc->parts, &blocks, out(enc));
    if (why == TD_ANTH_STOP_END_TURN && enc->parts.calls_ok > 0 && enc->parts.calls_aborted == 0)
        why = TD_ANTH_STOP_TOOL_USE;
    json_t *seq = why == TD_ANTH_STOP_SEQUENCE && stop_sequence ? json_string(stop_sequence)
                                                                  : json_null();
    if (enc->o.stream) {
        td_gen_sse_json(out(enc), "message_delta", json_pack("{s:s, s:{s:s, s:o}, s:{s:I, s:I}}",
                   "type", "message_delta", "delta", "stop_reason", stop_name(why),
                   "stop_sequence", seq, "usage",
                   "input_tokens", (json_int_t)enc->o.input_tokens,
                   "output_tokens", (json_int_t)output_tokens));
        td_gen_puts(out(enc), "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        return;
    }
    enc->base.out.len = 0;
    td_gen_put_json(out(enc), message(enc, json_incref(enc->content),
                                      json_string(stop_name(why)), seq, output_tokens));
}

void td_anth_enc_error(td_anth_enc *enc, int status, const char *message)
{
    json_t *v = json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type",
                          td_anth_error_type(status), "message", message ? message : "");
    td_gen_sse_json(out(enc), "error", v);
}

/* ---- as a td_gen encoder ------------------------------------------------------ */

static td_anth_enc *of(td_gen_enc *e) { return (td_anth_enc *)e; }
static void op_start(td_gen_enc *e) { td_anth_enc_start(of(e)); }
static void op_event(td_gen_enc *e, const td_dsml_event *ev) { td_anth_enc_event(of(e), ev); }
static void op_fini(td_gen_enc *e) { td_anth_enc_free(of(e)); }

static void op_finish(td_gen_enc *e, td_gen_end why, const char *stop_seq, size_t output_tokens)
{
    td_anth_stop s = why == TD_GEN_END_LENGTH ? TD_ANTH_STOP_MAX_TOKENS
                     : why == TD_GEN_END_STOP_SEQ ? TD_ANTH_STOP_SEQUENCE
                                                  : TD_ANTH_STOP_END_TURN;
    td_anth_enc_finish(of(e), s, stop_seq, output_tokens);
}

static void op_error(td_gen_enc *e, int status, const char *code, const char *msg)
{
    (void)code;
    td_anth_enc_error(of(e), status, msg);
}

static void op_send_error(td_http_req *req, int status, const char *code, const char *msg)
{
    (void)code;
    td_anth_send_error(req, status, NULL, msg);
}

const td_gen_enc_ops td_anth_enc_ops = {
    .start = op_start, .event = op_event, .finish = op_finish, .error = op_error,
    .send_error = op_send_error, .fini = op_fini,
    .cancelled = "the request was cancelled (the server is shutting down)",
};
