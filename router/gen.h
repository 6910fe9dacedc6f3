/* td_gen: one generation request, from the decoded request to the last byte
 * of the answer, for every API the router speaks (OpenAI chat/completions,
 * Anthropic Messages, OpenAI Responses).
 *
 * The lifecycle is the same for all of them: submit to the engine; decode
 * tokens to text (UTF-8 safe); hold text back while it may be the start of
 * a stop string; split it into reasoning, content and tool calls (the DSML
 * parser, router/dsml.h); answer as one JSON body or as server-sent events;
 * pause the engine while the connection's write queue is congested and
 * resume it on drain; end on a stop string, the engine's finish, an error,
 * a client that leaves, or the shutdown cancel. What differs per API is the
 * wire format only: an encoder (td_gen_enc and its td_gen_enc_ops table)
 * turns the parser's events into bytes.
 *
 * A td_gen lives until both the engine has finished it (on_finish) and the
 * HTTP exchange has ended; either may come first (a stop string ends the
 * answer before the engine hears the cancel; a client that leaves ends the
 * exchange before the engine stops).
 */
#ifndef TD_ROUTER_GEN_H
#define TD_ROUTER_GEN_H

#include <stdbool.h>
#include <stddef.h>

#include "router/dsml.h"
#include "router/engine.h"
#include "router/http.h"
#include "tokenizer/tokenizer.h"

typedef struct td_router td_router;
typedef struct td_gen_enc td_gen_enc;

/* Why an answer ended normally. */
typedef enum {
    TD_GEN_END_STOP,             /* the model's end-of-turn token */
    TD_GEN_END_LENGTH,           /* max tokens or the context */
    TD_GEN_END_STOP_SEQ,         /* a stop string matched */
} td_gen_end;

/* What one API's encoder does. Every function may leave bytes in enc->out:
 * in a stream they are sent right after the call; otherwise out holds the
 * whole JSON body after finish. Allocation failures set enc->oom. */
typedef struct {
    /* stream: the events that open the answer (may be NULL: none) */
    void (*start)(td_gen_enc *enc);
    /* one event of the output parser: reasoning, content or a tool call
     * (text valid UTF-8); plain completions get CONTENT events only */
    void (*event)(td_gen_enc *enc, const td_dsml_event *ev);
    /* ends the answer; stop_seq is the matched stop string (END_STOP_SEQ) */
    void (*finish)(td_gen_enc *enc, td_gen_end why, const char *stop_seq,
                   size_t output_tokens);
    /* stream: an error event (the status line is long gone) */
    void (*error)(td_gen_enc *enc, int status, const char *code, const char *msg);
    /* an error response in the API's shape; ends the exchange. code is an
     * OpenAI error code or NULL; APIs without codes ignore it. */
    void (*send_error)(td_http_req *req, int status, const char *code, const char *msg);
    /* frees what the encoder holds (not enc itself) */
    void (*fini)(td_gen_enc *enc);
    /* the message of a request the shutdown cancelled */
    const char *cancelled;
} td_gen_enc_ops;

/* The part every encoder starts with (the API's encoder struct embeds it
 * first, so a td_gen_enc * is a pointer to the whole encoder). */
struct td_gen_enc {
    const td_gen_enc_ops *ops;
    td_tok_bytes out;            /* bytes produced and not yet sent */
    bool stream;
    bool oom;
};

/* Answers 503 in the API's shape and returns false when no generation can
 * start now (shutting down, or the engine is still loading). */
bool td_gen_admit(td_router *rt, td_http_req *req, const td_gen_enc_ops *ops);

typedef struct {
    /* Taken: malloc()ed, the encoder struct around it included; freed with
     * ops->fini and free() when the generation ends (or start fails). */
    td_gen_enc *enc;
    const char *log_id;          /* names the request in log lines */
    td_router_gen_req run;       /* what the engine runs (borrowed for the call) */
    char *const *stops;          /* stop strings (copied), or none */
    const size_t *stop_lens;
    int nstops;
    /* the output parser's options; NULL: plain text (completions) */
    const td_dsml_opts *dsml;
} td_gen_opts;

/* Submits the request to the engine and answers req from then on. On a
 * failure the error response is sent; either way enc is taken. */
void td_gen_start(td_router *rt, td_http_req *req, const td_gen_opts *o);

#endif
