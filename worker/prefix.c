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
    td_wk_send_kv(w, stored, chain, k);
    free(chain);
}

void td_wk_prom_engine(td_prom_buf *b, td_engine *e)
{
    td_engine_metrics(e, b);
    /* the router counts these in-process; a worker counts its own */
    td_prom_counter(b, "tandem_prompt_tokens_cached_total",
                    "Prompt tokens restored from the prefix cache instead of prefilled.",
                    td_engine_cache(e).tokens_reused);
}
