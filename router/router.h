/* td_router: the OpenAI-compatible API over HTTP, in front of an engine.
 *
 * Endpoints: GET /health, GET /ready, GET /metrics, GET /v1/models,
 * POST /v1/completions, POST /v1/chat/completions (docs/serve.md). Runs on one libuv loop; the
 * engine's callbacks arrive on the same loop (router/engine.h).
 */
#ifndef TD_ROUTER_ROUTER_H
#define TD_ROUTER_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "common/err.h"
#include "router/engine.h"
#include "tokenizer/tokenizer.h"

typedef struct td_router td_router;

typedef struct {
    const char *host;            /* NULL = 127.0.0.1 */
    int port;                    /* 0 = any free port */
    const char *model_id;        /* the id /v1/models lists and requests name */
    const td_tok *tok;           /* borrowed; must outlive the router */
    td_router_engine engine;     /* borrowed ctx; must outlive the router */
    size_t max_body;             /* request body limit; 0 = 1 MiB */
    /* Per-connection write queue above which a stream's engine request is
     * paused until the client catches up; 0 = 64 KiB. */
    size_t write_buffer;
    /* On shutdown, requests in flight may run this long before they are
     * cancelled. 0 = 10 s. */
    unsigned shutdown_grace_ms;
    /* Generation requests get 429 while this many already wait for the
     * engine's batch (engine load()). 0 = 256. */
    int64_t max_waiting;
    /* API keys: a file with one key per line and/or a comma-separated list
     * (tandem serve passes TANDEM_API_KEYS). Both NULL: no authentication.
     * With keys, every path except /health and /ready needs one
     * (router/auth.h). */
    const char *api_key_file;
    const char *api_keys;
    /* Finished Responses API answers kept for GET /v1/responses/{id} and
     * previous_response_id, least recently used out: 0 = 64 MiB.
     * responses_store_off keeps none (store: true is then ignored). */
    size_t responses_store_mib;
    bool responses_store_off;
} td_router_opts;

/* Binds and starts serving. On error nothing is left open. */
td_err td_router_create(td_router **out, uv_loop_t *loop, const td_router_opts *opts,
                        char *err, size_t errlen);
int td_router_port(const td_router *r);
/* Graceful shutdown: stop accepting; idle connections close now; requests in
 * flight finish, or are cancelled once the grace time is over; connections
 * that still do not close (a client that stopped reading) are closed two
 * seconds later. cb runs on the loop when no connection is left. Calling it
 * again cancels what is in flight at once (a second Ctrl-C). */
void td_router_shutdown(td_router *r, void (*cb)(void *arg), void *arg);
/* Frees the router; only after the shutdown callback ran. */
void td_router_destroy(td_router *r);

#endif
