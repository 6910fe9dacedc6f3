/* See worker/prefix.h. */
#include <stdlib.h>

#include "proto/blockhash.h"
#include "worker/prefix.h"

void td_wk_kv_event(td_wk *w, bool stored, const int32_t *tokens, size_t n)
{
    size_t k = n / TD_BLOCKHASH_TOKENS;
    uint64_t *chain = k && w ? malloc(k * sizeof *chain) : NULL;
    if (!chain)
        return;
    td_block_chain(tokens, n, TD_BLOCKHASH_TOKENS, chain);
    Tandem__Ctl__KvEvents ev = TANDEM__CTL__KV_EVENTS__INIT;
    ev.worker_id = (char *)td_wk_id(w);
    ev.block_tokens = TD_BLOCKHASH_TOKENS;
    if (stored) {
        ev.stored = chain;
        ev.n_stored = k;
    } else {
        ev.removed = chain;
        ev.n_removed = k;
    }
    td_ctl_msg env = TANDEM__CTL__ENVELOPE__INIT;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_KV_EVENTS;
    env.kv_events = &ev;
    td_wk_send(w, &env);
    free(chain);
}

void td_wk_prom_prefix_cache(td_prom_buf *b, td_engine *e)
{
    td_engine_cache_stats cs = td_engine_cache(e);
    td_prom_counter(b, "tandem_prefix_cache_queries_total",
                    "Prompts looked up in the prefix cache.", cs.lookups);
    td_prom_counter(b, "tandem_prefix_cache_hits_total",
                    "Prompts that extended a cached state.", cs.hits);
    td_prom_counter(b, "tandem_prompt_tokens_cached_total",
                    "Prompt tokens restored from the prefix cache instead of prefilled.",
                    cs.tokens_reused);
    td_prom_counter(b, "tandem_prefix_cache_evictions_total",
                    "States dropped from the prefix cache to make room.", cs.evictions);
    td_prom_gauge(b, "tandem_prefix_cache_bytes", "Bytes of states in the prefix cache.",
                  (double)cs.bytes);
    td_engine_kv_metrics(e, b);  /* the disk tier under it, if any */
}
