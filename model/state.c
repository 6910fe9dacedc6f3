/* Serialised sequence state, layout version 1 (docs/kv-layout.md).
 *
 * These are the bytes that move prefill -> decode and that the kvstore
 * writes: only what decode needs, in the stored record formats, one
 * contiguous section per layer so a sender can ship layer by layer.
 *
 *   header   (64 bytes, little-endian; docs/kv-layout.md lists the fields)
 *   layer 0 .. nlayers-1, each:
 *     window      min(pos, W) KV records, oldest token first
 *     compressed  pos / R KV records                       (R > 0)
 *     index keys  pos / 4 indexer records                  (R = 4)
 *     tails       compressor pending state, fp32           (R > 0)
 *   checksum (8 bytes: XXH3-64 of everything before it)
 *
 * Compressor tails are stored lean: for R = 4, the previous block's A
 * halves (kv, score: R x d each, only once a block is complete) and the
 * pending tokens' full rows (pos % R x 2d each); the indexer compressor
 * likewise at dI; for other R, the pending tokens (pos % R x d each).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "model/internal.h"
#include "model/state.h"

#define MAGIC 0x564b4454u   /* "TDKV" */
#define VERSION TD_V4_STATE_LAYOUT
#define HEADER_BYTES 64

uint64_t td_v4_layout_fingerprint(const td_v4_config *c)
{
    int32_t g[32 + TD_V4_MAX_LAYERS];
    int n = 0;
    g[n++] = c->dim;
    g[n++] = c->n_layers;
    g[n++] = c->n_mtp_layers;
    g[n++] = c->head_dim;
    g[n++] = c->rope_dim;
    g[n++] = c->window;
    g[n++] = c->index_head_dim;
    g[n++] = c->index_n_heads;
    g[n++] = c->vocab_size;
    g[n++] = c->n_routed_experts;
    for (int i = 0; i < c->n_ratios; i++)
        g[n++] = c->compress_ratios[i];
    return XXH3_64bits(g, sizeof(int32_t) * (size_t)n);
}

/* The MTP block's layer has seen only the tokens the MTP block ran on. */
static int64_t layer_pos(const td_v4_seq *s, int l)
{
    return l >= s->m->c.n_layers ? s->mtp_pos : s->pos;
}

typedef struct {
    int64_t pos;                 /* tokens the layer has seen */
    int64_t win, comp, ikey;     /* record counts */
    int64_t prevA, pend;         /* main tail rows */
    int64_t iprevA, ipend;       /* indexer tail rows */
    int d, dI;
} layer_plan;

static layer_plan plan_at(const td_v4_model *m, int R, int64_t pos)
{
    const td_v4_config *c = &m->c;
    layer_plan p = {0};
    p.pos = pos;
    p.win = pos < c->window ? pos : c->window;
    p.d = c->head_dim;
    p.dI = c->index_head_dim;
    if (R > 0) {
        p.comp = pos / R;
        p.pend = pos % R;
        if (td_v4_is_csa(R))
            p.prevA = pos >= R ? R : 0;
    }
    if (td_v4_is_csa(R)) {
        p.ikey = pos / 4;
        p.ipend = pos % 4;
        p.iprevA = pos >= 4 ? 4 : 0;
    }
    return p;
}

static layer_plan plan(const td_v4_seq *s, int l)
{
    return plan_at(s->m, s->layer[l].ratio, layer_pos(s, l));
}

static size_t layer_bytes(const td_v4_model *m, const layer_plan *p, int R)
{
    size_t b = (size_t)(p->win + p->comp) * m->rec + (size_t)p->ikey * m->ikrec;
    if (R > 0) {
        int w = td_v4_is_csa(R) ? 2 * p->d : p->d;
        b += sizeof(float) * 2 * ((size_t)p->prevA * p->d + (size_t)p->pend * w);
    }
    if (td_v4_is_csa(R))
        b += sizeof(float) * 2 * ((size_t)p->iprevA * p->dI + (size_t)p->ipend * 2 * p->dI);
    return b;
}

size_t td_v4_seq_state_size(const td_v4_seq *s)
{
    size_t b = HEADER_BYTES + 8;
    for (int l = 0; l < s->nlayers; l++) {
        layer_plan p = plan(s, l);
        b += layer_bytes(s->m, &p, s->layer[l].ratio);
    }
    return b;
}

size_t td_v4_state_size_at(const td_v4_model *m, int64_t pos, int64_t mtp_pos)
{
    const td_v4_config *c = &m->c;
    size_t b = HEADER_BYTES + 8;
    for (int l = 0; l < c->n_layers + c->n_mtp_layers; l++) {
        int R = c->compress_ratios[l];
        layer_plan p = plan_at(m, R, l >= c->n_layers ? mtp_pos : pos);
        b += layer_bytes(m, &p, R);
    }
    return b;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Copies `rows` rows of `cols` floats, row stride `stride` floats, between the
 * state and the buffer (dir 1: state -> buffer). fp32 goes as its native
 * little-endian bytes: tandem builds for little-endian hosts only. */
static uint8_t *tail_copy(uint8_t *b, float *st, int64_t rows, int cols, int stride,
                          int dir)
{
    for (int64_t r = 0; r < rows; r++) {
        size_t n = sizeof(float) * (size_t)cols;
        if (dir)
            memcpy(b, st + r * stride, n);
        else
            memcpy(st + r * stride, b, n);
        b += n;
    }
    return b;
}

/* Moves one compressor's tail (kv and score arrays). */
static uint8_t *tail_io(uint8_t *b, float *kv, float *sc, int R, int d, int overlap,
                        int64_t prevA, int64_t pend, int dir)
{
    int width = overlap ? 2 * d : d;
    if (overlap) {
        b = tail_copy(b, kv, prevA, d, width, dir);
        b = tail_copy(b, sc, prevA, d, width, dir);
        b = tail_copy(b, kv + (size_t)R * width, pend, width, width, dir);
        b = tail_copy(b, sc + (size_t)R * width, pend, width, width, dir);
    } else {
        b = tail_copy(b, kv, pend, width, width, dir);
        b = tail_copy(b, sc, pend, width, width, dir);
    }
    return b;
}

/* A layer section's parts, in file order. The record arrays are the bulk
 * of a state and lie contiguously in memory as in the file, so they can be
 * moved piecewise (the streamed loader copies them as bytes arrive); the
 * window (a ring in memory) and the tails move whole. */
enum { PART_WIN, PART_COMP, PART_IKEY, PART_TAILS, N_PARTS };

static size_t part_bytes(const td_v4_model *m, const layer_plan *p, int R, int part)
{
    switch (part) {
    case PART_WIN:
        return (size_t)p->win * m->rec;
    case PART_COMP:
        return (size_t)p->comp * m->rec;   /* comp is 0 when R = 0 */
    case PART_IKEY:
        return (size_t)p->ikey * m->ikrec; /* ikey is 0 unless R = 4 */
    default:
        return layer_bytes(m, p, R) - (size_t)(p->win + p->comp) * m->rec -
               (size_t)p->ikey * m->ikrec;
    }
}

/* Moves bytes [from, to) of one part of layer l, whose bytes in the file
 * start at b; dir 1 = save. The window and the tails need from = 0 and to =
 * the part's size. */
static void part_io(td_v4_seq *s, int l, const layer_plan *p, int part, uint8_t *b, size_t from,
                    size_t to, int dir)
{
    const td_v4_model *m = s->m;
    td_v4_layer_state *st = &s->layer[l];
    int R = st->ratio, W = m->c.window;
    uint8_t *mem = part == PART_COMP ? st->comp : st->ikey;
    switch (part) {
    case PART_WIN:
        for (int64_t t = p->pos - p->win; t < p->pos; t++, b += m->rec) {
            uint8_t *slot = st->win + (size_t)(t % W) * m->rec;
            memcpy(dir ? b : slot, dir ? slot : b, (size_t)m->rec);
        }
        break;
    case PART_COMP:
    case PART_IKEY:
        if (to > from)
            memcpy(dir ? b + from : mem + from, dir ? mem + from : b + from, to - from);
        break;
    default:
        if (R > 0)
            b = tail_io(b, st->ckv, st->csc, R, p->d, td_v4_is_csa(R), p->prevA, p->pend, dir);
        if (td_v4_is_csa(R))
            tail_io(b, st->ikv, st->isc, 4, p->dI, 1, p->iprevA, p->ipend, dir);
        break;
    }
}

/* Moves layer l's section as of `pos` tokens; dir 1 = save. */
static uint8_t *layer_io(td_v4_seq *s, int l, int64_t pos, uint8_t *b, int dir)
{
    int R = s->layer[l].ratio;
    layer_plan p = plan_at(s->m, R, pos);
    for (int part = 0; part < N_PARTS; part++) {
        size_t n = part_bytes(s->m, &p, R, part);
        part_io(s, l, &p, part, b, 0, n, dir);
        b += n;
    }
    return b;
}

/* Moves all layer sections; dir 1 = save. */
static uint8_t *layers_io(td_v4_seq *s, uint8_t *b, int dir)
{
    for (int l = 0; l < s->nlayers; l++)
        b = layer_io(s, l, layer_pos(s, l), b, dir);
    return b;
}

void td_v4_state_offsets(const td_v4_model *m, int64_t pos, int64_t mtp_pos, size_t *offs)
{
    const td_v4_config *c = &m->c;
    size_t b = HEADER_BYTES;
    int L = c->n_layers + c->n_mtp_layers;
    for (int l = 0; l < L; l++) {
        offs[l] = b;
        int R = c->compress_ratios[l];
        layer_plan p = plan_at(m, R, l >= c->n_layers ? mtp_pos : pos);
        b += layer_bytes(m, &p, R);
    }
    offs[L] = b;
}

int td_v4_state_range_spans(const td_v4_model *m, int64_t pos, int64_t mtp_pos, int64_t t0,
                            int64_t t1, td_v4_span *out)
{
    const td_v4_config *c = &m->c;
    if (t0 < 0 || t1 <= t0 || t1 > pos)
        return -1;
    for (int l = 0; l < c->n_layers; l++) {
        int R = c->compress_ratios[l];
        if (R > 0 && (t0 % R || t1 % R))
            return -1;
    }
    size_t offs[TD_V4_MAX_LAYERS + 2];
    td_v4_state_offsets(m, pos, mtp_pos, offs);
    int n = 0;
    for (int l = 0; l < c->n_layers; l++) {
        int R = c->compress_ratios[l];
        if (R == 0)
            continue;
        layer_plan p = plan_at(m, R, pos);
        size_t comp = offs[l] + part_bytes(m, &p, R, PART_WIN);
        out[n++] = (td_v4_span){comp + (size_t)(t0 / R) * m->rec,
                                (size_t)((t1 - t0) / R) * m->rec};
        if (td_v4_is_csa(R)) {
            size_t ikey = comp + part_bytes(m, &p, R, PART_COMP);
            out[n++] = (td_v4_span){ikey + (size_t)(t0 / 4) * m->ikrec,
                                    (size_t)((t1 - t0) / 4) * m->ikrec};
        }
    }
    return n;
}

td_err td_v4_seq_save_layer(const td_v4_seq *s, int l, int64_t pos, void *buf, size_t cap)
{
    const td_v4_model *m = s->m;
    if (l < 0 || l >= s->nlayers || pos < 0 || pos > s->cap)
        return TD_EINVAL;
    size_t offs[TD_V4_MAX_LAYERS + 2];
    td_v4_state_offsets(m, pos, s->mtp_pos, offs);
    if (offs[s->nlayers] + 8 > cap)
        return TD_ERANGE;
    layer_io((td_v4_seq *)s, l, l >= m->c.n_layers ? s->mtp_pos : pos, (uint8_t *)buf + offs[l],
             1);
    return TD_OK;
}

static void put_header(const td_v4_seq *s, uint8_t *b, size_t need)
{
    const td_v4_model *m = s->m;
    memset(b, 0, HEADER_BYTES);
    put32(b + 0, MAGIC);
    put32(b + 4, VERSION);
    put32(b + 8, HEADER_BYTES);
    put32(b + 12, (uint32_t)s->nlayers);
    put64(b + 16, td_v4_layout_fingerprint(&m->c));
    put64(b + 24, (uint64_t)s->pos);
    put64(b + 32, (uint64_t)need);
    put32(b + 40, (uint32_t)m->rec);
    put32(b + 44, (uint32_t)m->ikrec);
    put32(b + 48, (uint32_t)m->c.window);
    put64(b + 56, (uint64_t)s->mtp_pos);
}

/* The main layers' sections, then what td_v4_seq_seal adds: one place writes
 * the header, the MTP sections and the checksum. */
td_err td_v4_seq_save(const td_v4_seq *s, void *buf, size_t cap, size_t *written)
{
    if (cap < td_v4_seq_state_size(s))
        return TD_ERANGE;
    uint8_t *b = (uint8_t *)buf + HEADER_BYTES;
    for (int l = 0; l < s->m->c.n_layers; l++)
        b = layer_io((td_v4_seq *)s, l, s->pos, b, 1);
    return td_v4_seq_seal(s, buf, cap, written);
}

td_err td_v4_seq_seal(const td_v4_seq *s, void *buf, size_t cap, size_t *written)
{
    size_t need = td_v4_seq_state_size(s);
    if (cap < need)
        return TD_ERANGE;
    uint8_t *b = buf;
    put_header(s, b, need);
    const td_v4_model *m = s->m;
    for (int l = m->c.n_layers; l < s->nlayers; l++)  /* the MTP block's, not run by forward */
        td_v4_seq_save_layer(s, l, s->pos, buf, cap);
    put64(b + need - 8, XXH3_64bits(b, need - 8));
    *written = need;
    return TD_OK;
}

/* Checks the header of a len-byte state for s: magic, version, geometry,
 * the length it records and the length its token counts imply. Reads only
 * buf[0..HEADER_BYTES), so the streamed loader can call it before the rest
 * has arrived. */
static td_err check_header(const td_v4_seq *s, const uint8_t *b, size_t len, int64_t *pos_out,
                           int64_t *mtp_out, char *err, size_t errlen)
{
    const td_v4_model *m = s->m;
    if (len < HEADER_BYTES + 8)
        return td_errf(err, errlen, TD_ECORRUPT, "state: %zu bytes is shorter than a header", len);
    if (get32(b) != MAGIC)
        return td_errf(err, errlen, TD_EFORMAT, "state: bad magic");
    if (get32(b + 4) != VERSION || get32(b + 8) != HEADER_BYTES)
        return td_errf(err, errlen, TD_EFORMAT, "state: layout version %u, expected %u",
                       get32(b + 4), VERSION);
    if (get64(b + 16) != td_v4_layout_fingerprint(&m->c) ||
        get32(b + 12) != (uint32_t)s->nlayers || get32(b + 40) != (uint32_t)m->rec ||
        get32(b + 44) != (uint32_t)m->ikrec || get32(b + 48) != (uint32_t)m->c.window)
        return td_errf(err, errlen, TD_EFORMAT,
                       "state: written for a model of another geometry (fingerprint mismatch)");
    uint64_t pos = get64(b + 24), total = get64(b + 32), mtp = get64(b + 56);
    if (total != len)
        return td_errf(err, errlen, TD_ECORRUPT, "state: header says %llu bytes, got %zu",
                       (unsigned long long)total, len);
    if (pos > (uint64_t)s->cap || mtp > (uint64_t)s->cap)
        return td_errf(err, errlen, TD_ETOOLONG,
                       "state: covers %llu tokens, the sequence holds %lld",
                       (unsigned long long)pos, (long long)s->cap);
    size_t need = td_v4_state_size_at(m, (int64_t)pos, (int64_t)mtp);
    if (need != len)
        return td_errf(err, errlen, TD_ECORRUPT,
                       "state: %zu bytes do not match %llu tokens (%zu expected)",
                       len, (unsigned long long)pos, need);
    *pos_out = (int64_t)pos;
    *mtp_out = (int64_t)mtp;
    return TD_OK;
}

td_err td_v4_seq_load(td_v4_seq *s, const void *buf, size_t len, char *err, size_t errlen)
{
    const uint8_t *b = buf;
    int64_t pos, mtp;
    /* Everything, the checksum included, before touching the sequence, so
     * a bad buffer leaves it as it was (decode relies on that). */
    td_err r = check_header(s, b, len, &pos, &mtp, err, errlen);
    if (r)
        return r;
    if (get64(b + len - 8) != XXH3_64bits(b, len - 8))
        return td_errf(err, errlen, TD_ECORRUPT, "state: checksum mismatch");
    td_v4_seq_reset(s);
    s->pos = pos;
    s->mtp_pos = mtp;
    layers_io(s, (uint8_t *)b + HEADER_BYTES, 0);
    return TD_OK;
}

/* ---- streamed load ------------------------------------------------------ */

struct td_v4_seq_loader {
    td_v4_seq *s;
    size_t len;                  /* bytes the state has */
    size_t avail;                /* bytes seen so far (the last feed's avail) */
    int started;                 /* the header was checked, s reset */
    int l, part;                 /* the part being loaded: layer, PART_* */
    size_t part_done;            /* its bytes loaded so far */
    td_err failed;               /* sticky: the first error */
    int64_t pos, mtp;            /* from the header; s->pos stays 0 until the end */
    uint64_t want;               /* the stored checksum, once the last 8 bytes came */
    XXH3_state_t *sum;           /* over the bytes loaded so far, in order */
    size_t offs[TD_V4_MAX_LAYERS + 1]; /* section offsets, offs[nlayers] = len - 8 */
};

td_err td_v4_seq_load_begin(td_v4_seq_loader **out, td_v4_seq *s, size_t len)
{
    *out = NULL;
    td_v4_seq_loader *ld = calloc(1, sizeof(*ld));
    if (!ld)
        return TD_ENOMEM;
    /* XXH3's state wants 64-byte alignment: its own allocator provides it. */
    ld->sum = XXH3_createState();
    if (!ld->sum) {
        free(ld);
        return TD_ENOMEM;
    }
    ld->s = s;
    ld->len = len;
    *out = ld;
    return TD_OK;
}

/* Records the first error, empties the sequence and returns the error. */
static td_err load_fail(td_v4_seq_loader *ld, td_err r)
{
    ld->failed = r;
    td_v4_seq_reset(ld->s);
    return r;
}

td_err td_v4_seq_load_feed(td_v4_seq_loader *ld, const void *buf, size_t avail, char *err,
                           size_t errlen)
{
    const uint8_t *b = buf;
    td_v4_seq *s = ld->s;
    if (ld->failed)
        return td_errf(err, errlen, ld->failed, "state: the load already failed (%s)",
                       td_strerror(ld->failed));
    if (avail < ld->avail || avail > ld->len)
        return load_fail(ld, td_errf(err, errlen, TD_EINVAL,
                                     "state: fed %zu bytes after %zu, of %zu", avail, ld->avail,
                                     ld->len));
    ld->avail = avail;
    if (!ld->started) {
        /* A state too short for a header fails at once, not never. */
        if (avail < HEADER_BYTES && ld->len >= HEADER_BYTES + 8)
            return TD_OK;
        td_err r = check_header(s, b, ld->len, &ld->pos, &ld->mtp, err, errlen);
        if (r)
            return load_fail(ld, r);
        td_v4_state_offsets(s->m, ld->pos, ld->mtp, ld->offs);
        XXH3_64bits_reset(ld->sum);
        XXH3_64bits_update(ld->sum, b, HEADER_BYTES);
        td_v4_seq_reset(s);
        ld->started = 1;
    }
    /* Part by part in file order, so the checksum folds bytes in order; the
     * record arrays as far as avail goes, the rest once whole. */
    while (ld->l < s->nlayers) {
        int l = ld->l, R = s->layer[l].ratio;
        layer_plan p = plan_at(s->m, R, l >= s->m->c.n_layers ? ld->mtp : ld->pos);
        size_t start = ld->offs[l], n = part_bytes(s->m, &p, R, ld->part);
        for (int i = 0; i < ld->part; i++)
            start += part_bytes(s->m, &p, R, i);
        size_t have = avail > start ? avail - start : 0, upto = have < n ? have : n;
        if (upto < n && ld->part != PART_COMP && ld->part != PART_IKEY)
            upto = 0;
        if (upto > ld->part_done) {
            part_io(s, l, &p, ld->part, (uint8_t *)b + start, ld->part_done, upto, 0);
            XXH3_64bits_update(ld->sum, b + start + ld->part_done, upto - ld->part_done);
            ld->part_done = upto;
        }
        if (ld->part_done < n)
            break;
        ld->part_done = 0;
        if (++ld->part == N_PARTS) {
            ld->part = 0;
            ld->l++;
        }
    }
    if (avail == ld->len)
        ld->want = get64(b + ld->len - 8);
    return TD_OK;
}

td_err td_v4_seq_load_end(td_v4_seq_loader *ld, char *err, size_t errlen)
{
    td_err r = ld->failed;
    if (r)
        td_errf(err, errlen, r, "state: the load failed (%s)", td_strerror(r));
    else if (ld->avail != ld->len)
        r = load_fail(ld, td_errf(err, errlen, TD_ECORRUPT, "state: ended after %zu of %zu bytes",
                                  ld->avail, ld->len));
    else if (XXH3_64bits_digest(ld->sum) != ld->want)
        r = load_fail(ld, td_errf(err, errlen, TD_ECORRUPT, "state: checksum mismatch"));
    if (!r) {
        ld->s->pos = ld->pos;
        ld->s->mtp_pos = ld->mtp;
    }
    XXH3_freeState(ld->sum);
    free(ld);
    return r;
}

void td_v4_seq_load_abort(td_v4_seq_loader *ld)
{
    if (!ld)
        return;
    td_v4_seq_reset(ld->s);
    XXH3_freeState(ld->sum);
    free(ld);
}

/* Synthetic contents for benchmarks: decode cost depends on how much state
 * there is, not on its values, and prefilling 128K tokens on a CPU to get
 * there would take hours. Every record is a valid encoding (no NaN codes,
 * sane scales), so attention and the indexer run on ordinary numbers. */
static uint64_t next_rand(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void fill_kvrec(const td_v4_model *m, uint8_t *rec, uint64_t *rng)
{
    int nope = m->nope, rd = m->c.rope_dim;
    for (int i = 0; i < nope; i++) {
        uint8_t q = (uint8_t)next_rand(rng);
        rec[i] = (q & 0x7f) == 0x7f ? 0x70 : q;
    }
    for (int i = 0; i < rd; i++) {
        float v = ((int)(next_rand(rng) % 2001) - 1000) * 1e-3f;
        uint16_t h = td_f32_to_bf16(v);
        rec[nope + 2 * i] = (uint8_t)h;
        rec[nope + 2 * i + 1] = (uint8_t)(h >> 8);
    }
    for (int b = 0; b < nope / 64; b++)
        rec[nope + 2 * rd + b] = (uint8_t)(127 - 8);
}

/* A record's random stream: a function of (seed, layer, part, index) alone,
 * so the states of one seed at different lengths share their records'
 * bytes, as real states of one token sequence do (td_v4_state_range_spans). */
static uint64_t rec_rng(uint64_t seed, int l, int part, int64_t j)
{
    uint64_t z = seed ^ ((uint64_t)l << 56) ^ ((uint64_t)part << 48) ^ (uint64_t)j;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z | 1;
}

void td_v4_seq_fill_synthetic(td_v4_seq *s, int64_t pos, uint64_t seed)
{
    const td_v4_model *m = s->m;
    td_v4_seq_reset(s);
    if (pos > s->cap)
        pos = s->cap;
    for (int l = 0; l < s->nlayers; l++) {
        td_v4_layer_state *st = &s->layer[l];
        uint64_t rng = rec_rng(seed, l, PART_WIN, pos);
        for (int t = 0; t < m->c.window; t++)
            fill_kvrec(m, st->win + (size_t)t * m->rec, &rng);
        int R = st->ratio;
        if (R > 0)
            for (int64_t j = 0; j < pos / R; j++) {
                rng = rec_rng(seed, l, PART_COMP, j);
                fill_kvrec(m, st->comp + (size_t)j * m->rec, &rng);
            }
        if (td_v4_is_csa(R))
            for (int64_t j = 0; j < pos / 4; j++) {
                uint8_t *k = st->ikey + (size_t)j * m->ikrec;
                int dI = m->c.index_head_dim;
                rng = rec_rng(seed, l, PART_IKEY, j);
                for (int i = 0; i < dI / 2; i++)
                    k[i] = (uint8_t)next_rand(&rng);
                for (int i = 0; i < dI / 32; i++)
                    k[dI / 2 + i] = 127 - 2;
            }
    }
    s->pos = pos;
}
