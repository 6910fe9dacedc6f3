/* Block I/O with io_uring.
 *
 * A fixed pool of queue_depth staging slots, block_bytes each and 4 KiB
 * aligned for O_DIRECT, is allocated at open and registered with the ring
 * when RLIMIT_MEMLOCK allows (otherwise plain reads and writes from the same
 * slots). A value of many blocks keeps every slot busy: fill a free slot,
 * queue it, reap completions in batches, requeue short transfers and
 * -EAGAIN (io_uring-cp.c's loop). Nothing is allocated per block. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "kvstore/internal.h"

td_err kv_io_init(td_kv *kv, uint32_t depth, int try_register, char *err, size_t errlen)
{
    kv_io *io = &kv->io;
    io->depth = depth;
    int rc = io_uring_queue_init(depth, &io->ring, 0);
    if (rc < 0)
        return td_errf(err, errlen, TD_EIO, "kvstore: io_uring_queue_init(%u): %s", depth,
                       strerror(-rc));
    io->ring_ok = 1;
    size_t bb = kv->g.block_bytes;
    if (posix_memalign((void **)&io->pool, KV_PAGE, bb * depth) != 0)
        return td_errf(err, errlen, TD_ENOMEM, "kvstore: staging pool of %u x %zu bytes", depth, bb);
    io->slots = calloc(depth, sizeof(kv_slot));
    if (!io->slots)
        return td_errf(err, errlen, TD_ENOMEM, "kvstore: slots");
    for (uint32_t i = 0; i < depth; i++)
        io->slots[i].buf = io->pool + bb * i;
    if (!try_register)
        return TD_OK;
    /* Registered memory counts against RLIMIT_MEMLOCK; failing here only
     * costs the per-I/O page pinning that registration saves. */
    struct iovec *iov = calloc(depth, sizeof(*iov));
    if (iov) {
        for (uint32_t i = 0; i < depth; i++)
            iov[i] = (struct iovec){io->slots[i].buf, bb};
        io->bufs_registered = io_uring_register_buffers(&io->ring, iov, depth) == 0;
        free(iov);
    }
    if (io_uring_register_files_sparse(&io->ring, kv->n_segs) == 0) {
        io->files_registered = 1;
        for (uint32_t i = 0; i < kv->n_segs && io->files_registered; i++)
            if (kv->segs[i].fd >= 0)
                kv_io_file_set(kv, i);
    }
    return TD_OK;
}

void kv_io_fini(td_kv *kv)
{
    kv_io *io = &kv->io;
    if (io->ring_ok)
        io_uring_queue_exit(&io->ring);   /* drops registrations too */
    free(io->slots);
    free(io->pool);
    memset(io, 0, sizeof(*io));
}

void kv_io_file_set(td_kv *kv, uint32_t seg)
{
    kv_io *io = &kv->io;
    if (!io->files_registered)
        return;
    int fd = kv->segs[seg].fd;
    if (io_uring_register_files_update(&io->ring, seg, &fd, 1) != 1) {
        /* Fall back to plain descriptors for every segment. */
        io_uring_unregister_files(&io->ring);
        io->files_registered = 0;
    }
}

td_err kv_locs(td_kv *kv, const kv_entry *e, size_t base, char *err, size_t errlen)
{
    uint32_t n = kv_blocks_of(kv, e->value_len);
    if (base + n > kv->locs_cap) {
        kv_loc *l = realloc(kv->locs, (base + n) * sizeof(*l));
        if (!l)
            return td_errf(err, errlen, TD_ENOMEM, "kvstore: %zu block locations", base + n);
        kv->locs = l;
        kv->locs_cap = base + n;
    }
    uint32_t x = 0, used = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t pages = kv_block_pages(kv, e->value_len, i);
        if (x < e->n_ext && used == e->ext[x].pages) {
            x++;
            used = 0;
        }
        if (x >= e->n_ext || e->ext[x].pages - used < pages)
            return td_errf(err, errlen, TD_ECORRUPT,
                           "kvstore: extents of a %llu-byte value do not hold block %u",
                           (unsigned long long)e->value_len, i);
        kv->locs[base + i] = (kv_loc){e->ext[x].seg, e->ext[x].page + used, pages};
        used += pages;
    }
    if (x + 1 != e->n_ext || used != e->ext[x].pages)
        return td_errf(err, errlen, TD_ECORRUPT, "kvstore: extents larger than the value they hold");
    return TD_OK;
}

/* The values one run moves: n entries, their blocks' locations one after
 * the other in kv->locs. */
typedef struct {
    const kv_entry *const *ents;
    const void *const *src;  /* write: n values */
    void *const *dst;        /* read: n buffers */
    uint32_t *left;          /* read: blocks still to arrive, per value */
    kv_ready_fn ready;       /* read: called when a value is complete */
    uint32_t *done_items;    /* read with ready: values complete, not told yet */
    size_t n_done_items;
    kv_progress_fn progress; /* read of one value: its verified prefix grew */
    void *arg;
    /* progress only: one bit per block of the value, set when it is
     * verified and copied; prefix = blocks [0, prefix) all done, reported =
     * the prefix progress last heard of. */
    uint64_t *done;
    uint32_t prefix, reported, n_blocks;
    size_t n, bad;           /* bad: the value a corrupt block belongs to */
    uint32_t payload;        /* value bytes per block */
} xfer;

static void prep(kv_io *io, kv_slot *s, int write, int fd)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);
    if (!sqe) {
        io_uring_submit(&io->ring);
        sqe = io_uring_get_sqe(&io->ring);
    }
    uint32_t idx = (uint32_t)(s - io->slots);
    uint8_t *buf = s->buf + s->done;
    unsigned len = s->len - s->done;
    uint64_t off = s->off + s->done;
    if (io->bufs_registered && write)
        io_uring_prep_write_fixed(sqe, fd, buf, len, off, (int)idx);
    else if (io->bufs_registered)
        io_uring_prep_read_fixed(sqe, fd, buf, len, off, (int)idx);
    else if (write)
        io_uring_prep_write(sqe, fd, buf, len, off);
    else
        io_uring_prep_read(sqe, fd, buf, len, off);
    if (io->files_registered)
        sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, idx);
}

static void fill_write(td_kv *kv, const xfer *x, kv_slot *s)
{
    const kv_entry *e = x->ents[s->item];
    uint64_t off = (uint64_t)s->index * x->payload;
    uint64_t left = e->value_len - off;
    uint32_t plen = left < x->payload ? (uint32_t)left : x->payload;
    kv_block_hdr h = {
        .fingerprint = kv->g.fingerprint, .key = e->key, .section = e->section,
        .index = s->index, .n_blocks = kv_blocks_of(kv, e->value_len),
        .payload_len = plen, .tokens = e->tokens, .seq = e->seq,
        .value_len = e->value_len, .payload_off = off,
    };
    memcpy(s->buf + KV_BLOCK_HDR, (const uint8_t *)x->src[s->item] + off, plen);
    memset(s->buf + KV_BLOCK_HDR + plen, 0, s->len - KV_BLOCK_HDR - plen);
    kv_block_hdr_write(s->buf, &h);
}

/* Checks a block read back against what the manifest says it must be: the
 * checksum proves the block is intact, these fields that it is the block
 * this entry's put wrote (and not an older tenant of the same pages). */
static td_err check_read(td_kv *kv, xfer *x, kv_slot *s, char *err, size_t errlen)
{
    const kv_entry *e = x->ents[s->item];
    kv_block_hdr h;
    char msg[160];
    td_err r = kv_block_hdr_parse(s->buf, s->len, &h, msg, sizeof(msg));
    uint64_t off = (uint64_t)s->index * x->payload;
    uint64_t left = e->value_len - off;
    uint32_t plen = left < x->payload ? (uint32_t)left : x->payload;
    if (!r && (h.fingerprint != kv->g.fingerprint || h.key.lo != e->key.lo ||
               h.key.hi != e->key.hi || h.section != e->section || h.seq != e->seq ||
               h.index != s->index || h.value_len != e->value_len || h.tokens != e->tokens ||
               h.payload_off != off || h.payload_len != plen)) {
        r = TD_ECORRUPT;
        snprintf(msg, sizeof(msg), "block belongs to another value (seq %llu, block %u, fingerprint %016llx)",
                 (unsigned long long)h.seq, h.index, (unsigned long long)h.fingerprint);
    }
    if (r) {
        char hex[33];
        td_kv_key_hex(e->key, hex);
        return td_errf(err, errlen, TD_ECORRUPT, "kvstore: %s/seg-%06u.dat page %llu (key %s section %u block %u): %s",
                       kv->dir, s->seg, (unsigned long long)(s->off / KV_PAGE), hex, e->section,
                       s->index, msg);
    }
    memcpy((uint8_t *)x->dst[s->item] + off, s->buf + KV_BLOCK_HDR, plen);
    if (--x->left[s->item] == 0 && x->ready)
        x->done_items[x->n_done_items++] = s->item;   /* told by report() */
    if (x->done) {
        /* Completions come in any order: the prefix advances over every
         * block already done once the one it waits for arrives. */
        x->done[s->index / 64] |= 1ull << (s->index % 64);
        while (x->prefix < x->n_blocks && (x->done[x->prefix / 64] >> (x->prefix % 64) & 1))
            x->prefix++;
    }
    return TD_OK;
}

/* Tells ready about the values completed since, and progress about a
 * grown prefix. Called with the freed slots already requeued and
 * submitted, so the disk keeps reading while the caller loads what
 * arrived. */
static void tell_ready(xfer *x)
{
    for (size_t i = 0; i < x->n_done_items; i++)
        x->ready(x->done_items[i], x->arg);
    x->n_done_items = 0;
}

static void report(xfer *x)
{
    tell_ready(x);
    if (!x->progress || x->prefix == x->reported)
        return;
    x->reported = x->prefix;
    uint64_t k = (uint64_t)x->prefix * x->payload, len = x->ents[0]->value_len;
    x->progress(x->arg, (size_t)(k < len ? k : len));
}

/* Moves every block of the entries of x between the slots and the disk
 * with up to `depth` in flight, the next value's blocks queued as soon as a
 * slot frees. On error, stops queueing, drains what is in flight and
 * returns the first error. */
static td_err run(td_kv *kv, xfer *x, int write, char *err, size_t errlen)
{
    kv_io *io = &kv->io;
    size_t item = 0, next = 0;   /* cursor: next block to queue, and its index in kv->locs */
    uint32_t blk = 0, inflight = 0;
    td_err first = TD_OK;
    while ((item < x->n && !first) || inflight) {
        for (uint32_t i = 0; i < io->depth && item < x->n && !first; i++) {
            kv_slot *s = &io->slots[i];
            if (s->busy)
                continue;
            const kv_loc *l = &kv->locs[next];
            *s = (kv_slot){.buf = s->buf, .seg = l->seg, .item = (uint32_t)item, .index = blk,
                           .off = (uint64_t)l->page * KV_PAGE, .len = l->pages * KV_PAGE, .busy = 1};
            int fd = kv->segs[l->seg].fd;
            if (fd < 0) {
                first = td_errf(err, errlen, TD_ECORRUPT, "kvstore: %s/seg-%06u.dat is missing",
                                kv->dir, l->seg);
                x->bad = item;
                s->busy = 0;
                break;
            }
            if (write) {
                fill_write(kv, x, s);
                kv->segs[l->seg].dirty = 1;
            }
            prep(io, s, write, io->files_registered ? (int)l->seg : fd);
            next++;
            inflight++;
            if (++blk == kv_blocks_of(kv, x->ents[item]->value_len)) {
                item++;
                blk = 0;
            }
        }
        if (!inflight)
            break;
        if (((x->progress && x->prefix != x->reported) || x->n_done_items) && !first) {
            io_uring_submit(&io->ring);   /* an error shows again just below */
            report(x);
        }
        int rc = io_uring_submit_and_wait(&io->ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN) {
            /* The ring itself failed: nothing more will complete. */
            return td_errf(err, errlen, TD_EIO, "kvstore: io_uring_submit: %s", strerror(-rc));
        }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&io->ring, head, cqe) {
            seen++;
            kv_slot *s = &io->slots[io_uring_cqe_get_data64(cqe)];
            int res = cqe->res;
            if (res == -EAGAIN || res == -EINTR) {
                prep(io, s, write, io->files_registered ? (int)s->seg : kv->segs[s->seg].fd);
                continue;
            }
            if (res > 0 && s->done + (uint32_t)res < s->len) {
                s->done += (uint32_t)res;   /* short transfer: queue the rest */
                prep(io, s, write, io->files_registered ? (int)s->seg : kv->segs[s->seg].fd);
                continue;
            }
            s->busy = 0;
            inflight--;
            if (first)
                continue;
            if (res < 0)
                first = td_errf(err, errlen, -res == ENOSPC ? TD_ENOSPC : TD_EIO,
                                "kvstore: %s %s/seg-%06u.dat at %llu: %s", write ? "write" : "read",
                                kv->dir, s->seg, (unsigned long long)s->off, strerror(-res));
            else if (res == 0)
                first = write ? td_errf(err, errlen, TD_EIO, "kvstore: write returned 0")
                              : td_errf(err, errlen, TD_ECORRUPT,
                                        "kvstore: %s/seg-%06u.dat truncated (block at %llu)",
                                        kv->dir, s->seg, (unsigned long long)s->off);
            else if (!write)
                first = check_read(kv, x, s, err, errlen);
            if (first == TD_ECORRUPT)
                x->bad = s->item;
        }
        io_uring_cq_advance(&io->ring, seen);
    }
    if (!first)
        report(x);   /* the last blocks: k == the value's length */
    else
        tell_ready(x);   /* the values completed before the error */
    return first;
}

td_err kv_io_write(td_kv *kv, const kv_entry *const *ents, const void *const *values, size_t n,
                   char *err, size_t errlen)
{
    size_t base = 0;
    for (size_t i = 0; i < n; i++) {
        td_err r = kv_locs(kv, ents[i], base, err, errlen);
        if (r)
            return r;
        base += kv_blocks_of(kv, ents[i]->value_len);
    }
    xfer x = {.ents = ents, .src = values, .n = n, .payload = kv->g.block_bytes - KV_BLOCK_HDR};
    return run(kv, &x, 1, err, errlen);
}

td_err kv_io_sync(td_kv *kv, char *err, size_t errlen)
{
    /* O_DIRECT bypasses the page cache, not the device cache nor the
     * metadata of extents written for the first time: fdatasync each
     * segment touched before a log record may reference the blocks. */
    td_err r = TD_OK;
    for (uint32_t i = 0; i < kv->n_segs; i++) {
        kv_seg *s = &kv->segs[i];
        if (!s->dirty)
            continue;
        s->dirty = 0;
        if (!r && fdatasync(s->fd) != 0)
            r = td_errf(err, errlen, errno == ENOSPC ? TD_ENOSPC : TD_EIO,
                        "kvstore: fdatasync %s/seg-%06u.dat: %s", kv->dir, i, strerror(errno));
    }
    return r;
}

td_err kv_io_read(td_kv *kv, const kv_entry *const *ents, void *const *out, size_t n,
                  kv_ready_fn ready, kv_progress_fn progress, void *arg, size_t *bad,
                  char *err, size_t errlen)
{
    *bad = SIZE_MAX;
    uint32_t nb = n == 1 && progress ? kv_blocks_of(kv, ents[0]->value_len) : 0;
    uint32_t *left = calloc(n, sizeof(*left));
    uint64_t *done = nb ? calloc((nb + 63) / 64, sizeof(*done)) : NULL;
    uint32_t *done_items = ready ? calloc(n ? n : 1, sizeof(*done_items)) : NULL;
    if (!left || (nb && !done) || (ready && !done_items)) {
        free(left);
        free(done);
        free(done_items);
        return td_errf(err, errlen, TD_ENOMEM, "kvstore: read of %zu values", n);
    }
    size_t base = 0;
    td_err r = TD_OK;
    for (size_t i = 0; i < n && !r; i++) {
        r = kv_locs(kv, ents[i], base, err, errlen);
        if (r)
            *bad = i;
        left[i] = kv_blocks_of(kv, ents[i]->value_len);
        base += left[i];
    }
    xfer x = {.ents = ents, .dst = out, .left = left, .ready = ready, .done_items = done_items,
              .progress = nb ? progress : NULL, .arg = arg, .done = done, .n_blocks = nb,
              .n = n, .bad = SIZE_MAX, .payload = kv->g.block_bytes - KV_BLOCK_HDR};
    if (!r) {
        r = run(kv, &x, 0, err, errlen);
        *bad = x.bad;
    }
    free(done);
    free(done_items);
    free(left);
    return r;
}
