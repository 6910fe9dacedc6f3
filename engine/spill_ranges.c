/* Token ranges: how the disk tier files a long state so that what it shares
 * with other states is written once (docs/kvstore.md, "Token ranges").
 *
 * Most of a long state is compressed entries and indexer keys, and the
 * records pooled from tokens [t0, t1) are the same bytes in every state
 * that begins with those t1 tokens (td_v4_state_range_spans). So a state of
 * n >= C tokens (C = range_tokens) is filed as
 *   - for each whole range k of C tokens and each span j (a layer's
 *     compressed entries or indexer keys), the piece of span j that range k
 *     covers: a value at the chain key of tokens [0, (k+1)C), section
 *     SPILL_SECTION_RANGE | C/bt << 8 | j. Any state that extends those
 *     tokens (the next turn of the session, another session with the same
 *     prefix) finds it there and does not write it again;
 *   - the rest of the state (header, windows, the records past the last
 *     whole range, compressor tails, checksum) at the state's own key,
 *     section SPILL_SECTION_REST.
 * A resume reads the rest and every piece in one stream and puts each where
 * it belongs in a buffer of the whole state, and the streamed loader takes
 * the buffer's completed prefix as it grows, so loading overlaps reading as
 * for a state stored whole. The state's own checksum is checked at the end:
 * a piece of another state can never be served.
 *
 * Run by the KV thread. */
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "engine/spill_internal.h"
#include "model/state.h"

/* Where a state of n tokens splits: its whole ranges, and the spans of the
 * records they cover ([0, nr*C) per span; piece k of span j is the k-th
 * nr-th of it). */
typedef struct {
    size_t nr;                   /* whole ranges */
    int nspans;
    td_v4_span big[2 * TD_V4_MAX_LAYERS];
    size_t covered;              /* bytes of the spans */
} layout;

static uint32_t range_section(const td_spill *s, uint32_t C, int j)
{
    return SPILL_SECTION_RANGE | ((C / s->bt) & 0xffffu) << 8 | (uint32_t)j;
}

/* TD_EINVAL if the state is shorter than a range or C does not fit the
 * model (checked at open; an index may name anything). */
static td_err layout_of(const td_spill *s, uint64_t n, uint32_t C, size_t len, layout *L)
{
    if (C == 0 || C % s->bt || n < C)
        return TD_EINVAL;
    L->nr = n / C;
    /* The main layers' offsets do not depend on the MTP block's tokens. */
    L->nspans = td_v4_state_range_spans(s->m, (int64_t)n, 0, 0, (int64_t)(L->nr * C), L->big);
    if (L->nspans <= 0 || L->nspans > 255)
        return TD_EINVAL;
    L->covered = 0;
    for (int j = 0; j < L->nspans; j++) {
        if (L->big[j].len % L->nr || L->big[j].off + L->big[j].len > len)
            return TD_EINVAL;
        L->covered += L->big[j].len;
    }
    return L->covered + 72 <= len ? TD_OK : TD_EINVAL;
}

static size_t piece_len(const layout *L, int j)
{
    return L->big[j].len / L->nr;
}

static size_t piece_off(const layout *L, int j, size_t k)
{
    return L->big[j].off + k * piece_len(L, j);
}

/* Copies the state's bytes outside the spans to rest (dir 1) or back. */
static void rest_io(const layout *L, uint8_t *state, size_t len, uint8_t *rest, int dir)
{
    size_t at = 0, r = 0;
    for (int j = 0; j <= L->nspans; j++) {
        size_t end = j < L->nspans ? L->big[j].off : len;
        if (dir)
            memcpy(rest + r, state + at, end - at);
        else
            memcpy(state + at, rest + r, end - at);
        r += end - at;
        at = j < L->nspans ? end + L->big[j].len : len;
    }
}

bool td_spill_ranges_apply(const td_spill *s, uint64_t n, size_t len)
{
    layout L;
    return s->range_tokens && layout_of(s, n, s->range_tokens, len, &L) == TD_OK;
}

td_err td_spill_ranges_items(td_spill *s, const td_kv_key *keys, uint64_t n, const uint8_t *state,
                             size_t len, td_kv_key me, size_t extra, td_kv_item **items_out,
                             size_t *nitems, uint8_t **rest_out, size_t *written)
{
    layout L;
    uint32_t C = s->range_tokens;
    if (layout_of(s, n, C, len, &L))
        return TD_ENOTSUP;
    size_t cap = L.nr * (size_t)L.nspans + 1 + extra;
    td_kv_item *it = calloc(cap, sizeof *it);
    uint8_t *rest = malloc(len - L.covered);
    if (!it || !rest) {
        free(it);
        free(rest);
        return TD_ENOMEM;
    }
    size_t ni = 0, bytes = 0;
    for (size_t k = 0; k < L.nr; k++) {
        td_kv_key key = keys[(k + 1) * C / s->bt - 1];
        for (int j = 0; j < L.nspans; j++) {
            td_kv_entry_info info;
            uint32_t sec = range_section(s, C, j);
            td_kv_item *x = &it[ni++];
            *x = (td_kv_item){.key = key, .section = sec};
            /* Written by a state before: the same bytes (they depend on
             * the range's tokens only), kept and priced with this one. */
            if (td_kv_stat_entry(s->kv, key, sec, &info) == TD_OK &&
                info.value_bytes == piece_len(&L, j)) {
                x->keep = 1;
                continue;
            }
            x->tokens = (k + 1) * C;
            x->value = state + piece_off(&L, j, k);
            x->len = piece_len(&L, j);
            bytes += x->len;
        }
    }
    rest_io(&L, (uint8_t *)state, len, rest, 1);
    it[ni++] = (td_kv_item){.key = me, .section = SPILL_SECTION_REST, .tokens = n, .value = rest,
                            .len = len - L.covered};
    *items_out = it;
    *nitems = ni;
    *rest_out = rest;
    *written = bytes + (len - L.covered);
    return TD_OK;
}

bool td_spill_ranges_present(td_spill *s, td_kv *kv, const td_kv_key *keys, uint64_t n,
                             uint32_t C, size_t len, td_kv_key me)
{
    layout L;
    td_kv_entry_info info;
    if (layout_of(s, n, C, len, &L) ||
        td_kv_stat_entry(kv, me, SPILL_SECTION_REST, &info) ||
        info.value_bytes != len - L.covered || info.tokens != n)
        return false;
    for (size_t k = 0; k < L.nr; k++)
        for (int j = 0; j < L.nspans; j++)
            if (td_kv_stat_entry(kv, keys[(k + 1) * C / s->bt - 1], range_section(s, C, j),
                                 &info) || info.value_bytes != piece_len(&L, j))
                return false;
    return true;
}

/* The resume's reads, in file order after the rest: span by span, range
 * by range. `end[i]` is where the state is whole up to once item i and
 * everything before it are in (items in file order); the rest's parts
 * between the spans go in when item 0 lands. */
typedef struct {
    const layout *L;
    uint8_t *state, *rest;
    size_t len;
    uint8_t *in;                 /* per item: landed */
    size_t next;                 /* the first item not landed in order */
    size_t nitems;
    size_t avail;                /* the state's whole prefix, fed so far */
    td_v4_seq_loader *ld;
    td_err e;
    char err[256];
} assembly;

/* The state's prefix that is whole once items [0, next) are in. */
static size_t whole_upto(const assembly *a)
{
    const layout *L = a->L;
    if (a->next == 0)
        return 0;
    size_t pieces = a->next - 1;          /* pieces landed, in file order */
    if (pieces == a->nitems - 1)
        return a->len;
    int j = (int)(pieces / L->nr);
    size_t k = pieces % L->nr;
    return piece_off(L, j, k);            /* up to the first piece missing */
}

static void landed(size_t item, void *arg)
{
    assembly *a = arg;
    a->in[item] = 1;
    if (item == 0)
        rest_io(a->L, a->state, a->len, a->rest, 0);
    while (a->next < a->nitems && a->in[a->next])
        a->next++;
    size_t upto = whole_upto(a);
    if (upto > a->avail && !a->e) {
        a->avail = upto;
        a->e = td_v4_seq_load_feed(a->ld, a->state, upto, a->err, sizeof a->err);
    }
}

td_err td_spill_ranges_load(td_spill *s, td_kv *kv, const char *dir, td_v4_seq *seq,
                            const td_kv_key *keys, uint64_t n, uint32_t C, td_kv_key me,
                            size_t len, uint64_t sum, int *reset, char *err, size_t errlen)
{
    layout L;
    *reset = 0;
    if (layout_of(s, n, C, len, &L))
        return td_errf(err, errlen, TD_ECORRUPT, "kv spill: %s: an index names a state of %llu "
                       "tokens in ranges of %u that this model cannot have", dir,
                       (unsigned long long)n, C);
    if (!td_spill_ranges_present(s, kv, keys, n, C, len, me))
        return TD_ENOENT;  /* a part was evicted: not a fault */
    size_t ni = 1 + L.nr * (size_t)L.nspans;
    td_kv_get_item *gi = calloc(ni, sizeof *gi);
    assembly a = {.L = &L, .state = malloc(len), .rest = malloc(len - L.covered), .len = len,
                  .in = calloc(ni, 1), .nitems = ni};
    td_err e = TD_OK;
    if (!gi || !a.state || !a.rest || !a.in || td_v4_seq_load_begin(&a.ld, seq, len)) {
        e = td_errf(err, errlen, TD_ENOMEM, "kv spill: out of memory for a %zu-byte state", len);
        goto out;
    }
    gi[0] = (td_kv_get_item){.key = me, .section = SPILL_SECTION_REST, .buf = a.rest,
                             .cap = len - L.covered};
    size_t i = 1;
    for (int j = 0; j < L.nspans; j++)
        for (size_t k = 0; k < L.nr; k++)
            gi[i++] = (td_kv_get_item){.key = keys[(k + 1) * C / s->bt - 1],
                                       .section = range_section(s, C, j),
                                       .buf = a.state + piece_off(&L, j, k),
                                       .cap = piece_len(&L, j)};
    e = td_kv_get_many(kv, gi, ni, landed, &a, err, errlen);
    if (e == TD_ERANGE)
        e = td_errf(err, errlen, TD_ECORRUPT, "kv spill: %s: a part of the state at %llu tokens "
                    "is larger than its place", dir, (unsigned long long)n);
    for (size_t x = 0; !e && x < ni; x++)
        if (gi[x].len != gi[x].cap)
            e = td_errf(err, errlen, TD_ECORRUPT, "kv spill: %s: a part of the state at %llu "
                        "tokens is shorter than its place", dir, (unsigned long long)n);
    if (!e && (a.avail != len || spill_state_sum(a.state, len) != sum))
        e = td_errf(err, errlen, TD_ECORRUPT, "kv spill: %s: the state at %llu tokens is not "
                    "the one its index names", dir, (unsigned long long)n);
    if (!e && a.e)
        e = td_errf(err, errlen, a.e, "%s", a.err);
    if (e)
        td_v4_seq_load_abort(a.ld);
    else
        e = td_v4_seq_load_end(a.ld, err, errlen);
    a.ld = NULL;
    *reset = e != TD_OK;
out:
    if (a.ld)
        td_v4_seq_load_abort(a.ld);
    free(gi);
    free(a.state);
    free(a.rest);
    free(a.in);
    return e;
}
