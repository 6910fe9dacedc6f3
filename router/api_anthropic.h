/* td_anth: the Anthropic Messages API (POST /v1/messages and
 * /v1/messages/count_tokens) over the same conversation model, encoder,
 * output parser and engine as the OpenAI chat path.
 *
 * Two pure halves, testable without a server:
 * - the request decoder turns a Messages body into a td_conv plus the
 *   generation parameters. It works by translating the body into an OpenAI
 *   chat body (tool_use blocks → assistant tool_calls, tool_result blocks →
 *   tool messages, thinking blocks → reasoning_content) and handing that to
 *   td_conv_from_request, so both APIs render the exact same prompt for the
 *   same conversation;
 * - the event encoder turns the DSML parser's events (router/dsml.h) into
 *   Anthropic content blocks: one JSON message, or the SSE event sequence
 *   message_start, ping, content_block_start/delta/stop..., message_delta,
 *   message_stop.
 * api_anthropic_gen.c joins them to the engine.
 */
#ifndef TD_ROUTER_API_ANTHROPIC_H
#define TD_ROUTER_API_ANTHROPIC_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "router/conv.h"
#include "router/dsml.h"
#include "router/engine.h"
#include "router/gen.h"
#include "router/http.h"
#include "tokenizer/tokenizer.h"

/* ---- errors -------------------------------------------------------------- */

typedef struct {
    int status;                  /* 400, 404, 500... */
    char message[512];
} td_anth_err;

/* Anthropic's error type for an HTTP status ("invalid_request_error"...). */
const char *td_anth_error_type(int status);
/* {"type":"error","error":{"type":...,"message":...}} as a response, with
 * extra header lines (or NULL); ends the exchange. */
void td_anth_send_error(td_http_req *req, int status, const char *extra_headers,
                        const char *message);

/* ---- the request decoder ------------------------------------------------- */

/* The most stop_sequences accepted. */
#define TD_ANTH_MAX_STOPS 16

typedef struct {
    td_conv *conv;
    int64_t max_tokens;          /* as given; the caller clamps to the context */
    td_router_sampling sampling; /* seed left 0: the caller picks one */
    char **stops;                /* stop_sequences (non-empty strings) */
    size_t *stop_lens;
    int nstops;
    bool stream;
    bool thinking;               /* the prompt ends with <think> */
    bool tools;                  /* tools are declared in the prompt */
    bool parallel;               /* more than one tool call allowed */
    char *session;               /* from metadata.user_id, or NULL */
    td_conv_constraint cons;     /* tool_choice any / tool: the answer is a call */
} td_anth_req;

enum {
    /* count_tokens: max_tokens is not required (nor allowed to matter). */
    TD_ANTH_COUNT_ONLY = 1u << 0,
};

/* Decodes a Messages body. Returns 0, or the HTTP status with e filled
 * (the message names the field at fault). *r is empty after a failure. */
int td_anth_decode(const char *body, size_t len, unsigned flags, td_anth_req *r,
                   td_anth_err *e);
void td_anth_req_free(td_anth_req *r);

/* The session id a metadata.user_id carries: Claude Code sends
 * "user_<hash>_account_<uuid>_session_<uuid>"; the part after "_session_"
 * names the conversation. Other values are used whole. NULL if none. */
char *td_anth_session_of(const char *user_id);

/* ---- the event encoder ----------------------------------------------------- */

typedef enum {
    TD_ANTH_STOP_END_TURN,
    TD_ANTH_STOP_MAX_TOKENS,
    TD_ANTH_STOP_SEQUENCE,
    TD_ANTH_STOP_TOOL_USE,       /* chosen by the encoder, not the caller */
} td_anth_stop;

typedef struct {
    bool stream;
    bool parallel;               /* keep tool calls after the first */
    const char *msg_id;          /* "msg_..." */
    const char *model;
    const char *tool_id_prefix;  /* tool_use ids are prefix + call index */
    size_t input_tokens;
} td_anth_enc_opts;

typedef struct {
    /* base.out: stream: SSE bytes produced and not yet taken by the caller;
     * non-stream: the whole JSON message after finish. base.oom: memory ran out. */
    td_gen_enc base;             /* first */
    td_anth_enc_opts o;
    td_gen_parts parts;          /* the block in progress, calls counted */
    int nblocks;                 /* content blocks started so far */
    json_t *content;             /* non-stream: finished blocks */
    td_tok_bytes text;           /* non-stream: the open block's text / JSON */
    td_tok_bytes name;           /* non-stream: the open tool block's name */
} td_anth_enc;

td_err td_anth_enc_init(td_anth_enc *enc, const td_anth_enc_opts *opts);
void td_anth_enc_free(td_anth_enc *enc);
/* stream: message_start and a ping. */
void td_anth_enc_start(td_anth_enc *enc);
/* One event of the output parser (its td_dsml_cb can forward here). Its
 * text must be valid UTF-8, as the server's token stream makes it. */
void td_anth_enc_event(td_anth_enc *enc, const td_dsml_event *ev);
/* Closes the open block and ends the message. A TD_ANTH_STOP_END_TURN
 * becomes TD_ANTH_STOP_TOOL_USE when complete tool calls (and no broken
 * ones) were reported. stop_sequence is the matched one, or NULL. */
void td_anth_enc_finish(td_anth_enc *enc, td_anth_stop why, const char *stop_sequence,
                        size_t output_tokens);
/* stream: an `error` event (the status line is long gone). */
void td_anth_enc_error(td_anth_enc *enc, int status, const char *message);
/* The encoder as td_gen drives it (enc->base.ops after init). */
extern const td_gen_enc_ops td_anth_enc_ops;

/* ---- the endpoints (api_anthropic_gen.c) ------------------------------------ */

typedef struct td_router td_router;

/* Handles POST /v1/messages (count_only false) and
 * /v1/messages/count_tokens. session: the session header's value, or NULL
 * (then metadata.user_id names the session). */
void td_router_anthropic(td_router *rt, td_http_req *req, bool count_only,
                         const char *session);

#endif
