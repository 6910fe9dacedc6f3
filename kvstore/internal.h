/* The kvstore's private state, shared by its files:
 *   store.c    open/close, index, LRU, put/get/del/pin, prefix lookup
 *   evict.c    eviction: the cost policy's priorities and heap, victims
 *   space.c    segment files and the page allocator
 *   io.c       io_uring: staging pool, block writes and reads in flight
 *   manifest.c log append, checkpoint, recovery
 *   format.c   byte formats
 *   key.c      the token hash chain */
#ifndef TD_KVSTORE_INTERNAL_H
#define TD_KVSTORE_INTERNAL_H

#include <liburing.h>
#include <stdint.h>

#include "kvstore/format.h"
#include "kvstore/kvstore.h"

typedef struct kv_entry {
    td_kv_key key;
    uint32_t section;
    uint32_t pinned;
    uint32_t replacing;          /* a put in progress replaces it: keep */
    uint64_t tokens, value_len, seq;
    uint32_t n_ext;
    kv_ext *ext;                 /* owned */
    struct kv_entry *hnext;      /* hash chain */
    struct kv_entry *prev, *next; /* LRU list: head = least recent */
    /* eviction (evict.c), kept under both policies so either can take over */
    double prio;                 /* clock + uses * unit at the last use */
    double unit;                 /* cost / pages, of its whole batch (evict.c) */
    uint32_t uses;               /* the put, then reads and lookups; capped */
    uint32_t read;               /* read or found since put */
    uint64_t tick;               /* order of last use (= LRU order): breaks ties */
    size_t hidx;                 /* place in kv->heap, KV_NO_HEAP if not there */
} kv_entry;

#define KV_NO_HEAP SIZE_MAX

typedef struct {
    int fd;                      /* -1: not created (or missing) */
    uint32_t used;               /* pages in use */
    int dirty;                   /* written since the last fdatasync */
    uint64_t *map;               /* one bit per page */
} kv_seg;

/* One block in flight. */
typedef struct {
    uint8_t *buf;                /* staging slot (aligned) */
    uint32_t seg, item, index;   /* segment; which value of the run; block number in it */
    uint64_t off;                /* file offset of the remaining part */
    uint32_t done, len;          /* bytes transferred so far / in total */
    int busy;
} kv_slot;

typedef struct {
    struct io_uring ring;
    int ring_ok;
    uint32_t depth;
    uint8_t *pool;               /* depth x block_bytes, 4096-aligned */
    kv_slot *slots;
    int bufs_registered, files_registered;
} kv_io;

/* A file's identity, to notice that another process changed it. */
typedef struct {
    uint64_t ino, size;
    int64_t mtime_ns;
} kv_file_id;

/* Where block i of a value lives: derived from the extent list. */
typedef struct {
    uint32_t seg, page, pages;
} kv_loc;

struct td_kv {
    kv_geom g;                   /* geometry (from the checkpoint) */
    char *dir;
    int dir_fd, lock_fd, log_fd;
    int read_only, direct_io;
    kv_file_id seen[2];          /* the manifest files as this open read them */
    uint64_t log_end;            /* append offset of the log */
    uint64_t log_records;        /* records since the last checkpoint */
    uint32_t checkpoint_every;
    uint64_t next_lsn, next_seq;

    /* index: (key, section) -> entry, chained buckets; LRU list */
    kv_entry **buckets;
    size_t n_buckets, n_entries, n_pinned;
    kv_entry *lru_head, *lru_tail;

    /* eviction: the policy, and for the cost policy a binary min-heap of
     * the evictable entries (neither pinned nor being replaced) by
     * (prio, tick) and the inflation clock (the priority last evicted) */
    td_kv_evict policy;
    double knee, clock;
    uint64_t tick;
    kv_entry **heap;
    size_t heap_n, heap_cap;
    void (*on_evict)(void *arg, const td_kv_entry_info *e);
    void *on_evict_arg;

    /* space */
    kv_seg *segs;
    uint32_t n_segs;             /* capacity / segment_bytes */
    uint32_t seg_pages;
    uint64_t used_pages, cap_pages;
    uint32_t hint_seg, hint_page; /* next-fit allocator position */

    kv_io io;
    kv_loc *locs;                /* scratch: block locations of one value */
    size_t locs_cap;
    uint8_t *rec_buf;            /* scratch: one encoded log record */
    size_t rec_cap;

    td_kv_stats st;
};

/* store.c, put.c */
/* Logs a DEL for e, then removes it and frees its pages. */
td_err kv_drop(td_kv *kv, kv_entry *e, char *err, size_t errlen);
kv_entry *kv_find(td_kv *kv, td_kv_key key, uint32_t section);
void kv_index_insert(td_kv *kv, kv_entry *e);
void kv_index_remove(td_kv *kv, kv_entry *e);  /* frees its pages and e */
uint32_t kv_blocks_of(const td_kv *kv, uint64_t value_len);
/* Pages all blocks of a value take; UINT64_MAX if beyond any capacity. */
uint64_t kv_value_pages(const td_kv *kv, uint64_t value_len);
uint32_t kv_block_pages(const td_kv *kv, uint64_t value_len, uint32_t index);
void kv_set_pinned(td_kv *kv, kv_entry *e, uint32_t pinned);
/* A use: the entry moves to the end of the LRU list and is priced again. */
void kv_touch(td_kv *kv, kv_entry *e);
void kv_info(const td_kv *kv, const kv_entry *e, td_kv_entry_info *info);

/* evict.c */
void kv_evict_init(td_kv *kv, const td_kv_opts *o);
/* Settles td_kv_opts.eviction 0: what the checkpoint recorded (`recorded`,
 * DEFAULT if it has no table or is being created), else COST. Before any
 * checkpoint is written. */
void kv_evict_resolve(td_kv *kv, td_kv_evict recorded);
void kv_evict_fini(td_kv *kv);
/* Sets the worth per use of the entries of one td_kv_put_many (n = 1 for a
 * log record replayed: its batch is not recorded). */
/* kept: entries already stored that the batch reuses (td_kv_item.keep);
 * each keeps its own price if that is higher. */
void kv_evict_batch(const td_kv *kv, kv_entry *const *ents, size_t n, kv_entry *const *kept,
                    size_t nkept);
/* A new entry in the index (kv_index_insert): a use at the current clock,
 * with e->uses and e->unit already set (kv_evict_uses_after for a
 * replacement, kv_evict_batch). */
void kv_evict_insert(td_kv *kv, kv_entry *e);
void kv_evict_remove(td_kv *kv, kv_entry *e);
/* A read or a lookup hit. */
void kv_evict_use(td_kv *kv, kv_entry *e);
/* e's pinned or replacing flag changed: enter or leave the heap; rebase
 * re-prices it at the current clock (an unpin: its credit restarts). */
void kv_evict_sync(td_kv *kv, kv_entry *e, int rebase);
/* Uses a new value starts with: one, plus those of the value it replaces
 * (the same prefix, put again). */
uint32_t kv_evict_uses_after(const kv_entry *old);
/* Sets e's saved priority (a checkpoint's row), not below the clock. */
void kv_evict_restore(td_kv *kv, kv_entry *e, const kv_prio *p);
/* Evicts one entry by the policy, calls on_evict. `why` is the allocation
 * failure that asked for it (NULL: the capacity count), kept in the
 * TD_ENOSPC message when nothing can go, so that a full disk reads as such. */
td_err kv_evict_one(td_kv *kv, uint64_t need, const char *why, char *err, size_t errlen);

/* space.c */
td_err kv_space_init(td_kv *kv, char *err, size_t errlen);
void kv_space_fini(td_kv *kv);
/* Marks an extent used; -1 if it lies outside the store or overlaps. */
int kv_space_claim(td_kv *kv, kv_ext x);
void kv_space_release(td_kv *kv, kv_ext x);
/* Allocates a contiguous run of `pages`, creating (preallocating) a
 * segment file if needed. TD_ENOSPC if no run is free. */
td_err kv_space_alloc(td_kv *kv, uint32_t pages, kv_ext *out, char *err, size_t errlen);
td_err kv_space_drop_empty(td_kv *kv, char *err, size_t errlen);

/* io.c */
td_err kv_io_init(td_kv *kv, uint32_t depth, int try_register, char *err, size_t errlen);
void kv_io_fini(td_kv *kv);
void kv_io_file_set(td_kv *kv, uint32_t seg);
/* Writes all blocks of ents[i] from values[i], for every i, keeping the
 * queue full across values. Does not sync (kv_io_sync). */
td_err kv_io_write(td_kv *kv, const kv_entry *const *ents, const void *const *values, size_t n,
                   char *err, size_t errlen);
/* fdatasync every segment written since the last call. */
td_err kv_io_sync(td_kv *kv, char *err, size_t errlen);
typedef void (*kv_ready_fn)(size_t item, void *arg);
typedef void (*kv_progress_fn)(void *arg, size_t k);
/* Reads and verifies all blocks of ents[i] into out[i] (value_len bytes),
 * for every i, in one stream; ready(i, arg) when value i is complete. When
 * n == 1, progress(arg, k) each time the verified contiguous prefix
 * out[0][0..k) grows (ignored for n > 1). On TD_ECORRUPT *bad names the
 * value a bad block belongs to. */
td_err kv_io_read(td_kv *kv, const kv_entry *const *ents, void *const *out, size_t n,
                  kv_ready_fn ready, kv_progress_fn progress, void *arg, size_t *bad,
                  char *err, size_t errlen);
/* Fills kv->locs[base..] from e's extents; TD_ECORRUPT if they do not fit. */
td_err kv_locs(td_kv *kv, const kv_entry *e, size_t base, char *err, size_t errlen);

/* manifest.c */
/* The checkpoint's and the log's identity now (inode, size, mtime; zeros
 * for a missing file): what td_kv_stale compares. */
void kv_manifest_seen(const td_kv *kv, kv_file_id out[2]);
td_err kv_manifest_create(td_kv *kv, char *err, size_t errlen);
td_err kv_manifest_recover(td_kv *kv, const td_kv_opts *opts, char *err, size_t errlen);
/* Appends n records (exts[i]: the extents of PUT record i; exts may be NULL
 * when none is a PUT) with one write and one fdatasync. */
td_err kv_log_append(td_kv *kv, kv_rec *recs, const kv_ext *const *exts, size_t n,
                     char *err, size_t errlen);
td_err kv_checkpoint(td_kv *kv, char *err, size_t errlen);

#endif
