/* A worker's prefix cache as the router and the operator see it: the
 * KvEvents that tell the router which prompts' states this worker holds
 * (so the next turn of a conversation comes back here), and the cache's
 * /metrics families. Prefill and decode workers both keep one. */
#ifndef TD_WORKER_PREFIX_H
#define TD_WORKER_PREFIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/prom.h"
#include "engine/engine.h"
#include "worker/worker.h"

/* The engine's prefix cache stored (or dropped) the state of tokens[0..n):
 * sends it to the router as a block-hash chain (proto/blockhash.h). A
 * td_engine_opts.on_cache callback can forward here. w NULL: nothing. */
void td_wk_kv_event(td_wk *w, bool stored, const int32_t *tokens, size_t n);

/* The engine's families (td_engine_metrics: prefix cache and its disk
 * tier, queue time, batch) and tandem_prompt_tokens_cached_total. */
void td_wk_prom_engine(td_prom_buf *b, td_engine *e);

#endif
