/* Prometheus text exposition written by hand (there is no packaged C
 * client): `# HELP` and `# TYPE` before each family, counters end in
 * `_total`, units in the name, histograms as cumulative `_bucket{le=...}`
 * lines ending with `+Inf`, then `_sum` and `_count`. `promtool check
 * metrics` accepts the output (tests/integration/serve/ops_test.py). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/metrics.h"

/* Log-spaced bounds, 1 / 2.5 / 5 per decade, from half a millisecond (a
 * fast decode step) to four minutes (a long prefill of a long answer). One
 * set for all three latency histograms so they can be compared bucket by
 * bucket. */
static const double latency_bounds[] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5,    1,     2.5,    5,     10,   25,    50,   100,  250,
};
#define NBOUNDS (sizeof latency_bounds / sizeof latency_bounds[0])

typedef struct {
    uint64_t counts[NBOUNDS + 1];  /* per bucket; the last is (max, +Inf) */
    uint64_t count;
    double sum;
} histogram;

/* Status codes kept per endpoint: 100..599 directly indexed, so counting a
 * response is one increment (the table is 7 x 500 x 8 bytes = 28 KB). */
#define STATUS_MIN 100
#define STATUS_MAX 599

struct td_metrics {
    uint64_t requests[TD_METRICS_EP_COUNT][STATUS_MAX - STATUS_MIN + 1];
    uint64_t prompt_tokens, prompt_tokens_cached, generation_tokens;
    histogram ttft, itl, e2e;
};

static const char *const endpoint_names[TD_METRICS_EP_COUNT] = {
    [TD_METRICS_EP_CHAT] = "/v1/chat/completions",
    [TD_METRICS_EP_COMPLETIONS] = "/v1/completions",
    [TD_METRICS_EP_MODELS] = "/v1/models",
    [TD_METRICS_EP_HEALTH] = "/health",
    [TD_METRICS_EP_READY] = "/ready",
    [TD_METRICS_EP_METRICS] = "/metrics",
    [TD_METRICS_EP_OTHER] = "other",
};

td_err td_metrics_create(td_metrics **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? TD_OK : TD_ENOMEM;
}

void td_metrics_destroy(td_metrics *m) { free(m); }

td_metrics_endpoint td_metrics_endpoint_of(const char *path)
{
    for (int i = 0; i < TD_METRICS_EP_OTHER; i++)
        if (path && !strcmp(path, endpoint_names[i]))
            return (td_metrics_endpoint)i;
    return TD_METRICS_EP_OTHER;
}

/* ---- updates (loop thread, O(1)) ---------------------------------------- */

static void observe(histogram *h, double v)
{
    if (v < 0)
        v = 0;  /* a clock that stepped back: count it as instant */
    size_t i = 0;
    while (i < NBOUNDS && v > latency_bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += v;
}

void td_metrics_response(td_metrics *m, td_metrics_endpoint ep, int status)
{
    if (status < STATUS_MIN || status > STATUS_MAX || ep < 0 || ep >= TD_METRICS_EP_COUNT)
        return;
    m->requests[ep][status - STATUS_MIN]++;
}

void td_metrics_prompt(td_metrics *m, size_t n_prompt, size_t n_cached)
{
    m->prompt_tokens += n_prompt;
    m->prompt_tokens_cached += n_cached;
}

void td_metrics_token(td_metrics *m, bool first, double seconds)
{
    m->generation_tokens++;
    observe(first ? &m->ttft : &m->itl, seconds);
}

void td_metrics_finish(td_metrics *m, double seconds) { observe(&m->e2e, seconds); }

/* ---- rendering ---------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t nc = b->cap * 2 + (size_t)n;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
}

static void family(sbuf *b, const char *name, const char *type, const char *help)
{
    put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(sbuf *b, const char *name, const char *help, uint64_t v)
{
    family(b, name, "counter", help);
    put(b, "%s %llu\n", name, (unsigned long long)v);
}

static void gauge(sbuf *b, const char *name, const char *help, double v)
{
    family(b, name, "gauge", help);
    put(b, "%s %.17g\n", name, v);
}

static void hist(sbuf *b, const char *name, const char *help, const histogram *h)
{
    family(b, name, "histogram", help);
    uint64_t cum = 0;
    for (size_t i = 0; i < NBOUNDS; i++) {
        cum += h->counts[i];
        put(b, "%s_bucket{le=\"%g\"} %llu\n", name, latency_bounds[i], (unsigned long long)cum);
    }
    cum += h->counts[NBOUNDS];
    put(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    put(b, "%s_sum %.17g\n", name, h->sum);
    put(b, "%s_count %llu\n", name, (unsigned long long)h->count);
}

td_err td_metrics_render(const td_metrics *m, const td_metrics_gauges *g, char **out,
                         size_t *len)
{
    sbuf b = {.cap = 8192};
    if (!(b.p = malloc(b.cap)))
        return TD_ENOMEM;
    b.p[0] = '\0';

    family(&b, "tandem_requests_total", "counter",
           "HTTP responses by endpoint and status (499: the client left before the answer).");
    for (int ep = 0; ep < TD_METRICS_EP_COUNT; ep++)
        for (int s = STATUS_MIN; s <= STATUS_MAX; s++) {
            uint64_t v = m->requests[ep][s - STATUS_MIN];
            if (v)
                put(&b, "tandem_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n",
                    endpoint_names[ep], s, (unsigned long long)v);
        }
    counter(&b, "tandem_prompt_tokens_total", "Prompt tokens of requests the engine accepted.",
            m->prompt_tokens);
    counter(&b, "tandem_prompt_tokens_cached_total",
            "Prompt tokens served from a prefix cache (none yet: there is no prefix cache).",
            m->prompt_tokens_cached);
    counter(&b, "tandem_generation_tokens_total", "Tokens generated by the engine.",
            m->generation_tokens);
    hist(&b, "tandem_time_to_first_token_seconds",
         "Time from a request's arrival to its first generated token.", &m->ttft);
    hist(&b, "tandem_inter_token_latency_seconds",
         "Time between consecutive generated tokens of a request.", &m->itl);
    hist(&b, "tandem_e2e_request_latency_seconds",
         "Time from a request's arrival until the engine finished it.", &m->e2e);
    gauge(&b, "tandem_num_requests_running",
          "Requests in the engine's batch (paused slow readers included).", (double)g->running);
    gauge(&b, "tandem_num_requests_waiting",
          "Requests queued for the engine's batch (the queue depth).", (double)g->waiting);
    gauge(&b, "tandem_num_requests_waiting_max",
          "Queue depth beyond which requests get 429 (--max-waiting).", (double)g->max_waiting);
    gauge(&b, "tandem_http_connections", "Open HTTP connections.", (double)g->connections);
    gauge(&b, "tandem_ready", "1 when the engine takes requests, else 0.", g->ready ? 1 : 0);
    gauge(&b, "tandem_process_start_time_seconds", "Start time of the process, unix seconds.",
          g->start_time);
    if (b.oom) {
        free(b.p);
        return TD_ENOMEM;
    }
    *out = b.p;
    *len = b.len;
    return TD_OK;
}
