/* td_kv_stats in the Prometheus text format, for a worker's /metrics. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

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

/* One row per exported field: name (after tandem_kvstore_), type, help. */
static const struct {
    const char *name, *type, *help;
    size_t off;
} rows[] = {
#define ROW(name, type, field, help) {name, type, help, offsetof(td_kv_stats, field)}
    ROW("bytes_used", "gauge", bytes_used, "Disk bytes held by stored blocks."),
    ROW("bytes_free", "gauge", bytes_free, "Capacity left for blocks."),
    ROW("entries", "gauge", entries, "Stored values (key, section)."),
    ROW("pinned_entries", "gauge", pinned, "Entries that are never evicted."),
    ROW("hit_blocks_total", "counter", hit_blocks, "Prefix lookups: token blocks found stored."),
    ROW("miss_blocks_total", "counter", miss_blocks, "Prefix lookups: token blocks not stored."),
    ROW("hit_tokens_total", "counter", hit_tokens, "Prefix lookups: tokens found stored."),
    ROW("miss_tokens_total", "counter", miss_tokens, "Prefix lookups: tokens not stored."),
    ROW("puts_total", "counter", puts, "Values stored."),
    ROW("put_bytes_total", "counter", put_bytes, "Bytes of values stored."),
    ROW("gets_total", "counter", gets, "Values read and verified."),
    ROW("get_bytes_total", "counter", get_bytes, "Bytes of values read and verified."),
    ROW("evictions_total", "counter", evictions, "Entries evicted to make room."),
    ROW("checksum_failures_total", "counter", checksum_failures,
        "Blocks that failed their checksum or header checks (entry dropped)."),
#undef ROW
};

size_t td_kv_metrics_text(const td_kv_stats *s, char *buf, size_t cap)
{
    out o = {buf, cap, 0};
    if (cap)
        buf[0] = '\0';
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        uint64_t v;
        memcpy(&v, (const char *)s + rows[i].off, sizeof(v));
        put(&o, "# HELP tandem_kvstore_%s %s\n# TYPE tandem_kvstore_%s %s\ntandem_kvstore_%s %llu\n",
            rows[i].name, rows[i].help, rows[i].name, rows[i].type, rows[i].name,
            (unsigned long long)v);
    }
    return o.len;
}
