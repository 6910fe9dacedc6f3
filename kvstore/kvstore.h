/* td_kv: an on-disk store of serialized KV state (docs/kvstore.md).
 *
 * Values are byte strings the store does not interpret: the output of
 * td_v4_seq_save for a sequence at a prefix boundary, or one caller-defined
 * section of it (for example one layer). Each value is filed under
 * (key, section), where key is the chain hash of the token prefix the state
 * covers (td_kv_chain), so sessions that share a prefix share entries and a
 * new prompt can find the longest stored prefix of itself.
 *
 * On disk: preallocated segment files written and read with io_uring
 * (O_DIRECT, registered buffers and fixed files where the kernel allows),
 * every block checksummed (XXH3-64) and verified on read, and a manifest
 * (append-only log + atomic checkpoint) that maps entries to blocks.
 * td_kv_put returns only when the value and the log record that references
 * it are durable; kill -9 at any instant never makes the store serve bytes
 * other than those put.
 *
 * Threading: a td_kv is used by one thread at a time (the caller locks).
 * Errors: every call returns td_err and, where it takes (err, errlen),
 * writes a message naming the file and the field. */
#ifndef TD_KVSTORE_KVSTORE_H
#define TD_KVSTORE_KVSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/prom.h"

typedef struct td_kv td_kv;

/* A chain hash (XXH3-128) identifying a token prefix. */
typedef struct {
    uint64_t lo, hi;
} td_kv_key;

/* Section conventions (the store only compares numbers): the whole
 * serialized state is section 0; per-layer sections, if a caller splits
 * the state, are 1 + layer. */
#define TD_KV_SECTION_STATE 0u

/* Which unpinned entry goes when a put needs room (docs/kvstore.md,
 * "Capacity, eviction"). */
typedef enum {
    TD_KV_EVICT_DEFAULT = 0,  /* the policy the store last ran (its checkpoint
                                 says), COST for a new store */
    TD_KV_EVICT_LRU = 1,      /* least recently used first */
    TD_KV_EVICT_COST = 2,     /* least recompute time saved per page first,
                                 aged (GreedyDual-Size-Frequency) */
} td_kv_evict;

typedef struct td_kv_entry_info td_kv_entry_info;

typedef struct {
    const char *dir;          /* store directory; created when create != 0 */
    /* td_v4_layout_fingerprint of the model. A store belongs to one model
     * geometry: opening with another is refused (TD_EFORMAT). 0 accepts
     * whatever the store holds (inspection tools only). */
    uint64_t fingerprint;
    int create;               /* make an empty store if dir has none */
    int read_only;            /* inspection: no writes, not even recovery's
                                 truncation of a torn log tail */
    /* Another running process owns the store (a peer worker's, on a shared
     * volume): open it read-only without its lock, which the owner holds.
     * What the owner writes after the open shows once td_kv_stale says so
     * and the caller reopens; a value the owner has since evicted or
     * overwritten fails its block checks (TD_ECORRUPT: recompute), so a
     * peer never serves bytes other than those put. Implies read_only. */
    int peer;
    /* The fields below apply when a store is created; an existing store
     * keeps those it was created with (see td_kv_stats). 0 = default. */
    uint32_t block_tokens;    /* tokens per chain link (128: the HCA ratio) */
    uint64_t capacity_bytes;  /* disk space for blocks (default 64 GiB) */
    uint64_t segment_bytes;   /* one preallocated file (default 1 GiB) */
    uint32_t block_bytes;     /* one on-disk block, header included, a
                                 multiple of 4096 (default 256 KiB) */
    /* Per open, not stored: */
    uint32_t queue_depth;     /* blocks in flight (default 16) */
    /* Do not register the staging buffers (queue_depth x block_bytes) and
     * segment files with the ring. By default the store tries and falls
     * back silently: registration counts against RLIMIT_MEMLOCK (8 MiB on
     * our machines for non-root), td_kv_stats says what it got. */
    int no_register;
    uint32_t checkpoint_every; /* log records between checkpoints (1024) */
    /* Eviction policy. The checkpoint records it, so that an inspection
     * (`tandem kvstore stat`) or a restart with DEFAULT keeps what the
     * owner chose. */
    td_kv_evict eviction;
    /* The cost policy's model of recomputing a prefix of n tokens:
     * n + n*n / cost_knee_tokens, the prefix length at which the CSA
     * indexer's work (it scores every compressed entry per token) equals the
     * rest of prefill. Default 16384, measured on the tiny model; about
     * 4 * active parameters / (index_n_heads * index_head_dim) in general
     * (V4-Flash: ~6M, so nearly linear). */
    uint32_t cost_knee_tokens;
    /* Called for every entry evicted to make room (not for td_kv_del, nor a
     * corrupt entry dropped), after its DEL record is durable, on the
     * calling thread from inside td_kv_put / td_kv_put_many: it must not
     * call td_kv functions on this store. e is valid for the call. */
    void (*on_evict)(void *arg, const td_kv_entry_info *e);
    void *on_evict_arg;
} td_kv_opts;

typedef struct {
    /* geometry of the store */
    uint64_t fingerprint;
    uint32_t block_tokens, block_bytes;
    uint64_t segment_bytes, capacity_bytes;
    /* space */
    uint64_t bytes_used, bytes_free, segments;
    uint64_t entries, pinned;
    /* since open */
    uint64_t hit_blocks, miss_blocks, hit_tokens, miss_tokens;
    uint64_t puts, put_bytes, gets, get_bytes;
    uint64_t evictions, checksum_failures;
    /* what the evictions gave up: the tokens (prefill work) and bytes of the
     * entries evicted, and how many of them were never read since put */
    uint64_t evicted_tokens, evicted_bytes, evicted_unread;
    /* recovery at open */
    uint64_t recovered_records, torn_bytes, dropped_records;
    int buffers_registered, files_registered, direct_io;
    td_kv_evict eviction;     /* the policy in force (never DEFAULT) */
    uint32_t cost_knee_tokens;
} td_kv_stats;

/* What a lookup or listing reports about one entry. */
struct td_kv_entry_info {
    td_kv_key key;
    uint32_t section;
    int pinned;
    uint64_t tokens;          /* the value is the state after this many tokens */
    uint64_t value_bytes;
    uint64_t seq;             /* put order, unique per put */
    uint32_t blocks;
};

td_err td_kv_open(td_kv **out, const td_kv_opts *opts, char *err, size_t errlen);
/* Writes a checkpoint (unless read-only) and frees everything. */
void td_kv_close(td_kv *kv);

/* Chain keys of the complete blocks of tokens[0..n): keys[i] covers tokens
 * [0, (i+1)*block_tokens). Returns how many blocks there are; writes at most
 * cap keys. Pure: same inputs, same keys, on any machine. */
size_t td_kv_chain(uint64_t fingerprint, uint32_t block_tokens, const int32_t *tokens,
                   size_t n, td_kv_key *keys, size_t cap);

/* Stores value[0..len) under (key, section) as the state after `tokens`
 * tokens, replacing an older value there. Returns when the blocks and the
 * log record are on disk. Evicts unpinned entries (td_kv_opts.eviction)
 * to make room; TD_ENOSPC if it cannot. On error nothing is stored and
 * the older value stays (entries evicted to make room stay evicted). */
td_err td_kv_put(td_kv *kv, td_kv_key key, uint32_t section, uint64_t tokens,
                 const void *value, size_t len, char *err, size_t errlen);

/* One value of td_kv_put_many. value is borrowed for the call. */
typedef struct {
    td_kv_key key;
    uint32_t section;
    uint64_t tokens;
    const void *value;
    size_t len;
    /* 1: the value is already stored under (key, section) and is not
     * written again (tokens, value and len are ignored): a state made of
     * token ranges that other states share lists the ranges it reuses.
     * Such an item is priced with the batch, as a part of the whole it
     * belongs to, if that is worth more than its own price, and counts as
     * used. TD_ENOENT, before anything is written, if it is absent. */
    int keep;
} td_kv_item;

/* Stores n values (say, every layer section of one state) with the blocks
 * of all of them in one stream of writes (queue_depth in flight), one data
 * sync and one log write: all or none are stored, except that a crash
 * during the log write may keep a prefix of the items (each of them
 * complete). TD_EINVAL if a (key, section) appears twice.
 * Kept items (keep = 1) are neither written nor logged: nothing the store
 * evicts for this put's room is one of them. */
td_err td_kv_put_many(td_kv *kv, const td_kv_item *items, size_t n, char *err, size_t errlen);

/* Reads the value into buf[0..cap), verifying every block; *len gets its
 * size (TD_ERANGE with *len set if cap is too small). TD_ENOENT if absent;
 * TD_ECORRUPT if a block fails its checks: the entry is then dropped and
 * the failure counted, so the caller recomputes (or asks
 * td_kv_longest_prefix again: it now finds the next shorter prefix). */
td_err td_kv_get(td_kv *kv, td_kv_key key, uint32_t section, void *buf, size_t cap,
                 size_t *len, char *err, size_t errlen);

/* As td_kv_get, and calls progress(arg, k) each time the verified
 * contiguous prefix buf[0..k) of the value grows, so a resume can load the
 * state while later blocks are still being read (td_v4_seq_load_feed). k
 * only grows and the last call has k == *len; bytes before k are final.
 * progress runs on this thread, with the reads after it already queued; it
 * must not call into kv. Blocks complete out of order: k waits for the
 * slowest block before it. An error after some progress (a corrupt block:
 * progress never passes it) means the caller discards what it loaded.
 * progress may be NULL (that is td_kv_get). */
td_err td_kv_get_progress(td_kv *kv, td_kv_key key, uint32_t section, void *buf, size_t cap,
                          size_t *len, void (*progress)(void *arg, size_t k), void *arg,
                          char *err, size_t errlen);

/* One value of td_kv_get_many. buf is borrowed for the call. */
typedef struct {
    td_kv_key key;
    uint32_t section;
    void *buf;
    size_t cap;
    size_t len;               /* out: the value's size */
} td_kv_get_item;

/* Reads n values (say, the layer sections of a state) in one stream of
 * reads, queue_depth blocks in flight, and calls ready(i, arg) as soon as
 * value i is complete and verified while later blocks are still being read,
 * so a resume can load sections as they arrive (ready runs on this thread;
 * the reads already queued continue meanwhile). Every item must exist
 * (TD_ENOENT) and fit (TD_ERANGE) before anything is read. A corrupt block:
 * TD_ECORRUPT, its entry dropped and counted; ready has been called for the
 * values completed before it. */
td_err td_kv_get_many(td_kv *kv, td_kv_get_item *items, size_t n,
                      void (*ready)(size_t item, void *arg), void *arg, char *err, size_t errlen);

/* Size and metadata of an entry without reading it (TD_ENOENT if absent). */
td_err td_kv_stat_entry(td_kv *kv, td_kv_key key, uint32_t section, td_kv_entry_info *info);

/* The longest prefix of tokens[0..n) (whole blocks) with an entry in
 * `section`: *tokens_out is its length (0 if none) and *key_out its key.
 * Counts hits and misses in blocks and tokens. Does not read the blocks:
 * td_kv_get verifies them. */
td_err td_kv_longest_prefix(td_kv *kv, const int32_t *tokens, size_t n, uint32_t section,
                            uint64_t *tokens_out, td_kv_key *key_out);

td_err td_kv_del(td_kv *kv, td_kv_key key, uint32_t section, char *err, size_t errlen);

/* A pinned entry is never evicted (a session in use). Persistent. */
td_err td_kv_pin(td_kv *kv, td_kv_key key, uint32_t section, int pinned,
                 char *err, size_t errlen);

void td_kv_stats_get(const td_kv *kv, td_kv_stats *st);

/* Appends the stats to a /metrics page as tandem_kvstore_* gauges and
 * counters (Prometheus text, common/prom.h). */
void td_kv_metrics(const td_kv_stats *st, td_prom_buf *b);

/* Calls fn for every entry, least recently used first; stops when fn
 * returns non-zero. fn must not modify the store. */
void td_kv_foreach(td_kv *kv, int (*fn)(const td_kv_entry_info *, void *), void *arg);

/* Reads and checks every block of every entry. *ok and *bad count entries;
 * bad ones are dropped unless the store is read-only. The first failure's
 * message goes to err. */
td_err td_kv_verify(td_kv *kv, uint64_t *ok, uint64_t *bad, char *err, size_t errlen);

/* Checkpoint now, empty the log, and delete segment files that hold no
 * live block (they are preallocated again when needed). */
td_err td_kv_gc(td_kv *kv, char *err, size_t errlen);

/* Whether the manifest on disk changed since this open (a checkpoint, or
 * log records appended): for a peer store, reopen to see them. */
int td_kv_stale(const td_kv *kv);
/* What identifies the manifest's contents: its two files' inode, size and
 * modification time (zeros for a file that is not there). Equal ids: the
 * same manifest, so what an open read is still what the store holds. */
typedef struct {
    uint64_t ino[2], size[2];
    int64_t mtime_ns[2];
} td_kv_manifest_id;
/* The id of the manifest as this open read it. */
void td_kv_manifest_id_of(const td_kv *kv, td_kv_manifest_id *out);
/* The id of dir's manifest now, by path alone (no open, no lock: any
 * thread, any time; all zeros if dir holds no store). */
void td_kv_manifest_id_at(const char *dir, td_kv_manifest_id *out);
int td_kv_manifest_id_eq(const td_kv_manifest_id *a, const td_kv_manifest_id *b);

/* "0123...": 32 hex digits, hi then lo. */
void td_kv_key_hex(td_kv_key key, char out[33]);
td_err td_kv_key_parse(const char *hex, td_kv_key *key);

#endif
