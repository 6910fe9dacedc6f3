/* td_kv_stats as Prometheus families (common/prom.h), for a worker's
 * /metrics. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "kvstore/kvstore.h"

/* One row per exported field: name, help, and whether it is a gauge. */
static const struct {
    const char *name, *help;
    int gauge;
    size_t off;
} rows[] = {
#define ROW(name, gauge, field, help) {"tandem_kvstore_" name, help, gauge, offsetof(td_kv_stats, field)}
    ROW("bytes_used", 1, bytes_used, "Disk bytes held by stored blocks."),
    ROW("bytes_free", 1, bytes_free, "Capacity left for blocks."),
    ROW("entries", 1, entries, "Stored values (key, section)."),
    ROW("pinned_entries", 1, pinned, "Entries that are never evicted."),
    ROW("hit_blocks_total", 0, hit_blocks, "Prefix lookups: token blocks found stored."),
    ROW("miss_blocks_total", 0, miss_blocks, "Prefix lookups: token blocks not stored."),
    ROW("hit_tokens_total", 0, hit_tokens, "Prefix lookups: tokens found stored."),
    ROW("miss_tokens_total", 0, miss_tokens, "Prefix lookups: tokens not stored."),
    ROW("puts_total", 0, puts, "Values stored."),
    ROW("put_bytes_total", 0, put_bytes, "Bytes of values stored."),
    ROW("gets_total", 0, gets, "Values read and verified."),
    ROW("get_bytes_total", 0, get_bytes, "Bytes of values read and verified."),
    ROW("evictions_total", 0, evictions, "Entries evicted to make room."),
    ROW("evicted_tokens_total", 0, evicted_tokens,
        "Prefix tokens of the evicted entries: prefill work given up to make room."),
    ROW("evicted_bytes_total", 0, evicted_bytes, "Bytes of the evicted entries."),
    ROW("evicted_unread_total", 0, evicted_unread,
        "Evicted entries that were never read or found by a lookup since put."),
    ROW("checksum_failures_total", 0, checksum_failures,
        "Blocks that failed their checksum or header checks (entry dropped)."),
#undef ROW
};

void td_kv_metrics(const td_kv_stats *s, td_prom_buf *b)
{
    /* Which policy chose those victims: 1 for the one in force. */
    td_prom_family(b, "tandem_kvstore_eviction_policy", "gauge",
                   "Eviction policy in force (1): lru or cost (GreedyDual-Size-Frequency).");
    td_prom_put(b, "tandem_kvstore_eviction_policy{policy=\"lru\"} %d\n",
                s->eviction == TD_KV_EVICT_LRU);
    td_prom_put(b, "tandem_kvstore_eviction_policy{policy=\"cost\"} %d\n",
                s->eviction == TD_KV_EVICT_COST);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        uint64_t v;
        memcpy(&v, (const char *)s + rows[i].off, sizeof(v));
        if (rows[i].gauge)
            td_prom_gauge(b, rows[i].name, rows[i].help, (double)v);
        else
            td_prom_counter(b, rows[i].name, rows[i].help, v);
    }
}
