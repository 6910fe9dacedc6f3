/* On-disk formats of the kvstore (docs/kvstore.md): block headers, manifest
 * log records, the checkpoint. Pure byte encoding and checked parsing, no
 * I/O, so the fuzz target can drive every parser. Little-endian. */
#ifndef TD_KVSTORE_FORMAT_H
#define TD_KVSTORE_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "kvstore/kvstore.h"

#define KV_PAGE 4096u
#define KV_VERSION 1u
#define KV_BLOCK_MAGIC 0x42564b54u   /* "TKVB" */
#define KV_REC_MAGIC 0x52564b54u     /* "TKVR" */
#define KV_LOG_MAGIC 0x4c564b54u     /* "TKVL" */
#define KV_CKPT_MAGIC 0x43564b54u    /* "TKVC" */
#define KV_BLOCK_HDR 128u
#define KV_REC_HDR 24u               /* magic, type, len, lsn */
#define KV_LOG_HDR 64u
#define KV_CKPT_HDR 96u
/* A record bigger than this is damage, not data: the largest PUT (a 4 GiB
 * value in 4 KiB-page extents, worst case fragmented) stays far below. */
#define KV_REC_MAX (64u << 20)

typedef struct {
    uint64_t fingerprint;
    td_kv_key key;
    uint32_t section;
    uint32_t index;          /* block number within the value */
    uint32_t n_blocks;
    uint32_t payload_len;    /* bytes of value in this block */
    uint64_t tokens;         /* token range [0, tokens) */
    uint64_t seq;            /* the put that wrote it */
    uint64_t value_len;
    uint64_t payload_off;    /* offset of this block's bytes in the value */
} kv_block_hdr;

/* Writes the 128-byte header for h at buf and returns the checksum that
 * covers header and payload (written at byte 120). payload follows the
 * header at buf + KV_BLOCK_HDR. */
void kv_block_hdr_write(uint8_t *buf, const kv_block_hdr *h);
/* The block checksum: header bytes [0,120) and the payload after them. */
uint64_t kv_block_sum(const uint8_t *buf, uint32_t payload_len);
/* Parses and checks one block (header then payload_len bytes); len is how
 * many bytes are available. TD_ECORRUPT with a message on any mismatch. */
td_err kv_block_hdr_parse(const uint8_t *buf, size_t len, kv_block_hdr *h,
                          char *err, size_t errlen);

typedef enum {
    KV_REC_PUT = 1,
    KV_REC_DEL = 2,
    KV_REC_PIN = 3,
} kv_rec_type;

typedef struct {
    uint32_t seg, page, pages;
} kv_ext;

/* One manifest record, decoded. ext points into the parsed buffer's copy
 * (kv_rec_parse) or the caller's array (kv_rec_write). */
typedef struct {
    kv_rec_type type;
    uint64_t lsn;
    td_kv_key key;
    uint32_t section;
    uint32_t pinned;         /* PIN: new state; PUT: pinned at put */
    uint64_t tokens, value_len, seq;
    uint32_t n_ext;
    const uint8_t *ext_raw;  /* n_ext x 12 bytes, read with kv_rec_ext */
} kv_rec;

/* Bytes kv_rec_write needs for r. */
size_t kv_rec_size(const kv_rec *r);
/* Encodes r with ext[0..n_ext) into buf (kv_rec_size bytes). */
void kv_rec_write(uint8_t *buf, const kv_rec *r, const kv_ext *ext);
/* Parses the record at buf[0..len): *used gets its size. TD_ECORRUPT if it
 * is torn or damaged (the log ends there). */
td_err kv_rec_parse(const uint8_t *buf, size_t len, kv_rec *r, size_t *used,
                    char *err, size_t errlen);
kv_ext kv_rec_ext(const kv_rec *r, uint32_t i);

/* Store geometry, at the head of the log and of the checkpoint. */
typedef struct {
    uint64_t fingerprint;
    uint32_t block_tokens, block_bytes;
    uint64_t segment_bytes, capacity_bytes;
    uint64_t next_lsn, next_seq;   /* checkpoint: state covers lsn < next_lsn */
    uint64_t n_records;            /* checkpoint: records that follow */
    uint64_t body_bytes;           /* checkpoint: bytes of records that follow */
    uint64_t prio_bytes;           /* checkpoint: of those, the eviction table's
                                      (the last bytes of the body; 0: none) */
} kv_geom;

void kv_log_hdr_write(uint8_t buf[KV_LOG_HDR], const kv_geom *g);
td_err kv_log_hdr_parse(const uint8_t *buf, size_t len, kv_geom *g, char *err, size_t errlen);
/* Checkpoint: header, body_bytes of PUT records, then XXH3-64 of all of it. */
void kv_ckpt_hdr_write(uint8_t buf[KV_CKPT_HDR], const kv_geom *g);
td_err kv_ckpt_parse(const uint8_t *buf, size_t len, kv_geom *g, const uint8_t **body,
                     char *err, size_t errlen);
uint64_t kv_checksum(const void *buf, size_t len);

/* The checkpoint's eviction table: the last prio_bytes of its body, after
 * the PUT records, one row per record in their order. Builds from before it
 * read the records and ignore the rest of the body (its size is in header
 * bytes they left zero), so the format stays version 1.
 *   header: magic "TKVP" u32, version u32 (1), policy u32 (td_kv_evict the
 *           writer ran), zero u32, clock f64, rows u64, zero u64
 *   row:    priority f64, worth per use f64, uses u32, flags u32 (bit 0:
 *           read since put) */
#define KV_PRIO_MAGIC 0x50564b54u    /* "TKVP" */
#define KV_PRIO_HDR 32u
#define KV_PRIO_ROW 24u
/* Uses saturate here: an entry's credit is at most this many times its
 * cost per page above the clock (docs/kvstore.md, eviction). */
#define KV_USES_MAX 16u

typedef struct {
    uint32_t policy;
    double clock;
    uint64_t rows;
} kv_prio_hdr;

typedef struct {
    double prio, unit;
    uint32_t uses, read;
} kv_prio;

size_t kv_prio_size(uint64_t rows);
void kv_prio_hdr_write(uint8_t buf[KV_PRIO_HDR], const kv_prio_hdr *h);
void kv_prio_row_write(uint8_t buf[KV_PRIO_ROW], const kv_prio *p);
/* Checks the whole table (len bytes): header, a row count equal to rows,
 * and every row (a finite priority and worth >= 0, uses 1..KV_USES_MAX, no
 * unknown flag), so that kv_prio_row needs no checks. */
td_err kv_prio_parse(const uint8_t *buf, size_t len, uint64_t rows, kv_prio_hdr *h,
                     char *err, size_t errlen);
/* Row i of a table kv_prio_parse accepted. */
kv_prio kv_prio_row(const uint8_t *table, uint64_t i);

/* Checks geometry fields a store could have been created with. */
td_err kv_geom_check(const kv_geom *g, char *err, size_t errlen);

#endif
