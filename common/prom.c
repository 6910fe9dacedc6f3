/* See prom.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/prom.h"

const double td_prom_latency_bounds[TD_PROM_NBOUNDS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5,    1,     2.5,    5,     10,   25,    50,   100,  250,
};

void td_prom_observe(td_prom_hist *h, double v)
{
    if (v < 0)
        v = 0;  /* a clock that stepped back: count it as instant */
    size_t i = 0;
    while (i < TD_PROM_NBOUNDS && v > td_prom_latency_bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += v;
}

void td_prom_put(td_prom_buf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        int n = -1;
        if (b->p) {
            va_list ap;
            va_start(ap, fmt);
            n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
            va_end(ap);
            if (n < 0) {
                b->oom = true;
                return;
            }
            if ((size_t)n < b->cap - b->len) {
                b->len += (size_t)n;
                return;
            }
        }
        size_t nc = b->cap * 2 + (n > 0 ? (size_t)n : 0) + 4096;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
}

void td_prom_family(td_prom_buf *b, const char *name, const char *type, const char *help)
{
    td_prom_put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void td_prom_counter(td_prom_buf *b, const char *name, const char *help, uint64_t v)
{
    td_prom_family(b, name, "counter", help);
    td_prom_put(b, "%s %llu\n", name, (unsigned long long)v);
}

void td_prom_gauge(td_prom_buf *b, const char *name, const char *help, double v)
{
    td_prom_family(b, name, "gauge", help);
    td_prom_put(b, "%s %.17g\n", name, v);
}

void td_prom_histogram(td_prom_buf *b, const char *name, const char *help,
                       const td_prom_hist *h)
{
    td_prom_family(b, name, "histogram", help);
    uint64_t cum = 0;
    for (size_t i = 0; i < TD_PROM_NBOUNDS; i++) {
        cum += h->counts[i];
        td_prom_put(b, "%s_bucket{le=\"%g\"} %llu\n", name, td_prom_latency_bounds[i],
                    (unsigned long long)cum);
    }
    cum += h->counts[TD_PROM_NBOUNDS];
    td_prom_put(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    td_prom_put(b, "%s_sum %.17g\n", name, h->sum);
    td_prom_put(b, "%s_count %llu\n", name, (unsigned long long)h->count);
}
