/* td_kv: open/close, the in-memory index and LRU list, and the operations
 * of kvstore.h other than put (put.c) and eviction (evict.c). A delete
 * makes its DEL record durable before the pages become free
 * (docs/kvstore.md). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "kvstore/internal.h"

/* ---- index ---- */

static size_t bucket(const td_kv *kv, td_kv_key key, uint32_t section)
{
    uint64_t h = key.lo ^ (key.hi * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)section * 0xff51afd7ed558ccdull);
    return (size_t)(h ^ (h >> 29)) & (kv->n_buckets - 1);
}

kv_entry *kv_find(td_kv *kv, td_kv_key key, uint32_t section)
{
    for (kv_entry *e = kv->buckets[bucket(kv, key, section)]; e; e = e->hnext)
        if (e->key.lo == key.lo && e->key.hi == key.hi && e->section == section)
            return e;
    return NULL;
}

static void lru_unlink(td_kv *kv, kv_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        kv->lru_head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        kv->lru_tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_append(td_kv *kv, kv_entry *e)
{
    e->prev = kv->lru_tail;
    e->next = NULL;
    if (kv->lru_tail)
        kv->lru_tail->next = e;
    else
        kv->lru_head = e;
    kv->lru_tail = e;
}

void kv_touch(td_kv *kv, kv_entry *e)
{
    lru_unlink(kv, e);
    lru_append(kv, e);
    kv_evict_use(kv, e);
}

static void grow(td_kv *kv)
{
    size_t n = kv->n_buckets * 2;
    kv_entry **b = calloc(n, sizeof(*b));
    if (!b)
        return;   /* longer chains, still correct */
    kv_entry **old = kv->buckets;
    size_t old_n = kv->n_buckets;
    kv->buckets = b;
    kv->n_buckets = n;
    for (size_t i = 0; i < old_n; i++)
        for (kv_entry *e = old[i], *next; e; e = next) {
            next = e->hnext;
            size_t k = bucket(kv, e->key, e->section);
            e->hnext = b[k];
            b[k] = e;
        }
    free(old);
}

void kv_index_insert(td_kv *kv, kv_entry *e)
{
    if (kv->n_entries >= kv->n_buckets)
        grow(kv);
    size_t k = bucket(kv, e->key, e->section);
    e->hnext = kv->buckets[k];
    kv->buckets[k] = e;
    lru_append(kv, e);
    kv->n_entries++;
    if (e->pinned)
        kv->n_pinned++;
    kv_evict_insert(kv, e);
}

void kv_index_remove(td_kv *kv, kv_entry *e)
{
    kv_entry **p = &kv->buckets[bucket(kv, e->key, e->section)];
    while (*p != e)
        p = &(*p)->hnext;
    *p = e->hnext;
    lru_unlink(kv, e);
    kv_evict_remove(kv, e);
    for (uint32_t i = 0; i < e->n_ext; i++)
        kv_space_release(kv, e->ext[i]);
    kv->n_entries--;
    if (e->pinned)
        kv->n_pinned--;
    free(e->ext);
    free(e);
}

void kv_set_pinned(td_kv *kv, kv_entry *e, uint32_t pinned)
{
    if (e->pinned == pinned)
        return;
    e->pinned = pinned;
    if (pinned)
        kv->n_pinned++;
    else
        kv->n_pinned--;
    kv_evict_sync(kv, e, !pinned);
}

uint32_t kv_blocks_of(const td_kv *kv, uint64_t value_len)
{
    uint64_t p = kv->g.block_bytes - KV_BLOCK_HDR;
    return value_len == 0 ? 1 : (uint32_t)((value_len + p - 1) / p);
}

uint64_t kv_value_pages(const td_kv *kv, uint64_t value_len)
{
    uint64_t p = kv->g.block_bytes - KV_BLOCK_HDR, full = value_len / p, rest = value_len % p;
    if (full > kv->cap_pages)
        return UINT64_MAX;   /* more than the store holds; no overflow below */
    uint64_t pages = full * (kv->g.block_bytes / KV_PAGE);
    if (rest || value_len == 0)
        pages += (KV_BLOCK_HDR + rest + KV_PAGE - 1) / KV_PAGE;
    return pages;
}

uint32_t kv_block_pages(const td_kv *kv, uint64_t value_len, uint32_t index)
{
    uint64_t p = kv->g.block_bytes - KV_BLOCK_HDR, off = (uint64_t)index * p;
    uint64_t plen = value_len - off < p ? value_len - off : p;
    return (uint32_t)((KV_BLOCK_HDR + plen + KV_PAGE - 1) / KV_PAGE);
}

/* ---- open / close ---- */

static td_err open_dir(td_kv *kv, const td_kv_opts *o, char *err, size_t errlen)
{
    if (o->create && !o->read_only && mkdir(o->dir, 0755) != 0 && errno != EEXIST)
        return td_errf(err, errlen, errno == ENOSPC ? TD_ENOSPC : TD_EIO,
                       "kvstore: create directory %s: %s", o->dir, strerror(errno));
    kv->dir_fd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (kv->dir_fd < 0 && errno == ENOENT)
        return td_errf(err, errlen, TD_ENOENT, "kvstore: no store in %s (no such directory)", o->dir);
    if (kv->dir_fd < 0)
        return td_errf(err, errlen, TD_EIO, "kvstore: open %s: %s", o->dir, strerror(errno));
    /* One writer, or any number of read-only inspectors, per store; a peer
     * reads while the writer runs, so it takes no lock. */
    if (o->peer)
        return TD_OK;
    kv->lock_fd = openat(kv->dir_fd, "lock", o->read_only ? O_RDONLY | O_CLOEXEC
                                                         : O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (kv->lock_fd < 0 && !(o->read_only && errno == ENOENT))
        return td_errf(err, errlen, TD_EIO, "kvstore: %s/lock: %s", o->dir, strerror(errno));
    if (kv->lock_fd >= 0 && flock(kv->lock_fd, (o->read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0)
        return td_errf(err, errlen, errno == EWOULDBLOCK ? TD_EBUSY : TD_EIO,
                       "kvstore: %s is in use by another process (%s)", o->dir, strerror(errno));
    return TD_OK;
}

td_err td_kv_open(td_kv **out, const td_kv_opts *o, char *err, size_t errlen)
{
    *out = NULL;
    if (!o || !o->dir || !*o->dir)
        return td_errf(err, errlen, TD_EINVAL, "kvstore: no directory given");
    uint32_t depth = o->queue_depth ? o->queue_depth : 16;
    if (depth > 4096)
        return td_errf(err, errlen, TD_EINVAL, "kvstore: queue_depth %u > 4096", depth);
    if (o->eviction > TD_KV_EVICT_COST)
        return td_errf(err, errlen, TD_EINVAL, "kvstore: eviction policy %d unknown", (int)o->eviction);
    td_kv *kv = calloc(1, sizeof(*kv));
    if (!kv)
        return td_errf(err, errlen, TD_ENOMEM, "kvstore: out of memory");
    kv->dir_fd = kv->lock_fd = kv->log_fd = -1;
    kv->read_only = o->read_only || o->peer;
    kv->direct_io = 1;
    kv->checkpoint_every = o->checkpoint_every ? o->checkpoint_every : 1024;
    kv->n_buckets = 1024;
    kv_evict_init(kv, o);
    kv->dir = strdup(o->dir);
    kv->buckets = calloc(kv->n_buckets, sizeof(*kv->buckets));
    td_err r;
    if (!kv->dir || !kv->buckets) {
        r = td_errf(err, errlen, TD_ENOMEM, "kvstore: out of memory");
        goto fail;
    }
    if ((r = open_dir(kv, o, err, errlen)))
        goto fail;
    kv_manifest_seen(kv, kv->seen);  /* before reading: a change during it shows as stale */
    if ((r = kv_manifest_recover(kv, o, err, errlen)))
        goto fail;
    if ((r = kv_io_init(kv, depth, !o->no_register, err, errlen)))
        goto fail;
    if (kv->st.torn_bytes || kv->st.dropped_records)
        td_log(TD_LOG_WARN, "kvstore: %s: recovery cut %llu bytes of torn log, dropped %llu records",
               kv->dir, (unsigned long long)kv->st.torn_bytes,
               (unsigned long long)kv->st.dropped_records);
    *out = kv;
    return TD_OK;
fail:
    kv->read_only = 1;   /* no checkpoint of a half-open store */
    td_kv_close(kv);
    return r;
}

void td_kv_close(td_kv *kv)
{
    if (!kv)
        return;
    if (!kv->read_only && kv->log_fd >= 0)
        kv_checkpoint(kv, NULL, 0);   /* best effort: the log is as good */
    kv_io_fini(kv);
    while (kv->lru_head)
        kv_index_remove(kv, kv->lru_head);
    kv_evict_fini(kv);
    kv_space_fini(kv);
    if (kv->log_fd >= 0)
        close(kv->log_fd);
    if (kv->lock_fd >= 0)
        close(kv->lock_fd);
    if (kv->dir_fd >= 0)
        close(kv->dir_fd);
    free(kv->buckets);
    free(kv->locs);
    free(kv->rec_buf);
    free(kv->dir);
    free(kv);
}

/* ---- reads ---- */

/* A corrupt block: count, log, and never serve the entry again (the
 * caller recomputes). */
static void corrupt(td_kv *kv, kv_entry *e, const char *msg)
{
    kv->st.checksum_failures++;
    td_log(TD_LOG_WARN, "%s; entry dropped", msg);
    if (!kv->read_only)
        kv_drop(kv, e, NULL, 0);
    else
        kv_index_remove(kv, e);   /* from this open's view only */
}

static td_err read_entry(td_kv *kv, kv_entry *e, void *buf, char *err, size_t errlen)
{
    char msg[512];
    size_t bad;
    const kv_entry *one = e;
    td_err r = kv_io_read(kv, &one, &buf, 1, NULL, NULL, NULL, &bad, msg, sizeof(msg));
    if (r == TD_ECORRUPT)
        corrupt(kv, e, msg);
    return r ? td_errf(err, errlen, r, "%s", msg) : TD_OK;
}

/* td_kv_get_many, and td_kv_get_progress when progress is set (n == 1). */
static td_err get_run(td_kv *kv, td_kv_get_item *items, size_t n, kv_ready_fn ready,
                      kv_progress_fn progress, void *arg, char *err, size_t errlen)
{
    kv_entry **ents = calloc(n ? n : 1, sizeof(*ents));
    void **out = calloc(n ? n : 1, sizeof(*out));
    if (!ents || !out) {
        free(ents);
        free(out);
        return td_errf(err, errlen, TD_ENOMEM, "kvstore: read of %zu values", n);
    }
    td_err r = TD_OK;
    for (size_t i = 0; i < n && !r; i++) {
        ents[i] = kv_find(kv, items[i].key, items[i].section);
        items[i].len = ents[i] ? ents[i]->value_len : 0;
        out[i] = items[i].buf;
        if (!ents[i])
            r = td_errf(err, errlen, TD_ENOENT, "kvstore: no entry for item %zu (section %u)", i,
                        items[i].section);
        else if (items[i].cap < ents[i]->value_len)
            r = td_errf(err, errlen, TD_ERANGE, "kvstore: item %zu: value of %llu bytes, buffer of %zu",
                        i, (unsigned long long)ents[i]->value_len, items[i].cap);
    }
    if (!r) {
        char msg[512];
        size_t bad = SIZE_MAX;
        r = kv_io_read(kv, (const kv_entry *const *)ents, out, n, ready, progress, arg, &bad,
                       msg, sizeof(msg));
        if (r == TD_ECORRUPT && bad < n)
            corrupt(kv, ents[bad], msg);   /* ents[bad] is freed: not touched below */
        if (r)
            td_errf(err, errlen, r, "%s", msg);
    }
    for (size_t i = 0; i < n && !r; i++) {
        kv_touch(kv, ents[i]);
        kv->st.gets++;
        kv->st.get_bytes += items[i].len;
    }
    free(ents);
    free(out);
    return r;
}

td_err td_kv_get_many(td_kv *kv, td_kv_get_item *items, size_t n,
                      void (*ready)(size_t item, void *arg), void *arg, char *err, size_t errlen)
{
    return get_run(kv, items, n, ready, NULL, arg, err, errlen);
}

td_err td_kv_get_progress(td_kv *kv, td_kv_key key, uint32_t section, void *buf, size_t cap,
                          size_t *len, void (*progress)(void *arg, size_t k), void *arg,
                          char *err, size_t errlen)
{
    td_kv_get_item it = {.key = key, .section = section, .buf = buf, .cap = cap};
    td_err r = get_run(kv, &it, 1, NULL, progress, arg, err, errlen);
    *len = it.len;
    return r;
}

td_err td_kv_get(td_kv *kv, td_kv_key key, uint32_t section, void *buf, size_t cap,
                 size_t *len, char *err, size_t errlen)
{
    return td_kv_get_progress(kv, key, section, buf, cap, len, NULL, NULL, err, errlen);
}

void kv_info(const td_kv *kv, const kv_entry *e, td_kv_entry_info *i)
{
    *i = (td_kv_entry_info){.key = e->key, .section = e->section, .pinned = (int)e->pinned,
                            .tokens = e->tokens, .value_bytes = e->value_len, .seq = e->seq,
                            .blocks = kv_blocks_of(kv, e->value_len)};
}

td_err td_kv_stat_entry(td_kv *kv, td_kv_key key, uint32_t section, td_kv_entry_info *info)
{
    kv_entry *e = kv_find(kv, key, section);
    if (!e)
        return TD_ENOENT;
    kv_info(kv, e, info);
    return TD_OK;
}

td_err td_kv_longest_prefix(td_kv *kv, const int32_t *tokens, size_t n, uint32_t section,
                            uint64_t *tokens_out, td_kv_key *key_out)
{
    uint32_t bt = kv->g.block_tokens;
    size_t blocks = n / bt;
    *tokens_out = 0;
    memset(key_out, 0, sizeof(*key_out));
    td_kv_key *keys = blocks ? malloc(blocks * sizeof(*keys)) : NULL;
    if (blocks && !keys)
        return TD_ENOMEM;
    td_kv_chain(kv->g.fingerprint, bt, tokens, n, keys, blocks);
    /* Not the first gap: a session may have stored only some boundaries. */
    size_t best = 0;
    kv_entry *hit = NULL;
    for (size_t i = blocks; i-- > 0;) {
        kv_entry *e = kv_find(kv, keys[i], section);
        if (e) {
            best = i + 1;
            hit = e;
            *key_out = keys[i];
            break;
        }
    }
    free(keys);
    if (hit)
        kv_touch(kv, hit);
    kv->st.hit_blocks += best;
    kv->st.miss_blocks += blocks - best;
    kv->st.hit_tokens += best * bt;
    kv->st.miss_tokens += n - best * bt;
    *tokens_out = best * bt;
    return TD_OK;
}

/* ---- del, pin, stats, listing, verify, gc ---- */

td_err td_kv_del(td_kv *kv, td_kv_key key, uint32_t section, char *err, size_t errlen)
{
    kv_entry *e = kv_find(kv, key, section);
    if (!e)
        return td_errf(err, errlen, TD_ENOENT, "kvstore: no entry for that key and section %u", section);
    return kv_drop(kv, e, err, errlen);
}

td_err td_kv_pin(td_kv *kv, td_kv_key key, uint32_t section, int pinned, char *err, size_t errlen)
{
    kv_entry *e = kv_find(kv, key, section);
    if (!e)
        return td_errf(err, errlen, TD_ENOENT, "kvstore: no entry for that key and section %u", section);
    uint32_t p = pinned ? 1 : 0;
    if (e->pinned == p)
        return TD_OK;
    kv_rec r = {.type = KV_REC_PIN, .key = key, .section = section, .pinned = p};
    td_err x = kv_log_append(kv, &r, NULL, 1, err, errlen);
    if (!x)
        kv_set_pinned(kv, e, p);
    return x;
}

void td_kv_stats_get(const td_kv *kv, td_kv_stats *st)
{
    *st = kv->st;
    st->fingerprint = kv->g.fingerprint;
    st->block_tokens = kv->g.block_tokens;
    st->block_bytes = kv->g.block_bytes;
    st->segment_bytes = kv->g.segment_bytes;
    st->capacity_bytes = kv->cap_pages * KV_PAGE;
    st->bytes_used = kv->used_pages * KV_PAGE;
    st->bytes_free = st->capacity_bytes - st->bytes_used;
    st->entries = kv->n_entries;
    st->pinned = kv->n_pinned;
    st->buffers_registered = kv->io.bufs_registered;
    st->files_registered = kv->io.files_registered;
    st->direct_io = kv->direct_io;
    st->eviction = kv->policy;
    st->cost_knee_tokens = (uint32_t)kv->knee;
}

void td_kv_foreach(td_kv *kv, int (*fn)(const td_kv_entry_info *, void *), void *arg)
{
    for (kv_entry *e = kv->lru_head; e; e = e->next) {
        td_kv_entry_info i;
        kv_info(kv, e, &i);
        if (fn(&i, arg))
            return;
    }
}

td_err td_kv_verify(td_kv *kv, uint64_t *ok, uint64_t *bad, char *err, size_t errlen)
{
    *ok = *bad = 0;
    uint8_t *buf = NULL;
    size_t cap = 0;
    td_err first = TD_OK;
    for (kv_entry *e = kv->lru_head, *next; e; e = next) {
        next = e->next;   /* read_entry may drop e */
        if (e->value_len > cap) {
            free(buf);
            cap = e->value_len;
            buf = malloc(cap);
            if (!buf) {
                cap = 0;
                return td_errf(err, errlen, TD_ENOMEM, "kvstore: %llu-byte verify buffer",
                               (unsigned long long)e->value_len);
            }
        }
        char msg[512];
        td_err r = read_entry(kv, e, buf, msg, sizeof(msg));
        if (r == TD_OK) {
            (*ok)++;
        } else {
            (*bad)++;
            if (!first)
                first = td_errf(err, errlen, r, "%s", msg);
        }
    }
    free(buf);
    return first;
}

int td_kv_stale(const td_kv *kv)
{
    kv_file_id now[2];
    kv_manifest_seen(kv, now);
    return memcmp(now, kv->seen, sizeof now) != 0;
}

td_err td_kv_gc(td_kv *kv, char *err, size_t errlen)
{
    if (kv->read_only)
        return td_errf(err, errlen, TD_EINVAL, "kvstore: %s is open read-only", kv->dir);
    td_err r = kv_checkpoint(kv, err, errlen);
    return r ? r : kv_space_drop_empty(kv, err, errlen);
}
