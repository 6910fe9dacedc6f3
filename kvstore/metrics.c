/* td_kv_stats in the Prometheus text format, for a worker's /metrics. */
#include <stdarg.h>
#include <stdio.h>

#include "kvstore/kvstore.h"

typedef struct {
    char *buf;
    size_t cap, len;
} out;

static void put(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->len < o->cap ? o->buf + o->len : NULL, o->len < o->cap ? o->cap - o->len : 0,
                      fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n;
}

static void metric(out *o, const char *name, const char *type, const char *help, uint64_t v)
{
    put(o, "# HELP tandem_kvstore_%s %s\n# TYPE tandem_kvstore_%s %s\ntandem_kvstore_%s %llu\n",
        name, help, name, type, name, (unsigned long long)v);
}

size_t td_kv_metrics_text(const td_kv_stats *s, char *buf, size_t cap)
{
    out o = {buf, cap, 0};
    if (cap)
        buf[0] = '\0';
    metric(&o, "bytes_used", "gauge", "Disk bytes held by stored blocks.", s->bytes_used);
    metric(&o, "bytes_free", "gauge", "Capacity left for blocks.", s->bytes_free);
    metric(&o, "entries", "gauge", "Stored values (key, section).", s->entries);
    metric(&o, "pinned_entries", "gauge", "Entries that are never evicted.", s->pinned);
    metric(&o, "hit_blocks_total", "counter", "Prefix lookups: token blocks found stored.", s->hit_blocks);
    metric(&o, "miss_blocks_total", "counter", "Prefix lookups: token blocks not stored.", s->miss_blocks);
    metric(&o, "hit_tokens_total", "counter", "Prefix lookups: tokens found stored.", s->hit_tokens);
    metric(&o, "miss_tokens_total", "counter", "Prefix lookups: tokens not stored.", s->miss_tokens);
    metric(&o, "puts_total", "counter", "Values stored.", s->puts);
    metric(&o, "put_bytes_total", "counter", "Bytes of values stored.", s->put_bytes);
    metric(&o, "gets_total", "counter", "Values read and verified.", s->gets);
    metric(&o, "get_bytes_total", "counter", "Bytes of values read and verified.", s->get_bytes);
    metric(&o, "evictions_total", "counter", "Entries evicted to make room.", s->evictions);
    metric(&o, "checksum_failures_total", "counter",
           "Blocks that failed their checksum or header checks (entry dropped).", s->checksum_failures);
    return o.len;
}
