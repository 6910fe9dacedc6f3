/* Encoding and checked parsing of the kvstore's on-disk structures. Every
 * parser assumes its input is hostile (a torn write, a flipped bit, a file
 * from another build) and names the field that is wrong. */
#include "kvstore/format.h"

#include <endian.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY  /* XXH3_state_t on the stack: no allocation per block */
#include <xxhash.h>

/* Seeded so that an all-zero region never checksums to zero-looking data
 * (sqlite crash9's lesson); magic numbers reject zeros anyway. */
#define KV_SEED 0x7464616b76737431ull

uint64_t kv_checksum(const void *buf, size_t len)
{
    return XXH3_64bits_withSeed(buf, len, KV_SEED);
}

/* Little-endian fields at any alignment. */
static void put32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, sizeof(v));
}

static void put64(uint8_t *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, sizeof(v));
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return le32toh(v);
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return le64toh(v);
}

/* ---- block header ---- */

uint64_t kv_block_sum(const uint8_t *buf, uint32_t payload_len)
{
    XXH3_state_t st;
    /* A stack state must be initialised before a seeded reset, or xxHash
     * may keep a stale derived secret (xxhash.h, XXH3_INITSTATE). */
    XXH3_INITSTATE(&st);
    XXH3_64bits_reset_withSeed(&st, KV_SEED);
    XXH3_64bits_update(&st, buf, KV_BLOCK_HDR - 8);
    XXH3_64bits_update(&st, buf + KV_BLOCK_HDR, payload_len);
    return XXH3_64bits_digest(&st);
}

void kv_block_hdr_write(uint8_t *buf, const kv_block_hdr *h)
{
    memset(buf, 0, KV_BLOCK_HDR);
    put32(buf + 0, KV_BLOCK_MAGIC);
    put32(buf + 4, KV_VERSION | (KV_BLOCK_HDR << 16));
    put64(buf + 8, h->fingerprint);
    put64(buf + 16, h->key.lo);
    put64(buf + 24, h->key.hi);
    put32(buf + 32, h->section);
    put32(buf + 36, h->index);
    put64(buf + 40, 0);              /* token range start: always 0 today */
    put64(buf + 48, h->tokens);
    put64(buf + 56, h->seq);
    put64(buf + 64, h->value_len);
    put64(buf + 72, h->payload_off);
    put32(buf + 80, h->payload_len);
    put32(buf + 84, h->n_blocks);
    put64(buf + 120, kv_block_sum(buf, h->payload_len));
}

td_err kv_block_hdr_parse(const uint8_t *buf, size_t len, kv_block_hdr *h,
                          char *err, size_t errlen)
{
    if (len < KV_BLOCK_HDR)
        return td_errf(err, errlen, TD_ECORRUPT, "block shorter than its header (%zu bytes)", len);
    if (get32(buf) != KV_BLOCK_MAGIC)
        return td_errf(err, errlen, TD_ECORRUPT, "block magic 0x%08x is not TKVB", get32(buf));
    uint32_t ver = get32(buf + 4);
    if ((ver & 0xffff) != KV_VERSION || (ver >> 16) != KV_BLOCK_HDR)
        return td_errf(err, errlen, TD_ECORRUPT, "block version/header size 0x%08x unsupported", ver);
    for (int i = 88; i < 120; i++)
        if (buf[i])
            return td_errf(err, errlen, TD_ECORRUPT, "block header reserved byte %d not zero", i);
    memset(h, 0, sizeof(*h));
    h->fingerprint = get64(buf + 8);
    h->key.lo = get64(buf + 16);
    h->key.hi = get64(buf + 24);
    h->section = get32(buf + 32);
    h->index = get32(buf + 36);
    if (get64(buf + 40) != 0)
        return td_errf(err, errlen, TD_ECORRUPT, "block token range does not start at 0");
    h->tokens = get64(buf + 48);
    h->seq = get64(buf + 56);
    h->value_len = get64(buf + 64);
    h->payload_off = get64(buf + 72);
    h->payload_len = get32(buf + 80);
    h->n_blocks = get32(buf + 84);
    if (h->payload_len > len - KV_BLOCK_HDR)
        return td_errf(err, errlen, TD_ECORRUPT, "block payload length %u exceeds the %zu bytes read",
                       h->payload_len, len - KV_BLOCK_HDR);
    if (h->index >= h->n_blocks || h->payload_off > h->value_len ||
        h->payload_len > h->value_len - h->payload_off)
        return td_errf(err, errlen, TD_ECORRUPT,
                       "block %u/%u range [%llu,+%u) outside value of %llu bytes", h->index,
                       h->n_blocks, (unsigned long long)h->payload_off, h->payload_len,
                       (unsigned long long)h->value_len);
    uint64_t want = get64(buf + 120), got = kv_block_sum(buf, h->payload_len);
    if (want != got)
        return td_errf(err, errlen, TD_ECORRUPT, "block checksum mismatch (stored %016llx, computed %016llx)",
                       (unsigned long long)want, (unsigned long long)got);
    return TD_OK;
}

/* ---- manifest records ----
 * header: magic u32, type u32, payload bytes u32, zero u32, lsn u64;
 * payload; XXH3-64 of header and payload. */

#define PUT_FIXED 60u   /* key 16, section 4, pinned 4, tokens 8, len 8, seq 8, n_ext 4, zero 8 */
#define DEL_FIXED 24u   /* key 16, section 4, zero 4 */
#define PIN_FIXED 24u   /* key 16, section 4, pinned 4 */

static uint32_t payload_size(const kv_rec *r)
{
    switch (r->type) {
    case KV_REC_PUT: return PUT_FIXED + 12u * r->n_ext;
    case KV_REC_DEL: return DEL_FIXED;
    case KV_REC_PIN: return PIN_FIXED;
    }
    return 0;
}

size_t kv_rec_size(const kv_rec *r)
{
    return KV_REC_HDR + payload_size(r) + 8;
}

void kv_rec_write(uint8_t *buf, const kv_rec *r, const kv_ext *ext)
{
    uint32_t plen = payload_size(r);
    memset(buf, 0, KV_REC_HDR + plen);
    put32(buf, KV_REC_MAGIC);
    put32(buf + 4, (uint32_t)r->type);
    put32(buf + 8, plen);
    put64(buf + 16, r->lsn);
    uint8_t *p = buf + KV_REC_HDR;
    put64(p, r->key.lo);
    put64(p + 8, r->key.hi);
    put32(p + 16, r->section);
    put32(p + 20, r->pinned);
    if (r->type == KV_REC_PUT) {
        put64(p + 24, r->tokens);
        put64(p + 32, r->value_len);
        put64(p + 40, r->seq);
        put32(p + 48, r->n_ext);
        for (uint32_t i = 0; i < r->n_ext; i++) {
            uint8_t *e = p + PUT_FIXED + 12u * i;
            put32(e, ext[i].seg);
            put32(e + 4, ext[i].page);
            put32(e + 8, ext[i].pages);
        }
    }
    put64(buf + KV_REC_HDR + plen, kv_checksum(buf, KV_REC_HDR + plen));
}

kv_ext kv_rec_ext(const kv_rec *r, uint32_t i)
{
    const uint8_t *e = r->ext_raw + 12u * i;
    return (kv_ext){get32(e), get32(e + 4), get32(e + 8)};
}

td_err kv_rec_parse(const uint8_t *buf, size_t len, kv_rec *r, size_t *used,
                    char *err, size_t errlen)
{
    if (len < KV_REC_HDR)
        return td_errf(err, errlen, TD_ECORRUPT, "record header torn (%zu bytes left)", len);
    if (get32(buf) != KV_REC_MAGIC)
        return td_errf(err, errlen, TD_ECORRUPT, "record magic 0x%08x is not TKVR", get32(buf));
    uint32_t type = get32(buf + 4), plen = get32(buf + 8);
    if (get32(buf + 12) != 0)
        return td_errf(err, errlen, TD_ECORRUPT, "record reserved field not zero");
    if (plen > KV_REC_MAX || (size_t)plen + KV_REC_HDR + 8 > len)
        return td_errf(err, errlen, TD_ECORRUPT, "record of %u bytes torn (%zu bytes left)", plen, len);
    uint64_t want = get64(buf + KV_REC_HDR + plen);
    if (kv_checksum(buf, KV_REC_HDR + plen) != want)
        return td_errf(err, errlen, TD_ECORRUPT, "record checksum mismatch");
    memset(r, 0, sizeof(*r));
    r->type = (kv_rec_type)type;
    r->lsn = get64(buf + 16);
    const uint8_t *p = buf + KV_REC_HDR;
    uint32_t fixed = type == KV_REC_PUT ? PUT_FIXED : type == KV_REC_DEL ? DEL_FIXED
                   : type == KV_REC_PIN ? PIN_FIXED : 0;
    if (!fixed)
        return td_errf(err, errlen, TD_ECORRUPT, "record type %u unknown", type);
    if (plen < fixed)
        return td_errf(err, errlen, TD_ECORRUPT, "record type %u payload %u bytes < %u", type, plen, fixed);
    r->key.lo = get64(p);
    r->key.hi = get64(p + 8);
    r->section = get32(p + 16);
    r->pinned = get32(p + 20);
    if (r->pinned > 1)
        return td_errf(err, errlen, TD_ECORRUPT, "record pin flag %u", r->pinned);
    if (type == KV_REC_PUT) {
        r->tokens = get64(p + 24);
        r->value_len = get64(p + 32);
        r->seq = get64(p + 40);
        r->n_ext = get32(p + 48);
        if (get64(p + 52) != 0)
            return td_errf(err, errlen, TD_ECORRUPT, "put record reserved field not zero");
        if ((uint64_t)r->n_ext * 12u != plen - PUT_FIXED || r->n_ext == 0)
            return td_errf(err, errlen, TD_ECORRUPT, "put record with %u extents in %u bytes",
                           r->n_ext, plen);
        r->ext_raw = p + PUT_FIXED;
    } else if (plen != fixed) {
        return td_errf(err, errlen, TD_ECORRUPT, "record type %u payload %u bytes", type, plen);
    } else if (type == KV_REC_DEL && r->pinned) {
        return td_errf(err, errlen, TD_ECORRUPT, "delete record reserved field not zero");
    }
    *used = KV_REC_HDR + plen + 8;
    return TD_OK;
}

/* ---- log and checkpoint headers ----
 * magic u32, version u32, fingerprint u64, block_tokens u32, block_bytes
 * u32, segment_bytes u64, capacity_bytes u64, then (checkpoint only)
 * next_lsn, next_seq, n_records, body_bytes; zero padding; the log header
 * ends with its own XXH3-64, the checkpoint with one over the whole file. */

static void geom_write(uint8_t *buf, uint32_t magic, const kv_geom *g)
{
    put32(buf, magic);
    put32(buf + 4, KV_VERSION);
    put64(buf + 8, g->fingerprint);
    put32(buf + 16, g->block_tokens);
    put32(buf + 20, g->block_bytes);
    put64(buf + 24, g->segment_bytes);
    put64(buf + 32, g->capacity_bytes);
}

static td_err geom_parse(const uint8_t *buf, uint32_t magic, const char *what, kv_geom *g,
                         char *err, size_t errlen)
{
    if (get32(buf) != magic)
        return td_errf(err, errlen, TD_ECORRUPT, "%s magic 0x%08x wrong", what, get32(buf));
    if (get32(buf + 4) != KV_VERSION)
        return td_errf(err, errlen, TD_EFORMAT, "%s format version %u, this build reads %u", what,
                       get32(buf + 4), KV_VERSION);
    memset(g, 0, sizeof(*g));
    g->fingerprint = get64(buf + 8);
    g->block_tokens = get32(buf + 16);
    g->block_bytes = get32(buf + 20);
    g->segment_bytes = get64(buf + 24);
    g->capacity_bytes = get64(buf + 32);
    return TD_OK;
}

td_err kv_geom_check(const kv_geom *g, char *err, size_t errlen)
{
    if (g->block_tokens == 0 || g->block_tokens > (1u << 20))
        return td_errf(err, errlen, TD_EINVAL, "block_tokens %u outside 1..2^20", g->block_tokens);
    if (g->block_bytes < 2 * KV_PAGE || g->block_bytes % KV_PAGE || g->block_bytes > (64u << 20))
        return td_errf(err, errlen, TD_EINVAL, "block_bytes %u: a multiple of 4096 in 8 KiB..64 MiB",
                       g->block_bytes);
    if (g->segment_bytes < g->block_bytes || g->segment_bytes % KV_PAGE ||
        g->segment_bytes / KV_PAGE > UINT32_MAX)
        return td_errf(err, errlen, TD_EINVAL, "segment_bytes %llu: a multiple of 4096, at least one block",
                       (unsigned long long)g->segment_bytes);
    if (g->capacity_bytes < g->segment_bytes || g->capacity_bytes / g->segment_bytes > 65536)
        return td_errf(err, errlen, TD_EINVAL, "capacity_bytes %llu: 1..65536 segments of %llu",
                       (unsigned long long)g->capacity_bytes, (unsigned long long)g->segment_bytes);
    return TD_OK;
}

void kv_log_hdr_write(uint8_t buf[KV_LOG_HDR], const kv_geom *g)
{
    memset(buf, 0, KV_LOG_HDR);
    geom_write(buf, KV_LOG_MAGIC, g);
    put64(buf + KV_LOG_HDR - 8, kv_checksum(buf, KV_LOG_HDR - 8));
}

td_err kv_log_hdr_parse(const uint8_t *buf, size_t len, kv_geom *g, char *err, size_t errlen)
{
    if (len < KV_LOG_HDR)
        return td_errf(err, errlen, TD_ECORRUPT, "log header torn (%zu bytes)", len);
    if (kv_checksum(buf, KV_LOG_HDR - 8) != get64(buf + KV_LOG_HDR - 8))
        return td_errf(err, errlen, TD_ECORRUPT, "log header checksum mismatch");
    td_err e = geom_parse(buf, KV_LOG_MAGIC, "log", g, err, errlen);
    return e ? e : kv_geom_check(g, err, errlen) ? TD_ECORRUPT : TD_OK;
}

void kv_ckpt_hdr_write(uint8_t buf[KV_CKPT_HDR], const kv_geom *g)
{
    memset(buf, 0, KV_CKPT_HDR);
    geom_write(buf, KV_CKPT_MAGIC, g);
    put64(buf + 40, g->next_lsn);
    put64(buf + 48, g->next_seq);
    put64(buf + 56, g->n_records);
    put64(buf + 64, g->body_bytes);
    put64(buf + 72, g->prio_bytes);
}

td_err kv_ckpt_parse(const uint8_t *buf, size_t len, kv_geom *g, const uint8_t **body,
                     char *err, size_t errlen)
{
    if (len < KV_CKPT_HDR + 8)
        return td_errf(err, errlen, TD_ECORRUPT, "checkpoint truncated (%zu bytes)", len);
    td_err e = geom_parse(buf, KV_CKPT_MAGIC, "checkpoint", g, err, errlen);
    if (e)
        return e;
    if (kv_geom_check(g, err, errlen))
        return TD_ECORRUPT;
    g->next_lsn = get64(buf + 40);
    g->next_seq = get64(buf + 48);
    g->n_records = get64(buf + 56);
    g->body_bytes = get64(buf + 64);
    g->prio_bytes = get64(buf + 72);
    if (g->body_bytes != len - KV_CKPT_HDR - 8)
        return td_errf(err, errlen, TD_ECORRUPT, "checkpoint body %llu bytes, file holds %zu",
                       (unsigned long long)g->body_bytes, len - KV_CKPT_HDR - 8);
    if (kv_checksum(buf, len - 8) != get64(buf + len - 8))
        return td_errf(err, errlen, TD_ECORRUPT, "checkpoint checksum mismatch");
    if (g->prio_bytes > g->body_bytes)
        return td_errf(err, errlen, TD_ECORRUPT, "checkpoint eviction table of %llu bytes in a body of %llu",
                       (unsigned long long)g->prio_bytes, (unsigned long long)g->body_bytes);
    *body = buf + KV_CKPT_HDR;
    return TD_OK;
}

/* ---- the checkpoint's eviction table ---- */

static void put_f64(uint8_t *p, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof(u));
    put64(p, u);
}

static double get_f64(const uint8_t *p)
{
    uint64_t u = get64(p);
    double v;
    memcpy(&v, &u, sizeof(v));
    return v;
}

size_t kv_prio_size(uint64_t rows)
{
    return KV_PRIO_HDR + (size_t)rows * KV_PRIO_ROW;
}

void kv_prio_hdr_write(uint8_t buf[KV_PRIO_HDR], const kv_prio_hdr *h)
{
    memset(buf, 0, KV_PRIO_HDR);
    put32(buf, KV_PRIO_MAGIC);
    put32(buf + 4, 1);
    put32(buf + 8, h->policy);
    put_f64(buf + 16, h->clock);
    put64(buf + 24, h->rows);
}

void kv_prio_row_write(uint8_t buf[KV_PRIO_ROW], const kv_prio *p)
{
    put_f64(buf, p->prio);
    put_f64(buf + 8, p->unit);
    put32(buf + 16, p->uses);
    put32(buf + 20, p->read ? 1u : 0u);
}

kv_prio kv_prio_row(const uint8_t *table, uint64_t i)
{
    const uint8_t *p = table + KV_PRIO_HDR + i * KV_PRIO_ROW;
    return (kv_prio){get_f64(p), get_f64(p + 8), get32(p + 16), get32(p + 20)};
}

/* Finite and not negative (NaN fails both comparisons). */
static int priority_ok(double v)
{
    return v >= 0 && v <= 1e300;
}

td_err kv_prio_parse(const uint8_t *buf, size_t len, uint64_t rows, kv_prio_hdr *h,
                     char *err, size_t errlen)
{
    if (len < KV_PRIO_HDR || get32(buf) != KV_PRIO_MAGIC)
        return td_errf(err, errlen, TD_ECORRUPT, "eviction table (%zu bytes) without its TKVP header", len);
    if (get32(buf + 4) != 1 || get32(buf + 12) != 0 || get64(buf + 24) != rows ||
        (len - KV_PRIO_HDR) / KV_PRIO_ROW != rows || (len - KV_PRIO_HDR) % KV_PRIO_ROW)
        return td_errf(err, errlen, TD_ECORRUPT,
                       "eviction table version %u, %llu rows in %zu bytes, for %llu records",
                       get32(buf + 4), (unsigned long long)get64(buf + 24), len,
                       (unsigned long long)rows);
    h->policy = get32(buf + 8);
    h->clock = get_f64(buf + 16);
    h->rows = rows;
    if (h->policy < TD_KV_EVICT_LRU || h->policy > TD_KV_EVICT_COST || !priority_ok(h->clock))
        return td_errf(err, errlen, TD_ECORRUPT, "eviction table policy %u, clock %g", h->policy,
                       h->clock);
    for (uint64_t i = 0; i < rows; i++) {
        kv_prio p = kv_prio_row(buf, i);
        if (!priority_ok(p.prio) || !priority_ok(p.unit) || p.uses == 0 || p.uses > KV_USES_MAX ||
            p.read > 1)
            return td_errf(err, errlen, TD_ECORRUPT,
                           "eviction table row %llu: priority %g, worth %g, uses %u, flags %u",
                           (unsigned long long)i, p.prio, p.unit, p.uses, p.read);
    }
    return TD_OK;
}
