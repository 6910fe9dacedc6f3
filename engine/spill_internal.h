/* What the disk tier's two files share (not a public header):
 *   spill.c       the engine thread's side (hand-off of states, restores,
 *                 collecting finished work), the KV thread and its queue,
 *                 create/destroy, metrics
 *   spill_disk.c  the KV thread's work on the stores: the index records,
 *                 writing a state, finding and loading one, peer stores
 *   spill_ranges.c long states filed in token ranges (written once for all
 *                 the states that share them) and read back
 *   spill_index.c the index record's layout (spill_index.h)
 * Which thread owns which field is marked on the struct. */
#ifndef TD_ENGINE_SPILL_INTERNAL_H
#define TD_ENGINE_SPILL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "engine/spill.h"
#include "kvstore/kvstore.h"

/* The index record's section, at a block key. Section 0 is a whole state
 * (TD_KV_SECTION_STATE); per-layer sections would be 1 + layer, so the
 * index sits far above any layer count. */
#define SPILL_SECTION_INDEX 0x7461u
/* The state's token ids (int32 LE) at the state's own key: what a worker
 * announces to the router at start, and when the store drops the state. */
#define SPILL_SECTION_TOKENS 0x746bu
/* A state filed in token ranges (spill_ranges.c): its rest at its own key,
 * and the ranges' pieces at their chain keys (the top byte 'r', then the
 * range's blocks and the span). */
#define SPILL_SECTION_REST 0x7273u
#define SPILL_SECTION_RANGE 0x72000000u

enum { MAX_PEERS = 8, SPILL_MAX_TAIL = 128 };

/* Why an operation failed, for the metrics' reason label. */
enum { R_CORRUPT, R_FORMAT, R_NOSPC, R_IO, R_OTHER, NREASONS };
enum { OP_OPEN, OP_SPILL, OP_RESUME, NOPS };

typedef struct {
    uint64_t spills, spill_bytes, spill_skipped, resumes, resume_tokens, resume_misses;
    uint64_t peer_resumes, peer_resume_tokens;
    uint64_t gcs;                /* background reclamations */
    uint64_t failures[NOPS][NREASONS];
    td_prom_hist spill_s, resume_s;
    td_kv_stats kv;
} spill_counters;

/* Another worker's store, read where a shared volume holds it. */
typedef struct {
    char dir[512];
    td_kv *kv;                   /* NULL: not open (yet) */
    double failed_s;             /* the last open that failed: retried a second later */
    bool logged;
    td_kv_manifest_id shown;     /* what the engine thread was last told of */
    bool told;
} spill_peer;

/* Work for the KV thread. A spill owns its tokens and state until the
 * engine thread collects it; a resume borrows the request's prompt and
 * sequence, which nobody else touches until it is collected. */
enum { JOB_SPILL, JOB_RESUME, JOB_HELD, JOB_UNINDEX, JOB_PEERVIEW };

typedef struct spill_job {
    struct spill_job *next;      /* in a queue (under qmu) */
    struct spill_job *pnext;     /* spills: the engine thread's pending list */
    int kind;
    bool stored;                 /* JOB_HELD: a state on disk found (or dropped): tokens, n */
    /* spill */
    int32_t *tokens;
    size_t n;
    uint8_t *state;
    size_t len;
    td_err result;               /* TD_OK: on disk */
    td_kv_key block;             /* the block key whose index names it (JOB_UNINDEX: gone) */
    /* resume */
    const int32_t *prompt;
    td_v4_seq *seq;
    size_t min;                  /* tokens memory gave: a disk state must be longer */
    size_t got;                  /* out: tokens loaded from disk (0: none) */
    int reset;                   /* out: a failed load emptied seq */
    void *tag;
    /* JOB_PEERVIEW: peer `peer`'s index keys (n of them, malloc'd) as read
     * at manifest id */
    int peer;
    td_kv_key *keys;
    td_kv_manifest_id id;
} spill_job;

/* A set of block keys: open addressing, linear probing, the zero key for
 * an empty slot. */
typedef struct {
    td_kv_key *keys;
    size_t cap, n;
} spill_keyset;

/* The engine thread's view of a peer's store: the block keys with an index
 * record when the KV thread last opened it, and the manifest it read then
 * (valid once the KV thread has looked). */
typedef struct {
    spill_keyset set;
    td_kv_manifest_id id;
    bool valid;
} spill_peer_view;

/* The keys of a store's entries in one section (td_kv_foreach, then
 * worked through: done). */
typedef struct {
    td_kv_key *keys;
    size_t n, cap, done;
    uint32_t section;            /* which entries to list */
    bool oom;                    /* the list stopped short for lack of memory */
} spill_keylist;

struct td_spill {
    /* fixed at create */
    const td_v4_model *m;
    uint64_t fingerprint;
    uint32_t bt;                 /* block_tokens of the store */
    char dir[512];
    void (*wake)(void *arg);
    void *wake_arg;
    void (*on_held)(void *arg, bool stored, const int32_t *tokens, size_t n);
    void *held_arg;
    size_t max_queued;           /* bytes of spills queued before the engine waits */
    uint32_t range_tokens;       /* states this long and longer go in token ranges; 0: never */
    int64_t gc_idle_ms;          /* < 0: no background reclamation */

    /* the KV thread's (the engine thread's before it starts and after it
     * ends): the stores and everything that reads them */
    td_kv *kv;                   /* NULL: the tier is off */
    spill_peer peers[MAX_PEERS]; /* (their dir and npeers are fixed at create) */
    int npeers;
    bool logged[NOPS][NREASONS]; /* the first of each kind goes out at ERROR */
    td_kv_key *keys;             /* chain scratch, grown as needed */
    size_t nkeys;
    uint8_t *idx_old, *idx_rec;  /* index records read and written (SPILL_IDX_CAP) */
    spill_counters c;
    bool dirty;                  /* written or deleted since the last reclamation */
    spill_keylist announce;      /* states found at start, still to announce */
    size_t announce_told;
    td_kv_entry_info *evicted;   /* what the store evicted during a put */
    size_t nevicted, cap_evicted;

    /* the queue between the two threads */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t qmu;
    pthread_cond_t qcv;          /* the KV thread waits for work */
    pthread_cond_t dcv;          /* the engine thread waits for finished work */
    spill_job *resumes, *resumes_tail, *spills, *spills_tail, *done, *done_tail;
    size_t queued_bytes;         /* states of spills not written yet */
    bool quit;
    atomic_bool news;            /* done is not empty */

    /* the engine thread's */
    spill_job *pending;          /* spills not collected: their states are still here */
    size_t npending;             /* resumes not collected */
    spill_keyset set;            /* block keys with an index record in our store */
    spill_peer_view views[MAX_PEERS];
    td_kv_key *ekeys;            /* chain scratch */
    size_t nekeys;
    atomic_ullong pending_bytes; /* states of the pending list (a gauge) */
    atomic_ullong quick_misses;  /* restores the key set answered: nothing on disk */

    pthread_mutex_t mu;
    spill_counters pub;          /* under mu: what /metrics reads */
};

/* A serialized state's own checksum: its last 8 bytes (docs/kv-layout.md;
 * len >= 8; little-endian hosts). */
static inline uint64_t spill_state_sum(const void *state, size_t len)
{
    uint64_t v;
    memcpy(&v, (const uint8_t *)state + len - 8, 8);
    return v;
}

/* spill_disk.c (the KV thread) */
td_err td_spill_open_store(td_spill *s, const td_spill_opts *o);
void td_spill_close_stores(td_spill *s);
/* Writes the state after tokens[0..n) and its index record; *block gets
 * the block key the index sits at. */
td_err td_spill_disk_put(td_spill *s, const int32_t *tokens, size_t n, const void *state,
                         size_t len, td_kv_key *block);
/* Loads into seq the longest state on disk (ours, then the peers') longer
 * than min tokens that prompt[0..n) continues; its tokens, 0 if none.
 * *reset: a failed load emptied seq. */
size_t td_spill_disk_restore(td_spill *s, td_v4_seq *seq, const int32_t *prompt, size_t n,
                             size_t min, int *reset);
void td_spill_publish(td_spill *s);
/* Tells on_held of the states in our store (found at start): begin lists
 * them, each call of _some announces up to max more (reads of the token
 * ids and the index that names them); true while some remain, so resumes
 * can go first. */
void td_spill_disk_announce_begin(td_spill *s);
/* Reopens the peers' stores that changed (each reopen tells the engine
 * thread what the store holds: td_spill_peer_view). */
void td_spill_disk_look_at_peers(td_spill *s);
bool td_spill_disk_announce_some(td_spill *s, size_t max);
/* spill_ranges.c (the KV thread): states filed in token ranges. */
/* Whether a state of n tokens and len bytes is filed in ranges. */
bool td_spill_ranges_apply(const td_spill *s, uint64_t n, size_t len);
/* The items that file the state (keys: the chain of its blocks) in ranges:
 * each range's pieces (kept where the store has them: written by a state
 * that shares the range), then its rest at key me (gathered into *rest,
 * malloc'd, which the caller frees after the put), with room for `extra`
 * items after them; *written gets the bytes to write. TD_ENOTSUP if the
 * state is not filed in ranges. */
td_err td_spill_ranges_items(td_spill *s, const td_kv_key *keys, uint64_t n, const uint8_t *state,
                             size_t len, td_kv_key me, size_t extra, td_kv_item **items,
                             size_t *nitems, uint8_t **rest, size_t *written);
/* Whether kv holds every part of the state of n tokens and len bytes filed
 * in ranges of C tokens at me. */
bool td_spill_ranges_present(td_spill *s, td_kv *kv, const td_kv_key *keys, uint64_t n,
                             uint32_t C, size_t len, td_kv_key me);
/* Loads that state into seq as it is read; checks it is the one whose last
 * 8 bytes (its checksum) are sum. TD_ENOENT if a part is gone (evicted: not
 * a fault), TD_ECORRUPT if a part is not what it must be; *reset: the
 * failure left seq empty. */
td_err td_spill_ranges_load(td_spill *s, td_kv *kv, const char *dir, td_v4_seq *seq,
                            const td_kv_key *keys, uint64_t n, uint32_t C, td_kv_key me,
                            size_t len, uint64_t sum, int *reset, char *err, size_t errlen);
/* spill.c, on the KV thread: a state on disk found or dropped, for on_held
 * (tokens: malloc'd, handed over). */
void td_spill_notice(td_spill *s, int32_t *tokens, size_t n, bool stored);
/* spill.c, on the KV thread: peer's store was read at manifest id and holds
 * index records at keys[0..n) (malloc'd, handed over); the engine thread's
 * view of it becomes that. */
void td_spill_peer_view(td_spill *s, int peer, td_kv_key *keys, size_t n,
                        const td_kv_manifest_id *id);
/* spill.c, on the KV thread: the index at block was evicted; the engine's
 * set of block keys forgets it. */
void td_spill_unindex(td_spill *s, td_kv_key block);
extern const char *const td_spill_op_name[NOPS];
extern const char *const td_spill_reason_name[NREASONS];

#endif
