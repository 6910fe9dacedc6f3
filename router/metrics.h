/* td_metrics: the router's counters and histograms, rendered as Prometheus
 * text exposition (format 0.0.4) for GET /metrics.
 *
 * Every update happens on the router's loop thread (HTTP callbacks and the
 * engine's callbacks both arrive there), so nothing here locks or uses
 * atomics, and each update is O(1): a histogram observation finds its
 * bucket among a fixed, small set of bounds and bumps one count (buckets are
 * stored per bucket and made cumulative only when rendered).
 *
 * Names follow vLLM's where the meaning is the same (vllm:X becomes
 * tandem_X); docs/serve.md lists them.
 */
#ifndef TD_ROUTER_METRICS_H
#define TD_ROUTER_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct td_metrics td_metrics;

/* The `endpoint` label of tandem_requests_total. Unknown paths share
 * "other", so a scanner cannot grow the label set without bound. */
typedef enum {
    TD_METRICS_EP_CHAT,
    TD_METRICS_EP_COMPLETIONS,
    TD_METRICS_EP_MODELS,
    TD_METRICS_EP_HEALTH,
    TD_METRICS_EP_READY,
    TD_METRICS_EP_METRICS,
    TD_METRICS_EP_MESSAGES,
    TD_METRICS_EP_COUNT_TOKENS,
    TD_METRICS_EP_RESPONSES,
    TD_METRICS_EP_RESPONSE_ID,   /* GET/DELETE /v1/responses/{id}: one label */
    TD_METRICS_EP_INPUT_ITEMS,   /* GET /v1/responses/{id}/input_items */
    TD_METRICS_EP_OTHER,
    TD_METRICS_EP_COUNT
} td_metrics_endpoint;

/* Values read at scrape time rather than counted. */
typedef struct {
    int64_t running;             /* engine: requests in the batch (paused ones too) */
    int64_t waiting;             /* engine: requests queued for the batch */
    int64_t max_waiting;         /* the queue limit (429 beyond it) */
    int64_t connections;         /* open HTTP connections */
    bool ready;                  /* engine ready and not shutting down */
    double start_time;           /* process start, unix seconds */
    int64_t responses_stored;    /* Responses answers kept (resp_store.h) */
    int64_t responses_stored_bytes;
    int64_t responses_evicted;   /* a counter, read from the store */
    /* the engine's families (td_router_engine.metrics), or NULL */
    void (*engine_metrics)(void *ctx, td_prom_buf *b);
    void *engine_ctx;
} td_metrics_gauges;

td_err td_metrics_create(td_metrics **out);
void td_metrics_destroy(td_metrics *m);

td_metrics_endpoint td_metrics_endpoint_of(const char *path);

/* One response status sent (or 499: the client left before the answer). */
void td_metrics_response(td_metrics *m, td_metrics_endpoint ep, int status);
/* A generation request accepted by the engine. */
void td_metrics_prompt(td_metrics *m, size_t n_prompt, size_t n_cached);
/* Prompt tokens of an accepted request that a prefix cache served. */
void td_metrics_cached(td_metrics *m, size_t n_cached);
/* A generated token, `seconds` after the request arrived (first token) or
 * after the previous token. */
void td_metrics_token(td_metrics *m, bool first, double seconds);
/* The engine finished a request `seconds` after it arrived. */
void td_metrics_finish(td_metrics *m, double seconds);

/* Renders every metric; *out is malloc'd (caller frees), *len its length. */
td_err td_metrics_render(const td_metrics *m, const td_metrics_gauges *g, char **out,
                         size_t *len);

#endif
