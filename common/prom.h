/* Prometheus text exposition (format 0.0.4), written by hand (there is no
 * packaged C client): `# HELP` and `# TYPE` before each family, counters
 * end in `_total`, units in the name, histograms as cumulative
 * `_bucket{le=...}` lines ending with `+Inf`, then `_sum` and `_count`.
 * Used by the router's and the workers' /metrics. Nothing here locks: each
 * owner updates and renders on one thread. */
#ifndef TD_COMMON_PROM_H
#define TD_COMMON_PROM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Log-spaced latency bounds, 1 / 2.5 / 5 per decade, from half a
 * millisecond (a fast decode step) to four minutes (a long prefill of a
 * long answer): one set for every latency histogram, so they compare bucket
 * by bucket. */
#define TD_PROM_NBOUNDS 18
extern const double td_prom_latency_bounds[TD_PROM_NBOUNDS];

typedef struct {
    uint64_t counts[TD_PROM_NBOUNDS + 1];  /* per bucket; the last is (max, +Inf) */
    uint64_t count;
    double sum;
} td_prom_hist;

/* O(1) in practice: finds the bucket among the fixed bounds. */
void td_prom_observe(td_prom_hist *h, double seconds);

/* A growing text buffer; `oom` sticks once an allocation failed. */
typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} td_prom_buf;

void td_prom_put(td_prom_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void td_prom_family(td_prom_buf *b, const char *name, const char *type, const char *help);
void td_prom_counter(td_prom_buf *b, const char *name, const char *help, uint64_t v);
void td_prom_gauge(td_prom_buf *b, const char *name, const char *help, double v);
void td_prom_histogram(td_prom_buf *b, const char *name, const char *help,
                       const td_prom_hist *h);

#endif
