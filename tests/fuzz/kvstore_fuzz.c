/* libFuzzer target for the kvstore's on-disk parsers: what recovery and
 * reads take from files a crash, a bad disk or another build may have left.
 * Any input must parse or fail with a message, never crash or read past the
 * buffer. The first byte picks what the rest is:
 *   0  a manifest log body: records back to back, as replay reads them
 *   1  one block (header and payload)
 *   2  a checkpoint file (its PUT records, then its eviction table if any)
 *   3  a log header
 *   4  a whole store: the rest becomes manifest.log (after a valid header)
 *      next to an empty checkpoint, and the store is opened and verified
 * With the top bit set the harness recomputes the checksums first, so that
 * mutations reach the checks behind them. Seeds: tests/fuzz/corpus/kvstore. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvstore/format.h"
#include "kvstore/kvstore.h"

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Rewrites each record's trailing checksum, walking by the length fields. */
static void fix_records(uint8_t *buf, size_t len)
{
    size_t off = 0;
    while (off + KV_REC_HDR <= len) {
        uint32_t plen = get32(buf + off + 8);
        if (plen > len - off - KV_REC_HDR || len - off - KV_REC_HDR - plen < 8)
            return;
        put64(buf + off + KV_REC_HDR + plen, kv_checksum(buf + off, KV_REC_HDR + plen));
        off += KV_REC_HDR + plen + 8;
    }
}

static void parse_records(const uint8_t *buf, size_t len)
{
    char err[256];
    size_t off = 0;
    while (off < len) {
        kv_rec r;
        size_t used;
        if (kv_rec_parse(buf + off, len - off, &r, &used, err, sizeof(err)))
            return;
        if (used == 0 || used > len - off)
            abort();
        for (uint32_t i = 0; r.type == KV_REC_PUT && i < r.n_ext; i++)
            (void)kv_rec_ext(&r, i);
        off += used;
    }
}

static const kv_geom geom = {.fingerprint = 0x1234, .block_tokens = 16, .block_bytes = 8192,
                             .segment_bytes = 65536, .capacity_bytes = 262144,
                             .next_lsn = 1, .next_seq = 1};

static void write_file(const char *dir, const char *name, const uint8_t *a, size_t alen,
                       const uint8_t *b, size_t blen)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(a, 1, alen, f) != alen || (blen && fwrite(b, 1, blen, f) != blen))
        abort();
    fclose(f);
}

static char dir[64];

static void remove_dir(void)
{
    const char *names[] = {"manifest.ckpt", "manifest.log", "lock"};
    char path[512];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

static void open_store(const uint8_t *log, size_t len)
{
    if (!dir[0]) {
        snprintf(dir, sizeof(dir), "/tmp/td-kvfuzz-XXXXXX");
        if (!mkdtemp(dir))
            abort();
        atexit(remove_dir);
        uint8_t ckpt[KV_CKPT_HDR + 8];
        kv_ckpt_hdr_write(ckpt, &geom);
        put64(ckpt + KV_CKPT_HDR, kv_checksum(ckpt, KV_CKPT_HDR));
        write_file(dir, "manifest.ckpt", ckpt, sizeof(ckpt), NULL, 0);
    }
    uint8_t hdr[KV_LOG_HDR];
    kv_log_hdr_write(hdr, &geom);
    write_file(dir, "manifest.log", hdr, sizeof(hdr), log, len);
    td_kv *kv = NULL;
    char err[512];
    td_kv_opts o = {.dir = dir, .read_only = 1, .queue_depth = 2, .no_register = 1};
    if (td_kv_open(&kv, &o, err, sizeof(err)))
        return;
    uint64_t ok, bad;
    td_kv_verify(kv, &ok, &bad, err, sizeof(err));
    td_kv_stats st;
    td_kv_stats_get(kv, &st);
    if (st.bytes_used > st.capacity_bytes)
        abort();
    td_kv_close(kv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int fix = data[0] & 0x80, mode = data[0] & 0x7f;
    size_t len = size - 1;
    uint8_t *buf = malloc(len ? len : 1);
    memcpy(buf, data + 1, len);
    char err[256];
    if (mode == 0 || mode == 4) {
        if (fix)
            fix_records(buf, len);
        if (mode == 0)
            parse_records(buf, len);
        else
            open_store(buf, len);
    } else if (mode == 1) {
        if (fix && len >= KV_BLOCK_HDR) {
            uint32_t plen = get32(buf + 80);
            if (plen <= len - KV_BLOCK_HDR)
                put64(buf + 120, kv_block_sum(buf, plen));
        }
        kv_block_hdr h;
        kv_block_hdr_parse(buf, len, &h, err, sizeof(err));
    } else if (mode == 2) {
        if (fix && len >= 8)
            put64(buf + len - 8, kv_checksum(buf, len - 8));
        kv_geom g;
        const uint8_t *body;
        kv_prio_hdr ph;
        if (kv_ckpt_parse(buf, len, &g, &body, err, sizeof(err)) == TD_OK) {
            const uint8_t *table = body + g.body_bytes - g.prio_bytes;
            parse_records(body, g.body_bytes - g.prio_bytes);
            if (g.prio_bytes &&
                kv_prio_parse(table, g.prio_bytes, g.n_records, &ph, err, sizeof(err)) == TD_OK)
                for (uint64_t i = 0; i < g.n_records; i++)
                    if (kv_prio_row(table, i).uses == 0)
                        abort();   /* the parse checked every row */
        }
    } else if (mode == 3) {
        if (fix && len >= KV_LOG_HDR)
            put64(buf + KV_LOG_HDR - 8, kv_checksum(buf, KV_LOG_HDR - 8));
        kv_geom g;
        kv_log_hdr_parse(buf, len, &g, err, sizeof(err));
    }
    free(buf);
    return 0;
}
