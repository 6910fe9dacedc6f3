/* Shared between the router's files: the router object, request parameters,
 * the chat renderer, the stop-string matcher, JSON helpers. */
#ifndef TD_ROUTER_INTERNAL_H
#define TD_ROUTER_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "router/chat_encode.h"
#include "router/conv.h"
#include "router/engine.h"
#include "router/http.h"
#include "router/resp_store.h"
#include "router/router.h"
#include "tokenizer/tokenizer.h"

/* ---- chat format (chat.c, conv.c, chat_encode.c, dsml.c) ---------------- */

/* Ids of the DeepSeek-V4 chat markers, looked up once in the tokenizer. */
typedef td_chat_markers td_router_chat_ids;

td_err td_router_chat_ids_load(const td_tok *tok, td_router_chat_ids *ids,
                               char *err, size_t errlen);

/* Renders an OpenAI `messages` array (no tools, non-thinking mode) as V4
 * prompt ids (spec §6.2). Message text is encoded as plain text, so it
 * cannot smuggle in marker tokens. Appends to out. On TD_EINVAL err names
 * the offending field (e.g. "messages[1].content"). */
td_err td_router_chat_render(const td_tok *tok, const td_router_chat_ids *ids,
                             const json_t *messages, td_tok_ids *out,
                             char *err, size_t errlen);

/* ---- stop strings (stopstr.c) ------------------------------------------- */

/* Finds stop strings in text that arrives in pieces. Text that could be the
 * start of a stop string is held back until it is known not to be one, so
 * what is emitted never has to be taken back. */
typedef struct {
    char **stops;               /* copies, NUL-terminated (to name a match) */
    size_t *lens;
    int n;
    char *held;                 /* text not emitted yet */
    size_t held_len, held_cap;
    size_t consumed;            /* emitted by the last call; dropped next call */
    bool matched;
} td_router_stop;

td_err td_router_stop_init(td_router_stop *s, char *const *stops, const size_t *lens, int n);
void td_router_stop_free(td_router_stop *s);
/* Adds text (final: no more will come, emit everything). *emit and *emit_len give
 * the text that may be sent now, valid until the next call. Returns true if a
 * stop string was found: *emit is then the text before it, and the matcher
 * emits nothing more. */
bool td_router_stop_feed(td_router_stop *s, const char *text, size_t len, bool final,
                         const char **emit, size_t *emit_len);

/* ---- request parameters (api_parse.c) ------------------------------------ */

typedef struct {
    bool chat;
    td_tok_ids prompt;
    int64_t max_tokens;          /* clamped to the context */
    td_router_sampling sampling;
    char **stops;
    size_t *stop_lens;
    int nstops;
    bool stream;
    bool include_usage;
    /* chat: the prompt ends with <think> (reasoning comes first); tools are
     * declared in it (parse tool-call blocks); more than one call allowed. */
    bool thinking;
    bool tools;
    bool parallel_tool_calls;
    /* what the answer must be: a tool call (tool_choice required/named) or
     * JSON (response_format json_object / json_schema; "" = any object) */
    td_conv_constraint cons;
    char *json_schema;
} td_router_params;

/* An API error: HTTP status, message, the offending parameter (or NULL) and
 * an OpenAI error code (or NULL). */
typedef struct {
    int status;
    char message[512];
    const char *param;
    const char *code;
} td_router_apierr;

/* Parses and validates a completions (chat=false) or chat completions body
 * and tokenises the prompt. Returns 0, or the HTTP status with e filled. */
int td_router_params_parse(td_router *rt, bool chat, const char *body, size_t len,
                           td_router_params *p, td_router_apierr *e);
void td_router_params_free(td_router_params *p);

/* ---- the router (router.c) ----------------------------------------------- */

typedef struct td_gen td_gen;

struct td_router {
    uv_loop_t *loop;
    td_http_server *http;
    td_router_engine engine;
    const td_tok *tok;
    td_router_chat_ids chat_ids;
    char *model_id;
    char *model_id_json;         /* model_id as a JSON string, quotes included */
    unsigned grace_ms;
    long long started;           /* unix time, for /v1/models "created" */
    uint64_t next_id;            /* response ids */
    uint64_t id_salt;
    td_gen *gens;                /* generations in flight, every API (gen.c) */
    td_resp_store *responses;    /* finished Responses answers (resp_store.h) */
    bool shutting_down;
    uv_timer_t timer;            /* grace, then hard close */
    int timer_stage;
    void (*on_shutdown)(void *arg);
    void *shutdown_arg;
};

/* Sends an OpenAI-shaped error and ends the exchange. */
void td_router_send_error(td_http_req *req, const td_router_apierr *e);
void td_router_error(td_http_req *req, int status, const char *param,
                     const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Sends a JSON value (takes the reference) and ends the exchange. */
void td_router_send_json(td_http_req *req, int status, json_t *v);

/* ---- generations (gen.c, api_gen.c) ---------------------------------------- */

/* GET (get) or DELETE of a path below /v1/responses/ (api_responses_gen.c):
 * {id}, or GET {id}/input_items; any other is a 404. */
void td_router_stored_response(td_router *rt, td_http_req *req, const char *path, bool get);

/* Handles POST /v1/completions and /v1/chat/completions (api_gen.c). */
void td_router_generate(td_router *rt, td_http_req *req, bool chat);
/* Cancels every generation in flight, of every API (shutdown; gen.c). */
void td_router_cancel_all(td_router *rt);

/* Appends s[0..n) as a JSON string body (no quotes) to buf; s must be valid
 * UTF-8. Returns -1 on allocation failure. */
int td_router_json_escape(td_tok_bytes *buf, const char *s, size_t n);

#endif
