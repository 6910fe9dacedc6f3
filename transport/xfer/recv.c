/* td_xfer receiver (decode side): tickets, the completion and section
 * notes, the checks, the ack. See xfer.h and docs/transfer.md.
 *
 * Sections are checked as they land, not after the last put: each note
 * names a section whose puts the sender has flushed, with its XXH3-64;
 * xfer_check_some hashes what has landed a chunk at a time from the
 * progress loop, overlapped with the puts still in flight. What is left at
 * the completion is the last section and the table checks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "transport/xfer/xfer_int.h"

/* Hashed per progress call: small enough that tcp, which moves puts only
 * while we progress, keeps moving; large enough to amortise the call. */
enum { CHECK_CHUNK = 2u << 20 };
/* A bound on one transfer's notes, so a confused sender cannot make us
 * allocate without limit. */
enum { MAX_SECTIONS = 1u << 20 };

static td_xfer_recv *find_recv(td_xfer_ctx *ctx, uint64_t id)
{
    td_xfer_recv *r = ctx->recvs;
    while (r && r->id != id)
        r = r->next;
    return r;
}

ucs_status_t xfer_on_complete(void *arg, const void *header, size_t header_length, void *data,
                              size_t length, const ucp_am_recv_param_t *param)
{
    td_xfer_ctx *ctx = arg;
    (void)data;
    (void)length;
    wire_complete w;
    if (header_length != sizeof w) {
        td_log(TD_LOG_ERROR, "xfer: completion with a %zu-byte header dropped", header_length);
        return UCS_OK;
    }
    memcpy(&w, header, sizeof w);
    if (w.magic != COMPLETE_MAGIC) {
        td_log(TD_LOG_ERROR, "xfer: completion with bad magic 0x%08x dropped", w.magic);
        return UCS_OK;
    }
    td_xfer_recv *r = find_recv(ctx, w.id);
    if (!r || r->arrived || r->done) {
        /* No reply: the sender's lease runs out and it reports a timeout. */
        td_log(TD_LOG_ERROR, "xfer: completion for %s transfer %llu dropped",
               r ? "an already completed" : "an unknown", (unsigned long long)w.id);
        return UCS_OK;
    }
    r->got = (td_xfer_desc){
        .transfer_id = w.id, .layout_version = w.layout_version,
        .fingerprint = w.fingerprint, .tokens = w.tokens,
        .total_bytes = w.total_bytes, .checksum = w.checksum,
        .first_token = w.first_token,
    };
    r->want_secs = w.sections;
    r->reply_ep = (param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) ? param->reply_ep : NULL;
    r->arrived = 1;
    return UCS_OK;
}

/* Names a section in a refusal: "section 3 [4096, +8192)". */
static const char *sec_name(const recv_sec *s, char *buf, size_t len)
{
    snprintf(buf, len, "section %u [%llu, +%llu)", s->index, (unsigned long long)s->off,
             (unsigned long long)s->len);
    return buf;
}

/* One note: recorded, and checked against the buffer before any byte of
 * the section is read (one outside it would have us hash memory that is
 * not ours). */
static void landed(td_xfer_recv *r, const wire_landed *w)
{
    if (r->n_secs == r->cap_secs) {
        uint32_t cap = r->cap_secs ? r->cap_secs * 2 : 64;
        recv_sec *p = cap <= MAX_SECTIONS ? realloc(r->secs, cap * sizeof *p) : NULL;
        if (!p) {
            /* Refused below as a missing section: never accepted unchecked. */
            if (!r->sec_err)
                r->sec_err = td_errf(r->msg, MSG_MAX, TD_ENOMEM,
                                     "no room for the notes of %u sections", r->n_secs + 1);
            return;
        }
        r->secs = p;
        r->cap_secs = cap;
    }
    recv_sec *s = &r->secs[r->n_secs++];
    *s = (recv_sec){ .off = w->off, .len = w->len, .sum = w->sum, .index = w->index };
    char name[96];
    if ((w->off > r->cap || w->len > r->cap - w->off) && !r->sec_err)
        r->sec_err = td_errf(r->msg, MSG_MAX, TD_ECORRUPT, "%s lies outside the %zu-byte "
                             "receive buffer", sec_name(s, name, sizeof name), r->cap);
}

ucs_status_t xfer_on_landed(void *arg, const void *header, size_t header_length, void *data,
                            size_t length, const ucp_am_recv_param_t *param)
{
    td_xfer_ctx *ctx = arg;
    (void)header;
    /* Sent eager, so the data is here; anything else is not ours. */
    if (header_length || (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) ||
        length % sizeof(wire_landed)) {
        td_log(TD_LOG_ERROR, "xfer: malformed section notes (%zu bytes) dropped", length);
        return UCS_OK;
    }
    for (size_t i = 0; i < length / sizeof(wire_landed); i++) {
        wire_landed w;
        memcpy(&w, (const uint8_t *)data + i * sizeof w, sizeof w);
        td_xfer_recv *r = w.magic == LANDED_MAGIC ? find_recv(ctx, w.id) : NULL;
        if (r && !r->done)
            landed(r, &w);
        else
            td_debug("xfer: section note for transfer %llu dropped", (unsigned long long)w.id);
    }
    return UCS_OK;
}

/* Hashes up to `budget` bytes of r's landed sections; returns the bytes
 * hashed. A section is hashed in one pass (streamed across calls), so its
 * bytes are read after its flush: what the sender put is what is judged. */
static size_t check_recv(td_xfer_recv *r, size_t budget)
{
    size_t done = 0;
    while (!r->sec_err && r->n_checked < r->n_secs && done < budget) {
        recv_sec *s = &r->secs[r->n_checked];
        if (r->hash_pos == 0)
            r->ctx->h->reset(r->hs);
        size_t n = s->len - r->hash_pos;
        if (n > budget - done)
            n = budget - done;
        r->ctx->h->update(r->hs, (const uint8_t *)r->buf + s->off + r->hash_pos, n);
        r->hash_pos += n;
        done += n;
        if (r->hash_pos < s->len)
            break;
        uint64_t sum = r->ctx->h->digest(r->hs);
        char name[96];
        if (sum != s->sum)
            r->sec_err = td_errf(r->msg, MSG_MAX, TD_ECORRUPT,
                                 "checksum of the received bytes of %s %016llx, sender says "
                                 "%016llx", sec_name(s, name, sizeof name),
                                 (unsigned long long)sum, (unsigned long long)s->sum);
        r->hash_pos = 0;
        r->n_checked++;
    }
    return done;
}

size_t xfer_check_some(td_xfer_ctx *ctx)
{
    size_t done = 0;
    for (td_xfer_recv *r = ctx->recvs; r && done < CHECK_CHUNK; r = r->next)
        if (!r->done)
            done += check_recv(r, CHECK_CHUNK - done);
    return done;
}

/* ---- opening ---- */

td_err td_xfer_recv_open_at(td_xfer_ctx *ctx, uint64_t id, td_xfer_region *g, size_t off,
                            size_t cap, const td_xfer_desc *expect, td_xfer_recv **out,
                            char *err, size_t errlen)
{
    if (!ctx || !g || g->ctx != ctx || cap == 0 || !expect || !out)
        return td_errf(err, errlen, TD_EINVAL, "recv_open: missing region or expectations");
    if (off > g->size || cap > g->size - off)
        return td_errf(err, errlen, TD_ERANGE, "recv_open: [%zu, +%zu) outside the %zu-byte "
                       "region", off, cap, g->size);
    if (find_recv(ctx, id))
        return td_errf(err, errlen, TD_EBUSY, "transfer %llu already open",
                       (unsigned long long)id);
    td_xfer_recv *r = calloc(1, sizeof *r);
    if (!r)
        return TD_ENOMEM;
    r->ctx = ctx;
    r->id = id;
    r->region = g;
    r->buf = (uint8_t *)g->buf + off;
    r->cap = cap;
    r->expect = *expect;
    /* Ticket: magic, rkey length, id, remote address, capacity, zero, rkey. */
    r->ticket_len = TICKET_HDR + g->rkey_len;
    r->ticket = malloc(r->ticket_len);
    r->hs = ctx->h->create();
    if (!r->ticket || !r->hs) {
        if (r->hs)
            ctx->h->destroy(r->hs);
        free(r->ticket);
        free(r);
        return TD_ENOMEM;
    }
    put_u32(r->ticket, TICKET_MAGIC);
    put_u32(r->ticket + 4, (uint32_t)g->rkey_len);
    put_u64(r->ticket + 8, id);
    put_u64(r->ticket + 16, (uint64_t)(uintptr_t)r->buf);
    put_u64(r->ticket + 24, cap);
    put_u64(r->ticket + 32, TICKET_KEEP_RKEY);  /* td_xfer_recv_open clears it */
    memcpy(r->ticket + TICKET_HDR, g->rkey, g->rkey_len);
    r->next = ctx->recvs;
    ctx->recvs = r;
    *out = r;
    return TD_OK;
}

td_err td_xfer_recv_open(td_xfer_ctx *ctx, uint64_t id, void *buf, size_t cap,
                         const td_xfer_desc *expect, td_xfer_recv **out,
                         char *err, size_t errlen)
{
    td_xfer_region *g;
    td_err e = td_xfer_region_create(ctx, buf, cap, &g, err, errlen);
    if (e)
        return e;
    e = td_xfer_recv_open_at(ctx, id, g, 0, cap, expect, out, err, errlen);
    if (e) {
        td_xfer_region_destroy(g);
        return e;
    }
    (*out)->owned = g;
    put_u64((*out)->ticket + 32, 0);  /* the region goes with this transfer */
    return TD_OK;
}

void *td_xfer_recv_data(const td_xfer_recv *r)
{
    return r ? r->buf : NULL;
}

td_err td_xfer_recv_ticket(const td_xfer_recv *r, const void **ticket, size_t *len)
{
    if (!r || !ticket || !len)
        return TD_EINVAL;
    *ticket = r->ticket;
    *len = r->ticket_len;
    return TD_OK;
}

/* ---- the verdict ---- */

static int by_index(const void *a, const void *b)
{
    uint32_t x = ((const recv_sec *)a)->index, y = ((const recv_sec *)b)->index;
    return (x > y) - (x < y);
}

static int by_offset(const void *a, const void *b)
{
    uint64_t x = ((const recv_sec *)a)->off, y = ((const recv_sec *)b)->off;
    return (x > y) - (x < y);
}

/* Whether the completion and everything it announces are here and
 * hashed (or something is already known to be wrong). */
static int ready(const td_xfer_recv *r)
{
    return r->arrived && (r->sec_err || r->n_secs > r->want_secs ||
                          (r->n_secs == r->want_secs && r->n_checked == r->n_secs));
}

/* The section table: one note per index 0..n-1, its checksum the
 * descriptor's, and the sections together cover [0, total_bytes). */
static td_err check_table(td_xfer_recv *r)
{
    const td_xfer_desc *g = &r->got;
    char *m = r->msg;
    if (r->n_secs != r->want_secs)
        return td_errf(m, MSG_MAX, TD_ECORRUPT, "%u section notes, the completion announces %u",
                       r->n_secs, r->want_secs);
    qsort(r->secs, r->n_secs, sizeof *r->secs, by_index);
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    for (uint32_t i = 0; i < r->n_secs; i++) {
        if (r->secs[i].index != i)
            return td_errf(m, MSG_MAX, TD_ECORRUPT, "section %u missing or repeated", i);
        table_add(&st, r->secs[i].off, r->secs[i].len, r->secs[i].sum);
    }
    uint64_t sum = XXH3_64bits_digest(&st);
    if (sum != g->checksum)
        return td_errf(m, MSG_MAX, TD_ECORRUPT,
                       "checksum of the %u received sections %016llx, descriptor says %016llx",
                       r->n_secs, (unsigned long long)sum, (unsigned long long)g->checksum);
    qsort(r->secs, r->n_secs, sizeof *r->secs, by_offset);
    uint64_t covered = 0;
    for (uint32_t i = 0; i < r->n_secs && covered < g->total_bytes; i++) {
        if (r->secs[i].off > covered)
            break;
        if (r->secs[i].off + r->secs[i].len > covered)
            covered = r->secs[i].off + r->secs[i].len;
    }
    if (covered < g->total_bytes)
        return td_errf(m, MSG_MAX, TD_ECORRUPT, "bytes from %llu of %llu never arrived",
                       (unsigned long long)covered, (unsigned long long)g->total_bytes);
    return TD_OK;
}

/* Judges a completion against what decode expects and the sections that
 * landed. The header checks go first, so a wrong-model transfer is named
 * as such even when its sections were hashed on arrival. */
static td_err verify(td_xfer_recv *r)
{
    const td_xfer_desc *e = &r->expect, *g = &r->got;
    char *m = r->msg;
    if (g->layout_version != e->layout_version)
        return td_errf(m, MSG_MAX, TD_EFORMAT, "layout version %u, expected %u",
                       g->layout_version, e->layout_version);
    if (g->fingerprint != e->fingerprint)
        return td_errf(m, MSG_MAX, TD_EFORMAT, "fingerprint %016llx, expected %016llx",
                       (unsigned long long)g->fingerprint, (unsigned long long)e->fingerprint);
    if (g->total_bytes > r->cap || (e->total_bytes && g->total_bytes != e->total_bytes))
        return td_errf(m, MSG_MAX, TD_ECORRUPT, "total bytes %llu, expected %llu (buffer %zu)",
                       (unsigned long long)g->total_bytes,
                       (unsigned long long)(e->total_bytes ? e->total_bytes : r->cap), r->cap);
    if (e->tokens && g->tokens != e->tokens)
        return td_errf(m, MSG_MAX, TD_ECORRUPT, "tokens %llu, expected %llu",
                       (unsigned long long)g->tokens, (unsigned long long)e->tokens);
    if (r->sec_err)
        return r->sec_err;  /* its message is in msg already */
    td_err t = check_table(r);
    if (t)
        return t;
    m[0] = '\0';
    return TD_OK;
}

/* Verifies what arrived and tells the sender the verdict. */
static void conclude(td_xfer_recv *r, int64_t deadline)
{
    td_xfer_ctx *ctx = r->ctx;
    r->verdict = verify(r);
    r->done = 1;
    if (r->verdict)
        td_log(TD_LOG_ERROR, "xfer: transfer %llu refused: %s",
               (unsigned long long)r->id, r->msg);
    /* Tell the sender, so it releases its buffer now rather than at the
     * end of its lease. A lost ack costs the sender a timeout only. */
    if (r->reply_ep) {
        wire_ack a = { .magic = ACK_MAGIC, .status = (uint32_t)r->verdict, .id = r->id };
        ucp_request_param_t p = { .op_attr_mask = 0 };
        void *req = ucp_am_send_nbx(r->reply_ep, AM_ACK, &a, sizeof a, r->msg,
                                    strlen(r->msg), &p);
        int64_t ack_deadline = xfer_now_ms() + 1000;
        ucs_status_t st = xfer_wait_req(ctx, req,
                                        ack_deadline > deadline ? ack_deadline : deadline);
        if (st != UCS_OK)
            td_log(TD_LOG_WARN, "xfer: ack for transfer %llu not sent: %s",
                   (unsigned long long)r->id, ucs_status_string(st));
    }
}

static td_err verdict(td_xfer_recv *r, td_xfer_desc *got, char *err, size_t errlen)
{
    if (r->verdict)
        return td_errf(err, errlen, r->verdict, "transfer %llu refused: %s",
                       (unsigned long long)r->id, r->msg);
    if (got)
        *got = r->got;
    return TD_OK;
}

td_err td_xfer_recv_wait(td_xfer_recv *r, int timeout_ms, td_xfer_desc *got,
                         char *err, size_t errlen)
{
    if (!r)
        return TD_EINVAL;
    td_xfer_ctx *ctx = r->ctx;
    int64_t deadline = xfer_now_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
    while (!r->done) {
        if (ready(r)) {
            conclude(r, deadline);
            break;
        }
        if (xfer_now_ms() > deadline) {
            if (!r->arrived)
                return td_errf(err, errlen, TD_ETIMEDOUT,
                               "transfer %llu: no completion within %d ms",
                               (unsigned long long)r->id, timeout_ms);
            return td_errf(err, errlen, TD_ETIMEDOUT,
                           "transfer %llu: %u of %u sections arrived and %u checked within "
                           "%d ms", (unsigned long long)r->id, r->n_secs, r->want_secs,
                           r->n_checked, timeout_ms);
        }
        if (!check_recv(r, CHECK_CHUNK))
            xfer_spin(ctx);
        else
            ucp_worker_progress(ctx->worker);
    }
    return verdict(r, got, err, errlen);
}

td_err td_xfer_recv_poll(td_xfer_recv *r, td_xfer_desc *got, char *err, size_t errlen)
{
    if (!r)
        return TD_EINVAL;
    if (!r->done && !ready(r))
        return TD_EBUSY;
    if (!r->done)
        conclude(r, xfer_now_ms());
    return verdict(r, got, err, errlen);
}

void td_xfer_recv_close(td_xfer_recv *r)
{
    if (!r)
        return;
    td_xfer_recv **pp = &r->ctx->recvs;
    while (*pp != r)
        pp = &(*pp)->next;
    *pp = r->next;
    free(r->ticket);
    free(r->secs);
    r->ctx->h->destroy(r->hs);
    td_xfer_region *owned = r->owned;
    free(r);
    td_xfer_region_destroy(owned);
}
