/* td_arena: offsets in one registered region, so each request's KV state
 * lives in memory registered once with UCX (a registration per transfer
 * costs more than the transfer: docs/transfer.md): decode's receive
 * region, prefill's send region. First fit over a list of free extents
 * kept in offset order, neighbours merged on free. One thread only (the
 * receiver in decode, the loop in prefill). */
#ifndef TD_WORKER_ARENA_H
#define TD_WORKER_ARENA_H

#include <stddef.h>

#include "common/err.h"

typedef struct td_arena td_arena;

enum { TD_ARENA_ALIGN = 4096 };

td_err td_arena_create(td_arena **out, size_t size);
void td_arena_destroy(td_arena *a);
/* TD_ENOMEM when no free extent holds size bytes (rounded up to the
 * alignment); *off is then untouched. */
td_err td_arena_alloc(td_arena *a, size_t size, size_t *off);
/* Gives back what td_arena_alloc(size) returned at off. */
void td_arena_free(td_arena *a, size_t off, size_t size);
size_t td_arena_free_bytes(const td_arena *a);

#endif
