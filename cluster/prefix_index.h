/* td_pidx: which token prefixes one worker holds, from its KvEvents: a
 * multiset of block hashes (proto/blockhash.h). A prefix is a chain
 * h[0..k); a worker that stored it holds every h[i], so "how many leading
 * blocks of this prompt does the worker hold" is the first miss along the
 * prompt's chain. Counts let two stored prefixes share blocks: dropping one
 * keeps the blocks the other still names. */
#ifndef TD_CLUSTER_PREFIX_INDEX_H
#define TD_CLUSTER_PREFIX_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct td_pidx td_pidx;

td_err td_pidx_create(td_pidx **out);
void td_pidx_destroy(td_pidx *x);
/* One prefix stored / dropped. TD_ENOMEM leaves x as it was. */
td_err td_pidx_add(td_pidx *x, const uint64_t *chain, size_t n);
void td_pidx_remove(td_pidx *x, const uint64_t *chain, size_t n);
/* Leading blocks of chain[0..n) held. */
size_t td_pidx_match(const td_pidx *x, const uint64_t *chain, size_t n);
size_t td_pidx_blocks(const td_pidx *x);

#endif
