/* Segment files and the page allocator.
 *
 * The store's capacity is cut into segment files of segment_bytes, each
 * preallocated with fallocate when first needed (writing into allocated
 * extents is about twice as fast as growing a file: shared/notes/platform.md).
 * Space inside is handed out in 4 KiB pages from one bitmap per segment, so
 * space freed by deletes and evictions is reused in place; the bitmaps are
 * not stored but rebuilt from the manifest at open. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvstore/internal.h"

static void seg_name(char *buf, size_t len, uint32_t i)
{
    snprintf(buf, len, "seg-%06u.dat", i);
}

static int open_seg(td_kv *kv, uint32_t i, int flags)
{
    char name[32];
    seg_name(name, sizeof(name), i);
    int fd = -1;
    if (kv->direct_io) {
        fd = openat(kv->dir_fd, name, flags | O_DIRECT | O_CLOEXEC, 0644);
        if (fd < 0 && errno == EINVAL)
            kv->direct_io = 0;   /* a file system without O_DIRECT (tmpfs) */
    }
    if (fd < 0 && !kv->direct_io)
        fd = openat(kv->dir_fd, name, flags | O_CLOEXEC, 0644);
    return fd;
}

static int seg_map(td_kv *kv, kv_seg *s)
{
    if (!s->map)
        s->map = calloc((kv->seg_pages + 63) / 64, sizeof(uint64_t));
    return s->map ? 0 : -1;
}

td_err kv_space_init(td_kv *kv, char *err, size_t errlen)
{
    kv->n_segs = (uint32_t)(kv->g.capacity_bytes / kv->g.segment_bytes);
    kv->seg_pages = (uint32_t)(kv->g.segment_bytes / KV_PAGE);
    kv->cap_pages = (uint64_t)kv->n_segs * kv->seg_pages;
    kv->segs = calloc(kv->n_segs, sizeof(kv_seg));
    if (!kv->segs)
        return td_errf(err, errlen, TD_ENOMEM, "kvstore: segment table");
    for (uint32_t i = 0; i < kv->n_segs; i++) {
        kv_seg *s = &kv->segs[i];
        s->fd = open_seg(kv, i, kv->read_only ? O_RDONLY : O_RDWR);
        if (s->fd < 0 && errno != ENOENT) {
            char name[32];
            seg_name(name, sizeof(name), i);
            return td_errf(err, errlen, TD_EIO, "kvstore: %s/%s: %s", kv->dir, name, strerror(errno));
        }
        if (s->fd < 0)
            continue;
        kv->st.segments++;
        /* A crash while a segment was being created can leave it short:
         * finish the preallocation (blocks past the end would read as
         * truncated, and writes there extend the file slowly). */
        struct stat sb;
        if (!kv->read_only && fstat(s->fd, &sb) == 0 && (uint64_t)sb.st_size < kv->g.segment_bytes &&
            fallocate(s->fd, 0, 0, (off_t)kv->g.segment_bytes) == 0)
            fsync(s->fd);
    }
    return TD_OK;
}

void kv_space_fini(td_kv *kv)
{
    for (uint32_t i = 0; kv->segs && i < kv->n_segs; i++) {
        if (kv->segs[i].fd >= 0)
            close(kv->segs[i].fd);
        free(kv->segs[i].map);
    }
    free(kv->segs);
    kv->segs = NULL;
}

static int bit(const uint64_t *m, uint32_t p) { return (int)(m[p / 64] >> (p % 64)) & 1; }

int kv_space_claim(td_kv *kv, kv_ext x)
{
    if (x.seg >= kv->n_segs || x.pages == 0 || x.page >= kv->seg_pages ||
        x.pages > kv->seg_pages - x.page)
        return -1;
    kv_seg *s = &kv->segs[x.seg];
    if (seg_map(kv, s))
        return -1;
    for (uint32_t p = x.page; p < x.page + x.pages; p++)
        if (bit(s->map, p))
            return -1;
    for (uint32_t p = x.page; p < x.page + x.pages; p++)
        s->map[p / 64] |= 1ull << (p % 64);
    s->used += x.pages;
    kv->used_pages += x.pages;
    return 0;
}

void kv_space_release(td_kv *kv, kv_ext x)
{
    kv_seg *s = &kv->segs[x.seg];
    for (uint32_t p = x.page; p < x.page + x.pages; p++)
        s->map[p / 64] &= ~(1ull << (p % 64));
    s->used -= x.pages;
    kv->used_pages -= x.pages;
}

/* First run of `pages` free pages at or after `from` (wrapping); -1 if none. */
static int64_t find_run(const td_kv *kv, const kv_seg *s, uint32_t pages, uint32_t from)
{
    uint32_t n = kv->seg_pages;
    if (n - s->used < pages)
        return -1;
    for (int pass = 0; pass < 2; pass++) {
        uint32_t p = pass ? 0 : from, end = pass ? from + pages : n;
        if (end > n)
            end = n;
        uint32_t run = 0;
        while (p < end) {
            if (run == 0 && p % 64 == 0 && s->map[p / 64] == ~0ull) {
                p += 64;
                continue;
            }
            if (bit(s->map, p)) {
                run = 0;
            } else if (++run == pages) {
                return (int64_t)(p + 1 - pages);
            }
            p++;
        }
    }
    return -1;
}

static td_err create_seg(td_kv *kv, uint32_t i, char *err, size_t errlen)
{
    char name[32];
    seg_name(name, sizeof(name), i);
    int fd = open_seg(kv, i, O_RDWR | O_CREAT);
    if (fd < 0)
        return td_errf(err, errlen, errno == ENOSPC ? TD_ENOSPC : TD_EIO,
                       "kvstore: create %s/%s: %s", kv->dir, name, strerror(errno));
    int rc = fallocate(fd, 0, 0, (off_t)kv->g.segment_bytes);
    if (rc != 0 && errno == EOPNOTSUPP)
        rc = ftruncate(fd, (off_t)kv->g.segment_bytes);
    /* The file and its directory entry must be durable before a log record
     * can point into it. */
    if (rc == 0)
        rc = fsync(fd);
    if (rc == 0)
        rc = fsync(kv->dir_fd);
    if (rc != 0) {
        int e = errno;
        close(fd);
        unlinkat(kv->dir_fd, name, 0);
        return td_errf(err, errlen, e == ENOSPC ? TD_ENOSPC : TD_EIO,
                       "kvstore: preallocate %s/%s (%llu bytes): %s", kv->dir, name,
                       (unsigned long long)kv->g.segment_bytes, strerror(e));
    }
    kv->segs[i].fd = fd;
    kv->st.segments++;
    kv_io_file_set(kv, i);
    return TD_OK;
}

td_err kv_space_alloc(td_kv *kv, uint32_t pages, kv_ext *out, char *err, size_t errlen)
{
    /* Existing segments first (next fit from the last allocation), so a new
     * file is preallocated only when the others are full. */
    for (int create = 0; create < 2; create++) {
        for (uint32_t k = 0; k < kv->n_segs; k++) {
            uint32_t i = (kv->hint_seg + k) % kv->n_segs;
            kv_seg *s = &kv->segs[i];
            if ((s->fd >= 0) == create)
                continue;
            if (create) {
                td_err e = create_seg(kv, i, err, errlen);
                if (e)
                    return e;
            }
            if (seg_map(kv, s))
                return td_errf(err, errlen, TD_ENOMEM, "kvstore: segment bitmap");
            int64_t p = find_run(kv, s, pages, i == kv->hint_seg ? kv->hint_page : 0);
            if (p < 0)
                continue;
            *out = (kv_ext){i, (uint32_t)p, pages};
            if (kv_space_claim(kv, *out))
                return td_errf(err, errlen, TD_EIO, "kvstore: allocator bitmap inconsistent");
            kv->hint_seg = i;
            kv->hint_page = (uint32_t)p + pages;
            if (kv->hint_page >= kv->seg_pages)
                kv->hint_page = 0;
            return TD_OK;
        }
    }
    return td_errf(err, errlen, TD_ENOSPC, "kvstore: no free run of %u pages", pages);
}

td_err kv_space_drop_empty(td_kv *kv, char *err, size_t errlen)
{
    for (uint32_t i = 0; i < kv->n_segs; i++) {
        kv_seg *s = &kv->segs[i];
        if (s->fd < 0 || s->used)
            continue;
        char name[32];
        seg_name(name, sizeof(name), i);
        if (unlinkat(kv->dir_fd, name, 0) != 0)
            return td_errf(err, errlen, TD_EIO, "kvstore: remove %s/%s: %s", kv->dir, name,
                           strerror(errno));
        close(s->fd);
        s->fd = -1;
        kv->st.segments--;
        kv_io_file_set(kv, i);
    }
    if (fsync(kv->dir_fd) != 0)
        return td_errf(err, errlen, TD_EIO, "kvstore: fsync %s: %s", kv->dir, strerror(errno));
    return TD_OK;
}
