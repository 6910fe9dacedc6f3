/* td_spill: the disk tier under the engine's prefix cache (docs/kvstore.md,
 * "The disk tier").
 *
 * States the memory cache lets go of (evicted for room, idle for
 * --kv-spill-idle-ms, or everything when the engine stops) are written to a
 * td_kv store; a prompt that misses in memory is looked up here, its longest
 * stored prefix loaded, and only the rest prefilled. The store survives the
 * process, so a restarted worker resumes its sessions from disk.
 *
 * States end anywhere (a prompt's end, prompt + generated at finish) but the
 * store's keys name whole 128-token blocks. A state of n tokens is therefore
 * filed under its own key, a hash of the key of its last whole block and
 * the 0..127 tokens past it, and an index record at the block's key lists
 * the states that extend that block (up to 8, most recent first): their
 * tokens, tail tokens, length and the state's own checksum. Both are written
 * in one td_kv_put_many. A lookup finds the longest stored block prefix of
 * the prompt, reads its index (one 4 KiB block), takes the longest state
 * whose tail the prompt continues with, reads it and checks that its
 * checksum is the one the index names (so a crash that kept only one of the
 * two writes can never pair an index entry with another state); a miss
 * there falls back to shorter block prefixes.
 *
 * Engine thread only, except td_spill_metrics (any thread). Faults (a corrupt
 * block, another model's store, a full disk, permissions) are logged (the
 * first of each kind at ERROR), counted, and never fail a request: the state
 * is recomputed. A store that cannot be opened leaves the tier off. */
#ifndef TD_ENGINE_SPILL_H
#define TD_ENGINE_SPILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/err.h"
#include "common/prom.h"
#include "engine/prefix_cache.h"
#include "model/model.h"

typedef struct td_spill td_spill;

typedef struct {
    const char *dir;             /* the store; created if missing */
    uint64_t capacity_bytes;     /* for a new store; 0: the store's default (64 GiB) */
    /* Other workers' stores (comma-separated directories, on a shared
     * volume), read when a prompt misses here: a conversation another
     * worker spilled resumes from its disk (td_kv peer opens: read-only,
     * reopened when their owner changed them). NULL: none. */
    const char *peers;
} td_spill_opts;

/* Opens the store for model m and becomes the spill function of the memory
 * cache c (borrowed; NULL: the cache is off, nothing will be spilled). Fails
 * only for lack of memory: a store that cannot be opened is logged and
 * counted, and the tier stays off (td_spill_up says so) so the engine serves
 * without it. */
td_err td_spill_create(td_spill **out, const td_spill_opts *opts, const td_v4_model *m,
                       td_pcache *c);
/* Writes everything still in c to disk (the sessions survive a restart),
 * then closes the store (a checkpoint: LRU order survives too). */
void td_spill_destroy(td_spill *s, td_pcache *c);
int td_spill_up(const td_spill *s);

/* Spills c's states idle for idle_ms (<= 0: never); true if another will
 * be due, with *until the CLOCK_REALTIME instant to wake for it (a
 * pthread_cond_timedwait deadline). */
bool td_spill_idle(td_spill *s, td_pcache *c, int64_t idle_ms, struct timespec *until);

/* Writes the state after tokens[0..n) (state[0..len), td_v4_seq_save's
 * bytes) to disk; TD_OK when it is there. Below one block (128 tokens) it
 * is not written (TD_ENOTSUP): such a prefix is cheap to recompute. An
 * entry with the same tokens on disk is not written again. Errors are
 * logged and counted, and returned. */
td_err td_spill_put(td_spill *s, const int32_t *tokens, size_t n, const void *state, size_t len);

/* Loads into seq the longest state whose tokens are a proper prefix of
 * prompt[0..n) (one token must remain, for the logits): from the memory
 * cache c, or from disk if the disk has a longer one. Returns its tokens, 0
 * if none (seq is then empty). s may be NULL (memory only). */
size_t td_spill_restore(td_spill *s, td_pcache *c, td_v4_seq *seq, const int32_t *prompt,
                        size_t n);

/* Appends tandem_kvstore_* and tandem_kv_spill_* / _resume_* families. */
void td_spill_metrics(td_spill *s, td_prom_buf *b);

#endif
