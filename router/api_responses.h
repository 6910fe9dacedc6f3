/* td_resp: the OpenAI Responses API (POST /v1/responses) over the same
 * conversation model, encoder, output parser and engine as the chat path.
 *
 * Two pure halves, testable without a server:
 * - the request decoder turns a Responses body into a td_conv plus the
 *   generation parameters, by translating it into an OpenAI chat body
 *   (input items → messages: function_call items → assistant tool_calls,
 *   function_call_output → tool messages, reasoning items →
 *   reasoning_content; flat function tools → nested ones; reasoning.effort
 *   → reasoning_effort) and handing that to td_conv_from_request, so both
 *   APIs render the exact same prompt for the same conversation;
 * - the event encoder turns the DSML parser's events (router/dsml.h) into
 *   output items (reasoning, message, function_call): one response object,
 *   or the SSE sequence response.created, response.in_progress, per item
 *   output_item.added / content_part.added / *.delta / *.done /
 *   content_part.done / output_item.done, then response.completed (or
 *   response.incomplete) with the whole response object.
 * api_responses_gen.c joins them to the engine and files finished answers
 * in the router's store (router/resp_store.h), which serves GET and DELETE
 * /v1/responses/{id} and previous_response_id.
 */
#ifndef TD_ROUTER_API_RESPONSES_H
#define TD_ROUTER_API_RESPONSES_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "router/conv.h"
#include "router/dsml.h"
#include "router/engine.h"
#include "router/gen.h"
#include "router/http.h"
#include "tokenizer/tokenizer.h"

/* ---- the request decoder ------------------------------------------------- */

typedef struct {
    int status;                  /* 400, 500 */
    char message[512];
    const char *param;           /* the top-level field at fault, or NULL */
} td_resp_err;

typedef struct {
    td_conv *conv;
    int64_t max_tokens;          /* max_output_tokens; 0 = up to the context */
    td_router_sampling sampling; /* seed left 0: the caller picks one */
    bool stream;
    bool thinking;               /* the prompt ends with <think> */
    bool tools;                  /* tools are declared in the prompt */
    bool parallel;               /* more than one function call allowed */
    td_conv_constraint cons;     /* tool_choice required / a function: the answer is a call */
    bool store;                  /* file the answer (the default) */
    char *previous_response_id;  /* the stored answer this turn continues, or NULL */
    json_t *input_items;         /* this turn's input as an array of items (a reference) */
} td_resp_req;

/* Where previous_response_id is looked up: the conversation that ends with
 * answer `id` as input items (a new array in *items), TD_ENOENT when it is
 * not stored. */
typedef struct {
    td_err (*fn)(void *arg, const char *id, json_t **items);
    void *arg;
} td_resp_history;

/* Decodes a Responses body. hist NULL: previous_response_id is refused.
 * Returns 0, or the HTTP status with e filled. *r is empty after a failure. */
int td_resp_decode(const char *body, size_t len, const td_resp_history *hist, td_resp_req *r,
                   td_resp_err *e);
void td_resp_req_free(td_resp_req *r);

/* ---- the event encoder ----------------------------------------------------- */

typedef struct {
    bool stream;
    bool parallel;               /* keep function calls after the first */
    const char *id;              /* a unique suffix: ids are resp_ID, msg_ID_N... */
    const char *model;
    long long created_at;        /* unix seconds */
    size_t input_tokens;
    const char *previous_response_id;  /* echoed in the response object, or NULL */
    bool store;                  /* echoed */
} td_resp_enc_opts;

typedef struct {
    /* base.out: stream: SSE bytes produced and not yet taken by the caller;
     * non-stream: the whole JSON response after finish. base.oom: memory ran out. */
    td_gen_enc base;             /* first */
    td_resp_enc_opts o;
    json_t *output;              /* finished items */
    td_gen_parts parts;          /* the item in progress, calls counted */
    int nitems;                  /* output indices handed out */
    char item_id[96];            /* the open item's id */
    td_tok_bytes text;           /* the open item's text / arguments */
    td_tok_bytes name;           /* the open call's name */
    long long seq;               /* stream: the next sequence_number */
    json_t *final;               /* the finished response object, after finish */
} td_resp_enc;

td_err td_resp_enc_init(td_resp_enc *enc, const td_resp_enc_opts *opts);
void td_resp_enc_free(td_resp_enc *enc);
/* stream: response.created and response.in_progress. */
void td_resp_enc_start(td_resp_enc *enc);
/* One event of the output parser (its td_dsml_cb can forward here). Its
 * text must be valid UTF-8, as the server's token stream makes it. */
void td_resp_enc_event(td_resp_enc *enc, const td_dsml_event *ev);
/* Closes the open item and ends the response: status "completed", or
 * "incomplete" with reason max_output_tokens when incomplete is set. */
void td_resp_enc_finish(td_resp_enc *enc, bool incomplete, size_t output_tokens);
/* stream: an `error` event (the status line is long gone). */
void td_resp_enc_error(td_resp_enc *enc, int status, const char *message);
/* The encoder as td_gen drives it (enc->base.ops after init). */
extern const td_gen_enc_ops td_resp_enc_ops;

/* ---- the stored-answer paths ------------------------------------------------- */

typedef enum {
    TD_RESP_PATH_NONE,           /* not below /v1/responses/ (nothing after it either) */
    TD_RESP_PATH_ID,             /* /v1/responses/{id} */
    TD_RESP_PATH_INPUT_ITEMS,    /* /v1/responses/{id}/input_items */
    TD_RESP_PATH_UNKNOWN,        /* anything else below /v1/responses/ */
} td_resp_path_kind;

/* Classifies a request path (without its query string). For ID and
 * INPUT_ITEMS, *id and *id_len (when not NULL) say where the id is in path:
 * not empty, no '/'. The one parser of these paths: the router's dispatch,
 * the endpoint and the /metrics labels all ask it. */
td_resp_path_kind td_resp_path_parse(const char *path, const char **id, size_t *id_len);

/* ---- the endpoint (api_responses_gen.c) -------------------------------------- */

typedef struct td_router td_router;

/* Handles POST /v1/responses. */
void td_router_responses(td_router *rt, td_http_req *req);

#endif
