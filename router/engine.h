/* The engine interface: how the router asks for tokens without knowing what
 * produces them.
 *
 * The router never links the model. An engine is a table of functions and
 * an opaque ctx: engine/ implements it in-process (one engine thread doing
 * continuous batching over the model); remote prefill/decode workers will
 * implement the same table over nng/UCX.
 *
 * Contract (every implementation keeps it):
 * - All functions are called on the router's loop thread; all callbacks
 *   arrive on that same thread, never from inside one of these calls.
 * - submit copies what it needs from the request. On TD_OK exactly one
 *   on_finish follows, after every on_token of that request; after on_finish
 *   nothing refers to cb.arg again. On an error no callback is made.
 * - Tokens arrive in order. A token in stop_ids ends the request with
 *   TD_ROUTER_FINISH_STOP and is not reported through on_token.
 * - cancel and pause take the id that submit returned and do nothing for an
 *   id that has finished (so they are always safe to call). A cancelled
 *   request may still report tokens already on their way, then finishes
 *   with TD_ROUTER_FINISH_CANCELLED.
 * - pause(id, true) asks the engine to stop generating for the request (the
 *   client reads slowly); at most the tokens already on their way arrive
 *   until pause(id, false). It keeps the request's state.
 * - Text is the router's concern: stop strings are matched by the router on
 *   decoded text, which then cancels the request.
 */
#ifndef TD_ROUTER_ENGINE_H
#define TD_ROUTER_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/prom.h"

typedef struct {
    float temperature;   /* 0 = greedy */
    float top_p;         /* 1 = off */
    int top_k;           /* 0 = off */
    uint64_t seed;
} td_router_sampling;

/* Grammar-constrained output (constrain/constrain.h): the engine masks
 * every sampled token so the answer is what the grammar says. Strings are
 * borrowed for the call and copied. */
typedef struct {
    /* JSON output (response_format): a JSON Schema text; "" = any JSON
     * object; NULL = no JSON constraint. */
    const char *json_schema;
    /* A tool call (tool_choice required or named): the OpenAI tools array
     * text; NULL = none. */
    const char *tools;
    const char *force_name;     /* with tools: only this function; NULL = any */
    bool single;                /* with tools: one call (parallel_tool_calls false) */
    bool thinking;              /* the prompt ends with <think>: reasoning first */
} td_router_constraint;

/* An engine's own copy of a td_router_constraint, kept with a request
 * (the engine, the cluster's request, a decode worker's job), normalised:
 * tools win over a JSON schema, a forced name goes only with tools. */
typedef struct {
    char *json_schema, *tools, *force_name;   /* NULL: none (json_schema "" = any JSON) */
    bool single, thinking;
} td_router_constraint_copy;

/* TD_ENOMEM leaves *c empty (nothing to free). */
static inline td_err td_router_constraint_dup(td_router_constraint_copy *c,
                                              const td_router_constraint *k)
{
    *c = (td_router_constraint_copy){.single = k->single, .thinking = k->thinking};
    if ((k->tools && !(c->tools = strdup(k->tools))) ||
        (k->tools && k->force_name && !(c->force_name = strdup(k->force_name))) ||
        (!k->tools && k->json_schema && !(c->json_schema = strdup(k->json_schema)))) {
        free(c->tools);
        free(c->force_name);
        *c = (td_router_constraint_copy){0};
        return TD_ENOMEM;
    }
    return TD_OK;
}

static inline void td_router_constraint_free(td_router_constraint_copy *c)
{
    free(c->json_schema);
    free(c->tools);
    free(c->force_name);
    *c = (td_router_constraint_copy){0};
}

/* The copy as a request's constraint (borrowing its strings). */
static inline td_router_constraint td_router_constraint_of(const td_router_constraint_copy *c)
{
    return (td_router_constraint){.json_schema = c->json_schema, .tools = c->tools,
                                  .force_name = c->force_name, .single = c->single,
                                  .thinking = c->thinking};
}

typedef struct {
    const int32_t *prompt;      /* borrowed for the call; copied */
    size_t n_prompt;            /* >= 1 */
    int64_t max_tokens;         /* >= 1; prompt + max_tokens <= context_len */
    td_router_sampling sampling;
    const int32_t *stop_ids;    /* borrowed for the call; copied */
    size_t n_stop_ids;
    /* The client's session (an agent conversation) from headers such as
     * X-Session-ID (docs/serve.md); NULL = none. Borrowed for the call;
     * copied. Requests of one session share a growing prefix, so a
     * scheduler can keep them where that prefix's KV state lives; an
     * engine may ignore it. */
    const char *session_id;
    td_router_constraint constraint;
} td_router_gen_req;

typedef enum {
    TD_ROUTER_FINISH_STOP,       /* a stop id was generated */
    TD_ROUTER_FINISH_LENGTH,     /* max_tokens reached */
    TD_ROUTER_FINISH_CANCELLED,  /* cancel() or the engine shutting down */
    TD_ROUTER_FINISH_ERROR,      /* the engine failed; err says how */
} td_router_finish;

typedef struct {
    void (*on_token)(void *arg, int32_t token);
    void (*on_finish)(void *arg, td_router_finish why, td_err err);
    /* Optional: how many prompt tokens came from a prefix cache instead of
     * being prefilled (usage's cached tokens). At most once, before the
     * first on_token; not called when none did. */
    void (*on_cached)(void *arg, size_t n_cached);
    void *arg;
} td_router_gen_cb;

/* How busy the engine is: a snapshot, for admission control and metrics. */
typedef struct {
    int64_t running;             /* requests in the batch (paused ones too) */
    int64_t waiting;             /* requests submitted, not yet in the batch */
} td_router_load;

typedef struct {
    void *ctx;
    /* Whether the engine can take requests now (model loaded, not stopping). */
    bool (*ready)(void *ctx);
    /* Most tokens a sequence may hold (prompt + generated); 0 if not ready. */
    int64_t (*context_len)(void *ctx);
    td_err (*submit)(void *ctx, const td_router_gen_req *req,
                     const td_router_gen_cb *cb, uint64_t *id);
    void (*cancel)(void *ctx, uint64_t id);
    void (*pause)(void *ctx, uint64_t id, bool paused);
    /* Fills *out; may be NULL (then the router applies no queue limit and
     * reports zeros). A request counts as waiting from the return of its
     * submit until the engine admits or finishes it. */
    void (*load)(void *ctx, td_router_load *out);
    /* Optional: the engine's own /metrics families (common/prom.h),
     * appended to the router's. Loop thread. */
    void (*metrics)(void *ctx, td_prom_buf *b);
} td_router_engine;

#endif
