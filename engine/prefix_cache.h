/* td_pcache: recent sequence states, so a prompt that extends one (an
 * agent's next turn: the whole conversation so far plus a little) is
 * prefilled only past the longest stored prefix.
 *
 * An entry is the serialised state (model/state.h: the same bytes that move
 * prefill -> decode and that the kvstore writes) of a sequence that has
 * processed exactly its token list. V4's state after n tokens depends on
 * those n tokens only, and the forward pass gives the same bits however a
 * prompt is cut into chunks (docs/numerics.md), so continuing from an entry
 * is bit-identical to prefilling from scratch.
 *
 * Engine thread only. Bounded by a byte budget; least recently used first
 * out. With a spill function set (engine/spill.h, the disk tier), an entry
 * that leaves for room, or that has not been used for a while, is handed to
 * it before its memory is freed. */
#ifndef TD_ENGINE_PREFIX_CACHE_H
#define TD_ENGINE_PREFIX_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "model/model.h"

typedef struct td_pcache td_pcache;

typedef struct {
    uint64_t lookups, hits;      /* restores asked for, and found */
    uint64_t tokens_reused;      /* prompt tokens not prefilled thanks to hits */
    uint64_t bytes, entries;     /* held now */
    uint64_t evictions;
} td_pcache_stats;

/* Told of every entry stored and every entry dropped (evicted, replaced or
 * found unreadable), with its tokens (borrowed for the call). An entry the
 * spill function took is not dropped: it is still held, on disk (and one
 * put straight to disk is told as stored). */
typedef void (*td_pcache_event_fn)(void *arg, bool stored, const int32_t *tokens, size_t n);

/* budget 0: a cache that stores nothing. on_event may be NULL. */
td_err td_pcache_create(td_pcache **out, size_t budget_bytes, td_pcache_event_fn on_event,
                        void *arg);
void td_pcache_destroy(td_pcache *c);

/* Stores seq's state under tokens[0..n) (n == td_v4_seq_len(seq)), evicting
 * older entries to make room; replaces an entry with the same tokens. A
 * state larger than the budget is not stored (but handed to the spill
 * function, if one is set). */
td_err td_pcache_put(td_pcache *c, const td_v4_seq *seq, const int32_t *tokens, size_t n);

/* Loads into seq the longest entry whose tokens are a proper prefix of
 * prompt[0..n) (at least one token must remain to be prefilled, for the
 * logits of the last one) and that is longer than min tokens (a caller
 * holding a state of min tokens elsewhere: nothing shorter is loaded only
 * to be replaced). Returns the tokens restored (0: none; seq is then
 * untouched). */
size_t td_pcache_restore(td_pcache *c, td_v4_seq *seq, const int32_t *prompt, size_t n,
                         size_t min);

/* The longest common prefix of prompt[0..n) with any entry's tokens (no
 * entry need be a prefix of the prompt): where this prompt branches off a
 * cached one. Prompts that share a long system prompt (and tool list) but
 * differ after it have it in common; the engine saves the state at that
 * point while prefilling, so the next prompt of the family restores it. */
size_t td_pcache_common(const td_pcache *c, const int32_t *prompt, size_t n);

td_pcache_stats td_pcache_get_stats(const td_pcache *c);

/* Given an entry's tokens and state bytes (td_v4_seq_save's) just before
 * the cache would free them: evicted for room, idle (td_pcache_spill_idle),
 * at td_pcache_spill_all, or put while larger than the whole budget. Not
 * for an entry replaced by the same tokens (the state after the same
 * tokens is the same bytes). TD_OK: the function took both arrays (it
 * frees them; a disk tier writes them in the background and hands back
 * with td_pcache_adopt a state it could not write); an error: the cache
 * still owns them. */
typedef td_err (*td_pcache_spill_fn)(void *arg, int32_t *tokens, size_t n, uint8_t *state,
                                     size_t len);
void td_pcache_set_spill(td_pcache *c, td_pcache_spill_fn fn, void *arg);

/* Spills and frees every entry not put or restored for idle_ms or more;
 * one the spill function fails for stays in memory (nothing is lost that an
 * engine without a disk tier would keep) and is not tried again when idle.
 * Returns the milliseconds until the next entry becomes idle, -1 if the
 * cache is empty. */
int64_t td_pcache_spill_idle(td_pcache *c, int64_t idle_ms);

/* Spills and frees every entry (a worker that stops keeps its sessions on
 * disk for the next start). */
void td_pcache_spill_all(td_pcache *c);

/* Takes back the arrays of a state the spill function took and then could
 * not write (a full disk): kept as the least recently used entry, and not
 * offered to the spill function again when idle, if it fits in the budget
 * beside what is held; otherwise freed, and the event function told it is
 * gone (while it was on its way to disk it was reported held). */
void td_pcache_adopt(td_pcache *c, int32_t *tokens, size_t n, uint8_t *state, size_t len);

#endif
