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
 * The stores are a KV thread's: spills are written in the background (the
 * engine hands the memory cache's arrays over and goes on; their memory is
 * freed when they are on disk) and a resume is read and loaded there while
 * the engine keeps stepping the rest of the batch. The engine thread calls
 * everything here except td_spill_metrics (any thread) and td_spill_news
 * (any thread). Faults (a corrupt block, another model's store, a full
 * disk, permissions) are logged (the first of each kind at ERROR),
 * counted, and never fail a request: the state is recomputed. A store that
 * cannot be opened leaves the tier off. */
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
    /* Called on the KV thread when it finished a resume or a spill, so an
     * engine waiting for work wakes up to call td_spill_poll. */
    void (*wake)(void *arg);
    void *wake_arg;
    /* Told, from td_spill_poll, of the states on disk that the memory
     * cache's events did not tell of: those found in the store at start
     * (stored) and those the store dropped (evicted, damaged, pushed out of
     * their block's index). Tokens borrowed for the call. NULL: none. */
    void (*on_held)(void *arg, bool stored, const int32_t *tokens, size_t n);
    void *held_arg;
    /* Bytes of states queued for writing before a further spill waits
     * for the disk (their memory is held until written); 0: 1 GiB. */
    size_t max_queued_bytes;
    /* After this long without work, following writes or deletes, the KV
     * thread reclaims in the background: a checkpoint (the log emptied) and
     * segment files that hold no live block deleted (td_kv_gc). 0: 30 s;
     * < 0: never. */
    int64_t gc_idle_ms;
    /* A state of at least this many tokens is filed in token ranges of
     * this many, each written once for all the states that share it (the
     * next turn of a session writes only what it added; docs/kvstore.md,
     * "Token ranges"). A multiple of 128 (the store's block). 0: 16384;
     * < 0: every state whole. */
    int64_t range_tokens;
} td_spill_opts;

/* Opens the store for model m and becomes the spill function of the memory
 * cache c (borrowed; NULL: the cache is off, nothing will be spilled). Fails
 * only for lack of memory: a store that cannot be opened is logged and
 * counted, and the tier stays off (td_spill_up says so) so the engine serves
 * without it. */
td_err td_spill_create(td_spill **out, const td_spill_opts *opts, const td_v4_model *m,
                       td_pcache *c);
/* Writes everything still in c to disk (the sessions survive a restart),
 * waits for the writes, then closes the store (a checkpoint: LRU order
 * survives too). No resume may be in flight (td_spill_resuming). */
void td_spill_destroy(td_spill *s, td_pcache *c);
int td_spill_up(const td_spill *s);

/* Spills c's states idle for idle_ms (<= 0: never); true if another will
 * be due, with *until the CLOCK_REALTIME instant to wake for it (a
 * pthread_cond_timedwait deadline). */
bool td_spill_idle(td_spill *s, td_pcache *c, int64_t idle_ms, struct timespec *until);

/* Starts restoring into seq the longest state whose tokens are a proper
 * prefix of prompt[0..n) (one token must remain, for the logits): from
 * memory now (the cache c, or a state on its way to disk), and returns its
 * tokens (0: none). If the disk may hold a longer one, *queued is set and
 * the KV thread reads and loads it: seq and prompt are then the KV
 * thread's until td_spill_poll reports tag done. s may be NULL (memory
 * only). */
size_t td_spill_restore_begin(td_spill *s, td_pcache *c, td_v4_seq *seq, const int32_t *prompt,
                              size_t n, void *tag, bool *queued);

/* A queued restore is over: seq holds the state after `tokens` tokens of
 * the prompt (0: none), from disk if it had a longer one. */
typedef void (*td_spill_resumed_fn)(void *arg, void *tag, size_t tokens);

/* Collects what the KV thread finished: written states' memory is freed;
 * a state that could not be written goes back to c (td_pcache_adopt);
 * done(arg, tag, tokens) for each restore that completed. */
void td_spill_poll(td_spill *s, td_pcache *c, td_spill_resumed_fn done, void *arg);
/* Whether td_spill_poll has something to collect (any thread). */
bool td_spill_news(td_spill *s);
/* Restores queued and not collected yet. */
size_t td_spill_resuming(const td_spill *s);
/* Blocks until the KV thread finishes something (a stopping engine
 * waiting for its restores). */
void td_spill_wait(td_spill *s);

/* Appends tandem_kvstore_* and tandem_kv_spill_* / _resume_* families. */
void td_spill_metrics(td_spill *s, td_prom_buf *b);

#endif
