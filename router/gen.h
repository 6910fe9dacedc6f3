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

#include <jansson.h>
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
    size_t cached_tokens;        /* prompt tokens a prefix cache served (usage) */
    bool stream;
    bool oom;
};

/* ---- encoder plumbing (gen_enc.c) ------------------------------------------ */

/* Appending to enc->out: a failure sets enc->oom (and loses those bytes). */
void td_gen_put(td_gen_enc *enc, const char *s, size_t n);
void td_gen_puts(td_gen_enc *enc, const char *s);
/* s[0..n) as a quoted JSON string (td_conv_json_string). */
void td_gen_put_jstring(td_gen_enc *enc, const char *s, size_t n);
/* v (taken; NULL counts as a failure) as compact JSON text. */
void td_gen_put_json(td_gen_enc *enc, json_t *v);
/* One server-sent event is td_gen_sse_begin, its data line, td_gen_sse_end:
 * `event: NAME\ndata: ` ... `\n\n`. */
void td_gen_sse_begin(td_gen_enc *enc, const char *name);
void td_gen_sse_end(td_gen_enc *enc);
/* A whole event whose data is v (taken) as compact JSON; nothing when v is
 * NULL or does not dump (oom set). */
void td_gen_sse_json(td_gen_enc *enc, const char *name, json_t *v);

/* The parts of an answer as the Anthropic and Responses APIs shape it
 * (content blocks, output items): reasoning opens a reasoning part, content
 * a text part, a tool call a call part; a change of kind closes the part in
 * progress, and a part opens only when it has something in it. */
typedef enum {
    TD_GEN_PART_NONE,
    TD_GEN_PART_REASONING,
    TD_GEN_PART_TEXT,
    TD_GEN_PART_CALL,
} td_gen_part;

typedef struct {
    td_gen_part open;            /* the part in progress */
    int open_call;               /* the parser's call index of an open call part */
    int calls_ok, calls_aborted; /* call parts closed complete / broken */
} td_gen_parts;

/* What the encoder does when a part opens, grows and closes; open is set
 * while these run. close's keep is false for a call that broke. */
typedef struct {
    void (*open)(td_gen_enc *enc, td_gen_part kind, const char *name, size_t name_len);
    void (*delta)(td_gen_enc *enc, const char *s, size_t n);
    void (*close)(td_gen_enc *enc, bool keep);
} td_gen_parts_ops;

void td_gen_parts_init(td_gen_parts *p);
/* One event of the output parser; with parallel false only call 0 counts. */
void td_gen_parts_event(td_gen_parts *p, const td_gen_parts_ops *ops, td_gen_enc *enc,
                        bool parallel, const td_dsml_event *ev);
/* Closes the part in progress at the end of the answer; a call part still
 * open (the output ended inside it) is a broken call. */
void td_gen_parts_finish(td_gen_parts *p, const td_gen_parts_ops *ops, td_gen_enc *enc);

/* ---- the lifecycle (gen.c) ---------------------------------------------------- */

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
