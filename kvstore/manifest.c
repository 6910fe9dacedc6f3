/* The manifest: which blocks hold which entry.
 *
 * manifest.log is append-only: a header with the store's geometry, then
 * checksummed records (PUT, DEL, PIN), each made durable (fdatasync) before
 * the call that wrote it returns. manifest.ckpt is the whole index as PUT
 * records and their eviction priorities, written to a temporary file,
 * fsync'd, renamed over the old one and the directory fsync'd; then the log
 * is emptied. Records carry a log
 * sequence number (lsn) and the checkpoint says which lsn it covers up to,
 * so a crash between the rename and the log truncation replays nothing
 * twice. Recovery replays the log up to the first torn or damaged record
 * and cuts the log there. docs/kvstore.md argues why this is crash-safe. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"
#include "kvstore/internal.h"

#define CKPT_NAME "manifest.ckpt"
#define CKPT_TMP "manifest.ckpt.tmp"
#define LOG_NAME "manifest.log"

static td_err sys_err(char *err, size_t errlen, const td_kv *kv, const char *what, const char *name)
{
    int e = errno;
    return td_errf(err, errlen, e == ENOSPC ? TD_ENOSPC : TD_EIO, "kvstore: %s %s/%s: %s", what,
                   kv->dir, name, strerror(e));
}

static int write_all(int fd, const uint8_t *buf, size_t len, off_t off)
{
    while (len) {
        ssize_t n = pwrite(fd, buf, len, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

static uint8_t *rec_space(td_kv *kv, size_t size)
{
    if (size > kv->rec_cap) {
        uint8_t *b = realloc(kv->rec_buf, size);
        if (!b)
            return NULL;
        kv->rec_buf = b;
        kv->rec_cap = size;
    }
    return kv->rec_buf;
}

td_err kv_log_append(td_kv *kv, kv_rec *recs, const kv_ext *const *exts, size_t n,
                     char *err, size_t errlen)
{
    if (kv->read_only)
        return td_errf(err, errlen, TD_EINVAL, "kvstore: %s is open read-only", kv->dir);
    size_t size = 0;
    for (size_t i = 0; i < n; i++)
        size += kv_rec_size(&recs[i]);
    uint8_t *buf = rec_space(kv, size);
    if (!buf)
        return td_errf(err, errlen, TD_ENOMEM, "kvstore: log records of %zu bytes", size);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        recs[i].lsn = kv->next_lsn + i;
        kv_rec_write(buf + off, &recs[i], exts ? exts[i] : NULL);
        off += kv_rec_size(&recs[i]);
    }
    /* One write and one sync for the batch. On failure log_end stays put:
     * the next append overwrites whatever part of this one reached the
     * file. */
    if (write_all(kv->log_fd, buf, size, (off_t)kv->log_end) != 0 || fdatasync(kv->log_fd) != 0)
        return sys_err(err, errlen, kv, "append to", LOG_NAME);
    kv->next_lsn += n;
    kv->log_end += size;
    kv->log_records += n;
    return TD_OK;
}

/* Empties the log: header only. Called right after a checkpoint (whose lsn
 * makes any surviving old record harmless) and at create. */
static td_err log_reset(td_kv *kv, uint64_t keep, char *err, size_t errlen)
{
    if (kv->log_fd < 0) {
        kv->log_fd = openat(kv->dir_fd, LOG_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (kv->log_fd < 0)
            return sys_err(err, errlen, kv, "open", LOG_NAME);
    }
    uint8_t hdr[KV_LOG_HDR];
    kv_log_hdr_write(hdr, &kv->g);
    if (keep < KV_LOG_HDR)
        keep = KV_LOG_HDR;
    if (ftruncate(kv->log_fd, (off_t)keep) != 0 || write_all(kv->log_fd, hdr, sizeof(hdr), 0) != 0 ||
        fdatasync(kv->log_fd) != 0)
        return sys_err(err, errlen, kv, "reset", LOG_NAME);
    kv->log_end = keep;
    return TD_OK;
}

td_err kv_checkpoint(td_kv *kv, char *err, size_t errlen)
{
    if (kv->read_only)
        return TD_OK;
    size_t body = 0;
    uint64_t n = 0;
    for (kv_entry *e = kv->lru_head; e; e = e->next, n++)
        body += kv_rec_size(&(kv_rec){.type = KV_REC_PUT, .n_ext = e->n_ext});
    size_t prio_bytes = kv_prio_size(n);
    body += prio_bytes;
    size_t total = KV_CKPT_HDR + body + 8;
    uint8_t *buf = malloc(total);
    if (!buf)
        return td_errf(err, errlen, TD_ENOMEM, "kvstore: checkpoint of %zu bytes", total);
    kv_geom g = kv->g;
    g.next_lsn = kv->next_lsn;
    g.next_seq = kv->next_seq;
    g.n_records = n;
    g.body_bytes = body;
    g.prio_bytes = prio_bytes;
    kv_ckpt_hdr_write(buf, &g);
    size_t off = KV_CKPT_HDR;
    /* LRU order, least recent first, then the cost policy's state in the
     * same order: reopening keeps either policy's eviction order. */
    uint8_t *row = buf + KV_CKPT_HDR + body - prio_bytes;
    kv_prio_hdr_write(row, &(kv_prio_hdr){.policy = kv->policy, .clock = kv->clock, .rows = n});
    row += KV_PRIO_HDR;
    for (kv_entry *e = kv->lru_head; e; e = e->next, row += KV_PRIO_ROW) {
        kv_rec r = {.type = KV_REC_PUT, .key = e->key, .section = e->section, .pinned = e->pinned,
                    .tokens = e->tokens, .value_len = e->value_len, .seq = e->seq, .n_ext = e->n_ext};
        kv_rec_write(buf + off, &r, e->ext);
        off += kv_rec_size(&r);
        kv_prio_row_write(row, &(kv_prio){.prio = e->prio, .unit = e->unit, .uses = e->uses,
                                           .read = e->read});
    }
    off += prio_bytes;
    uint64_t sum = kv_checksum(buf, off);
    for (int i = 0; i < 8; i++)
        buf[off + i] = (uint8_t)(sum >> (8 * i));
    td_err r = TD_OK;
    int fd = openat(kv->dir_fd, CKPT_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        r = sys_err(err, errlen, kv, "create", CKPT_TMP);
    } else {
        if (write_all(fd, buf, total, 0) != 0 || fsync(fd) != 0)
            r = sys_err(err, errlen, kv, "write", CKPT_TMP);
        close(fd);
        if (!r && renameat(kv->dir_fd, CKPT_TMP, kv->dir_fd, CKPT_NAME) != 0)
            r = sys_err(err, errlen, kv, "rename", CKPT_TMP);
        if (!r && fsync(kv->dir_fd) != 0)
            r = sys_err(err, errlen, kv, "fsync", ".");
        if (r)
            unlinkat(kv->dir_fd, CKPT_TMP, 0);
    }
    free(buf);
    if (!r)
        r = log_reset(kv, 0, err, errlen);
    if (!r)
        kv->log_records = 0;
    return r;
}

static const char *const manifest_names[2] = {CKPT_NAME, LOG_NAME};

void td_kv_manifest_id_at(const char *dir, td_kv_manifest_id *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < 2; i++) {
        char path[4096];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, manifest_names[i]);
        if (stat(path, &sb) == 0) {
            out->ino[i] = (uint64_t)sb.st_ino;
            out->size[i] = (uint64_t)sb.st_size;
            out->mtime_ns[i] = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
        }
    }
}

void td_kv_manifest_id_of(const td_kv *kv, td_kv_manifest_id *out)
{
    for (int i = 0; i < 2; i++) {
        out->ino[i] = kv->seen[i].ino;
        out->size[i] = kv->seen[i].size;
        out->mtime_ns[i] = kv->seen[i].mtime_ns;
    }
}

int td_kv_manifest_id_eq(const td_kv_manifest_id *a, const td_kv_manifest_id *b)
{
    for (int i = 0; i < 2; i++)
        if (a->ino[i] != b->ino[i] || a->size[i] != b->size[i] ||
            a->mtime_ns[i] != b->mtime_ns[i])
            return 0;
    return 1;
}

void kv_manifest_seen(const td_kv *kv, kv_file_id out[2])
{
    for (int i = 0; i < 2; i++) {
        struct stat sb;
        memset(&out[i], 0, sizeof out[i]);
        if (fstatat(kv->dir_fd, manifest_names[i], &sb, 0) == 0) {
            out[i].ino = (uint64_t)sb.st_ino;
            out[i].size = (uint64_t)sb.st_size;
            out[i].mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
        }
    }
}

td_err kv_manifest_create(td_kv *kv, char *err, size_t errlen)
{
    td_err r = kv_space_init(kv, err, errlen);
    return r ? r : kv_checkpoint(kv, err, errlen);
}

/* Applies one record to the index; *added gets the entry a PUT made (NULL
 * if it was dropped), when added is not NULL. */
static td_err apply(td_kv *kv, const kv_rec *r, kv_entry **added, char *err, size_t errlen)
{
    kv_entry *old = kv_find(kv, r->key, r->section);
    if (added)
        *added = NULL;
    if (r->type == KV_REC_DEL) {
        if (old)
            kv_index_remove(kv, old);
        return TD_OK;
    }
    if (r->type == KV_REC_PIN) {
        if (old)
            kv_set_pinned(kv, old, r->pinned);
        return TD_OK;
    }
    if (r->type != KV_REC_PUT)
        return TD_OK;
    uint32_t uses = kv_evict_uses_after(old);
    if (old)
        kv_index_remove(kv, old);
    kv_entry *e = calloc(1, sizeof(*e));
    kv_ext *ext = calloc(r->n_ext, sizeof(*ext));
    if (!e || !ext) {
        free(e);
        free(ext);
        return td_errf(err, errlen, TD_ENOMEM, "kvstore: index entry");
    }
    *e = (kv_entry){.key = r->key, .section = r->section, .pinned = r->pinned,
                    .tokens = r->tokens, .value_len = r->value_len, .seq = r->seq,
                    .n_ext = r->n_ext, .ext = ext, .uses = uses};
    uint32_t claimed = 0;
    uint64_t pages = 0;
    for (; claimed < r->n_ext; claimed++) {
        ext[claimed] = kv_rec_ext(r, claimed);
        if (kv_space_claim(kv, ext[claimed]))
            break;
        pages += ext[claimed].pages;
    }
    char msg[128];
    if (claimed < r->n_ext || pages != kv_value_pages(kv, r->value_len) ||
        kv_locs(kv, e, 0, msg, sizeof(msg))) {
        /* A record that passed its checksum but points outside the store or
         * at pages another entry holds: never serve it. */
        for (uint32_t i = 0; i < claimed && i < r->n_ext; i++)
            kv_space_release(kv, ext[i]);
        free(ext);
        free(e);
        kv->st.dropped_records++;
        return TD_OK;
    }
    if (r->seq >= kv->next_seq)
        kv->next_seq = r->seq + 1;
    kv_evict_batch(kv, &e, 1, NULL, 0);   /* a checkpoint's row replaces it (load_ckpt) */
    kv_index_insert(kv, e);
    if (added)
        *added = e;
    return TD_OK;
}

static td_err load_ckpt(td_kv *kv, const td_kv_opts *o, char *err, size_t errlen)
{
    char *buf;
    size_t len;
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", kv->dir, CKPT_NAME);
    char msg[256];
    td_err r = td_file_read(path, &buf, &len, msg, sizeof(msg));
    if (r == TD_ENOENT) {
        if (!o->create)
            return td_errf(err, errlen, TD_ENOENT, "kvstore: no store in %s (%s missing)", kv->dir,
                           CKPT_NAME);
        kv->g = (kv_geom){.fingerprint = o->fingerprint,
                          .block_tokens = o->block_tokens ? o->block_tokens : 128,
                          .block_bytes = o->block_bytes ? o->block_bytes : 256u << 10,
                          .segment_bytes = o->segment_bytes ? o->segment_bytes : 1ull << 30,
                          .capacity_bytes = o->capacity_bytes ? o->capacity_bytes : 64ull << 30};
        /* A capacity below one segment is the segment: whole pages of it
         * (a capacity given in GiB, 0.004 say, is rarely a multiple of 4096). */
        if (kv->g.capacity_bytes < kv->g.segment_bytes)
            kv->g.segment_bytes = kv->g.capacity_bytes - kv->g.capacity_bytes % KV_PAGE;
        kv->g.capacity_bytes -= kv->g.capacity_bytes % kv->g.segment_bytes;
        if ((r = kv_geom_check(&kv->g, err, errlen)))
            return r;
        if (kv->read_only)
            return td_errf(err, errlen, TD_ENOENT, "kvstore: no store in %s", kv->dir);
        kv->next_lsn = kv->next_seq = 1;
        kv_evict_resolve(kv, TD_KV_EVICT_DEFAULT);   /* before the first checkpoint records it */
        return kv_manifest_create(kv, err, errlen);
    }
    if (r)
        return td_errf(err, errlen, TD_EIO, "kvstore: %s", msg);
    const uint8_t *body;
    r = kv_ckpt_parse((const uint8_t *)buf, len, &kv->g, &body, msg, sizeof(msg));
    if (!r && o->fingerprint && o->fingerprint != kv->g.fingerprint)
        r = td_errf(msg, sizeof(msg), TD_EFORMAT,
                    "model fingerprint %016llx, the store holds state of %016llx",
                    (unsigned long long)o->fingerprint, (unsigned long long)kv->g.fingerprint);
    if (!r)
        r = kv_space_init(kv, msg, sizeof(msg));
    /* The eviction table, if the writer had one; without it the entries
     * start equal, in LRU order (their ticks follow the records' order). */
    size_t recs_len = r ? 0 : kv->g.body_bytes - kv->g.prio_bytes;
    const uint8_t *table = r || !kv->g.prio_bytes ? NULL : body + recs_len;
    kv_prio_hdr ph = {0};
    if (table)
        r = kv_prio_parse(table, kv->g.prio_bytes, kv->g.n_records, &ph, msg, sizeof(msg));
    if (table && !r)
        kv->clock = ph.clock;
    kv_evict_resolve(kv, table ? (td_kv_evict)ph.policy : TD_KV_EVICT_DEFAULT);
    kv->next_lsn = kv->g.next_lsn;
    kv->next_seq = kv->g.next_seq;
    size_t off = 0;
    for (uint64_t i = 0; !r && i < kv->g.n_records; i++) {
        kv_rec rec;
        size_t used;
        kv_entry *e = NULL;
        r = kv_rec_parse(body + off, recs_len - off, &rec, &used, msg, sizeof(msg));
        if (!r && rec.type != KV_REC_PUT)
            r = td_errf(msg, sizeof(msg), TD_ECORRUPT, "checkpoint holds a record of type %d", rec.type);
        if (!r)
            r = apply(kv, &rec, &e, msg, sizeof(msg));
        if (!r && e && table) {
            kv_prio p = kv_prio_row(table, i);
            kv_evict_restore(kv, e, &p);
        }
        off += used;
    }
    free(buf);
    if (r)
        return td_errf(err, errlen, r, "kvstore: %s/%s: %s", kv->dir, CKPT_NAME, msg);
    return TD_OK;
}

td_err kv_manifest_recover(td_kv *kv, const td_kv_opts *o, char *err, size_t errlen)
{
    td_err r = load_ckpt(kv, o, err, errlen);
    if (r || kv->log_fd >= 0)
        return r;   /* error, or a new store (its log is fresh) */
    char path[4096], msg[256];
    snprintf(path, sizeof(path), "%s/%s", kv->dir, LOG_NAME);
    char *buf = NULL;
    size_t len = 0;
    r = td_file_read(path, &buf, &len, msg, sizeof(msg));
    if (r && r != TD_ENOENT)
        return td_errf(err, errlen, TD_EIO, "kvstore: %s", msg);
    kv_geom lg;
    size_t off = 0;
    /* A log whose header is torn was being reset after a checkpoint:
     * nothing in it is newer than the checkpoint. */
    if (!r && !kv_log_hdr_parse((uint8_t *)buf, len, &lg, msg, sizeof(msg))) {
        if (lg.fingerprint != kv->g.fingerprint || lg.block_bytes != kv->g.block_bytes ||
            lg.segment_bytes != kv->g.segment_bytes || lg.capacity_bytes != kv->g.capacity_bytes ||
            lg.block_tokens != kv->g.block_tokens) {
            free(buf);
            return td_errf(err, errlen, TD_ECORRUPT, "kvstore: %s/%s belongs to another store",
                           kv->dir, LOG_NAME);
        }
        off = KV_LOG_HDR;
        uint64_t ckpt_lsn = kv->next_lsn;
        while (off < len) {
            kv_rec rec;
            size_t used;
            if (kv_rec_parse((uint8_t *)buf + off, len - off, &rec, &used, msg, sizeof(msg)))
                break;   /* torn tail: the log ends here */
            if (rec.lsn >= ckpt_lsn) {
                if ((r = apply(kv, &rec, NULL, err, errlen))) {
                    free(buf);
                    return r;
                }
                kv->st.recovered_records++;
                if (rec.lsn >= kv->next_lsn)
                    kv->next_lsn = rec.lsn + 1;
            }
            off += used;
        }
        kv->st.torn_bytes = len - off;
    }
    free(buf);
    r = TD_OK;
    if (kv->read_only)
        return r;
    /* Cut the torn tail so new records follow the last good one. */
    kv->log_fd = openat(kv->dir_fd, LOG_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (kv->log_fd < 0)
        return sys_err(err, errlen, kv, "open", LOG_NAME);
    return log_reset(kv, off, err, errlen);
}
