/* td_xfer sender (prefill side): endpoints, puts, section notes, the
 * completion and the receiver's verdict. See xfer.h and docs/transfer.md.
 *
 * Each section is put, hashed (unless the caller knows its XXH3 already)
 * and followed by a non-blocking flush; when the flush completes, a note
 * {index, offset, length, XXH3} goes to the receiver, which checks the
 * section while later ones are still moving. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "transport/xfer/xfer_int.h"

ucs_status_t xfer_on_ack(void *arg, const void *header, size_t header_length, void *data,
                         size_t length, const ucp_am_recv_param_t *param)
{
    td_xfer_ctx *ctx = arg;
    wire_ack w;
    if (header_length != sizeof w)
        return UCS_OK;
    memcpy(&w, header, sizeof w);
    td_xfer_send *s = ctx->sends;
    while (s && s->id != w.id)
        s = s->next;
    if (w.magic != ACK_MAGIC || !s || s->acked)
        return UCS_OK;
    s->verdict = w.status < TD_ERR_COUNT ? (td_err)w.status : TD_ECORRUPT;
    s->msg[0] = '\0';
    /* The message is tiny, so it always arrives eagerly; a rendezvous
     * message would have no usable data pointer here. */
    if (!(param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) && data && length) {
        size_t n = length < MSG_MAX - 1 ? length : MSG_MAX - 1;
        memcpy(s->msg, data, n);
        s->msg[n] = '\0';
    }
    s->acked = 1;
    return UCS_OK;
}

/* ---- endpoints ---- */

static void on_ep_error(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    td_xfer_peer *p = arg;
    (void)ep;
    p->ep_status = status;
    td_log(TD_LOG_ERROR, "xfer: endpoint failed: %s", ucs_status_string(status));
}

td_err td_xfer_connect(td_xfer_ctx *ctx, const void *addr, size_t len,
                       int timeout_ms, td_xfer_peer **out, char *err, size_t errlen)
{
    if (!ctx || !addr || len == 0 || !out)
        return td_errf(err, errlen, TD_EINVAL, "connect: no worker address");
    td_xfer_peer *p = calloc(1, sizeof *p);
    if (!p)
        return TD_ENOMEM;
    p->ctx = ctx;
    p->ep_status = UCS_OK;
    /* See td_xfer_opts: peer error handling costs shared memory in 1.13. */
    ucp_ep_params_t ep = {
        .field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER,
        .address = addr,
        .err_mode = ctx->peer_errors ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE,
        .err_handler = { .cb = on_ep_error, .arg = p },
    };
    ucs_status_t st = ucp_ep_create(ctx->worker, &ep, &p->ep);
    if (st != UCS_OK) {
        free(p);
        return td_errf(err, errlen, TD_EIO, "ucp_ep_create: %s", ucs_status_string(st));
    }
    /* Finish wire-up now (platform notes: UCX 1.13 can hang the first send
     * on a fresh endpoint). The receiver must be progressing meanwhile. */
    ucp_request_param_t rp = { .op_attr_mask = 0 };
    st = xfer_wait_req(ctx, ucp_ep_flush_nbx(p->ep, &rp), xfer_now_ms() + timeout_ms);
    if (st == UCS_OK && p->ep_status != UCS_OK)
        st = p->ep_status;
    if (st != UCS_OK) {
        td_xfer_peer_close(p);
        return td_errf(err, errlen, st == UCS_ERR_TIMED_OUT ? TD_ETIMEDOUT : TD_EIO,
                       "connect: flushing the new endpoint: %s", ucs_status_string(st));
    }
    *out = p;
    return TD_OK;
}

void td_xfer_peer_close(td_xfer_peer *p)
{
    if (!p)
        return;
    /* With peer error handling, forced: every byte that mattered was
     * acknowledged at the application level, and a graceful close would
     * wait on a peer that may be gone. Without it UCX does not allow a
     * forced close, so flush (bounded: the peer must be progressing). */
    ucp_request_param_t rp = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
        .flags = p->ctx->peer_errors ? UCP_EP_CLOSE_FLAG_FORCE : 0,
    };
    for (int i = 0; i < RKEY_CACHE; i++)
        if (p->rkeys[i].packed) {
            if (p->rkeys[i].refs)
                td_log(TD_LOG_WARN, "xfer: peer closed under %u open sends",
                       p->rkeys[i].refs);
            ucp_rkey_destroy(p->rkeys[i].rkey);
            free(p->rkeys[i].packed);
        }
    ucs_status_t st = xfer_wait_req(p->ctx, ucp_ep_close_nbx(p->ep, &rp), xfer_now_ms() + 1000);
    if (st != UCS_OK && st != UCS_ERR_CANCELED && st != UCS_ERR_TIMED_OUT)
        td_debug("xfer: ep close: %s", ucs_status_string(st));
    free(p);
}

/* ---- sections ---- */

static void on_put_done(void *req, ucs_status_t status, void *user_data)
{
    td_xfer_send *s = user_data;
    s->pending--;
    if (status != UCS_OK && s->put_status == UCS_OK)
        s->put_status = status;
    ucp_request_free(req);
}

static void flushed_upto(td_xfer_send *s, uint32_t n)
{
    if (n > s->flushed)
        s->flushed = n;
}

/* A flush covers every put issued before it, so whichever completes
 * first releases the notes of all sections up to its own. */
static void on_flush_done(void *req, ucs_status_t status, void *user_data)
{
    flush_tag *tag = user_data;
    td_xfer_send *s = tag->s;
    s->pending--;
    if (status != UCS_OK && s->put_status == UCS_OK)
        s->put_status = status;
    else if (status == UCS_OK)
        flushed_upto(s, tag->index + 1);
    ucp_request_free(req);
}

/* Sends the notes of the sections whose puts are visible at the target,
 * in put order, as few AMs as the blocks allow. The data is the records
 * themselves, which stay put until the send is closed (UCX reads them
 * until the AM completes). Eager, so the receiver's handler always has
 * the bytes at hand: a batch is at most 64 notes, 2560 bytes. */
static void send_notes(td_xfer_send *s)
{
    while (s->noted < s->flushed && s->put_status == UCS_OK) {
        if (s->noted && s->noted % SEC_BLOCK == 0)
            s->note_blk = s->note_blk->next;
        uint32_t i = s->noted % SEC_BLOCK;
        uint32_t n = s->flushed - s->noted;
        if (n > SEC_BLOCK - i)
            n = SEC_BLOCK - i;
        ucp_request_param_t rp = {
            .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA |
                            UCP_OP_ATTR_FIELD_FLAGS,
            .cb.send = on_put_done,
            .user_data = s,
            .flags = UCP_AM_SEND_FLAG_EAGER,
        };
        void *req = ucp_am_send_nbx(s->peer->ep, AM_LANDED, NULL, 0, &s->note_blk->w[i],
                                    n * sizeof(wire_landed), &rp);
        if (UCS_PTR_IS_ERR(req)) {
            s->put_status = UCS_PTR_STATUS(req);
            td_log(TD_LOG_ERROR, "xfer: notes of sections %u..%u: %s", s->noted,
                   s->noted + n - 1, ucs_status_string(s->put_status));
            return;
        }
        if (req)
            s->pending++;
        s->noted += n;
    }
}

void xfer_send_notes(td_xfer_ctx *ctx)
{
    for (td_xfer_send *s = ctx->sends; s; s = s->next)
        send_notes(s);
}

/* The block for the next section's record; a new one every SEC_BLOCK
 * sections. */
static sec_block *next_block(td_xfer_send *s)
{
    uint32_t i = s->n_secs % SEC_BLOCK;
    if (i == 0 && (s->n_secs || !s->blocks)) {
        sec_block *b = malloc(sizeof *b);
        if (!b)
            return NULL;
        b->next = NULL;
        if (s->last)
            s->last->next = b;
        else
            s->blocks = s->note_blk = b;
        s->last = b;
    }
    return s->last;
}

td_err td_xfer_send_section(td_xfer_send *s, size_t off, size_t len, const uint64_t *sum)
{
    if (!s || off > s->size || len > s->size - off)
        return TD_EINVAL;
    if (len == 0)
        return TD_OK;
    if (s->put_status != UCS_OK || s->peer->ep_status != UCS_OK)
        return TD_EIO;
    sec_block *blk = next_block(s);
    if (!blk)
        return TD_ENOMEM;
    uint32_t bi = s->n_secs % SEC_BLOCK;
    ucp_request_param_t rp = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA |
                        UCP_OP_ATTR_FIELD_MEMH,
        .cb.send = on_put_done,
        .user_data = s,
        .memh = s->region->memh,
    };
    td_xfer_ctx *ctx = s->peer->ctx;
    if (!sum)
        ctx->h->reset(ctx->hs);
    /* Put and hashed a chunk at a time: on shared memory a put is a copy
     * done by the time it returns, so the chunk it just read is still in
     * L2 and the hash costs little more than the copy; hashed whole
     * afterwards, a large section would be read from DRAM twice. Over tcp
     * the puts move while we hash. */
    for (size_t pos = 0; pos < len; pos += PUT_CHUNK) {
        size_t n = len - pos < PUT_CHUNK ? len - pos : PUT_CHUNK;
        void *req = ucp_put_nbx(s->peer->ep, s->buf + off + pos, n, s->raddr + off + pos,
                                s->rkey, &rp);
        if (UCS_PTR_IS_ERR(req)) {
            s->put_status = UCS_PTR_STATUS(req);
            td_log(TD_LOG_ERROR, "xfer: put of %zu bytes at %zu: %s", n, off + pos,
                   ucs_status_string(s->put_status));
            return TD_EIO;
        }
        if (req)
            s->pending++;
        if (!sum)
            ctx->h->update(ctx->hs, s->buf + off + pos, n);
    }
    blk->w[bi] = (wire_landed){ .magic = LANDED_MAGIC, .index = s->n_secs, .id = s->id,
                                .off = off, .len = len,
                                .sum = sum ? *sum : ctx->h->digest(ctx->hs) };
    blk->tag[bi] = (flush_tag){ .s = s, .index = s->n_secs };
    s->n_secs++;
    s->unflushed += len;
    if (s->unflushed >= NOTE_BYTES) {
        /* The remaining ones are flushed (and noted) by td_xfer_send_finish. */
        s->unflushed = 0;
        ucp_request_param_t fp = {
            .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
            .cb.send = on_flush_done,
            .user_data = &blk->tag[bi],
        };
        void *req = ucp_ep_flush_nbx(s->peer->ep, &fp);
        if (UCS_PTR_IS_ERR(req)) {
            s->put_status = UCS_PTR_STATUS(req);
            return TD_EIO;
        }
        if (req)
            s->pending++;
        else
            flushed_upto(s, s->n_secs);
    }
    /* Let the put start moving while the caller computes the next layer. */
    ucp_worker_progress(ctx->worker);
    send_notes(s);
    return TD_OK;
}

/* ---- remote keys ---- */

/* The rkey for a packed key: from the peer's cache, or unpacked and
 * cached in a slot no open send uses (least recently used first). With
 * every slot busy it is unpacked for this send alone (*slot = NULL). A
 * stale entry (the receiver freed that memory and packed the same bytes
 * for new memory) would misdirect the puts, and the receiver would refuse
 * the state for its checksums: never silently accepted. */
static ucs_status_t rkey_get(td_xfer_peer *p, const uint8_t *packed, size_t len,
                             ucp_rkey_h *out, rkey_slot **slot)
{
    rkey_slot *free_slot = NULL;
    for (int i = 0; i < RKEY_CACHE; i++) {
        rkey_slot *k = &p->rkeys[i];
        if (k->packed && k->len == len && memcmp(k->packed, packed, len) == 0) {
            k->refs++;
            k->used = ++p->rkey_clock;
            *out = k->rkey;
            *slot = k;
            return UCS_OK;
        }
        if (!k->refs && (!free_slot || (free_slot->packed && (!k->packed ||
                                                              k->used < free_slot->used))))
            free_slot = k;
    }
    ucs_status_t st = ucp_ep_rkey_unpack(p->ep, packed, out);
    uint8_t *copy = st == UCS_OK && free_slot ? malloc(len) : NULL;
    *slot = NULL;
    if (!copy)
        return st;
    if (free_slot->packed) {
        ucp_rkey_destroy(free_slot->rkey);
        free(free_slot->packed);
    }
    memcpy(copy, packed, len);
    *free_slot = (rkey_slot){ .packed = copy, .len = len, .rkey = *out, .refs = 1,
                              .used = ++p->rkey_clock };
    *slot = free_slot;
    return UCS_OK;
}

static void rkey_put(td_xfer_send *s)
{
    if (s->rkey_slot)
        s->rkey_slot->refs--;
    else
        ucp_rkey_destroy(s->rkey);
}

/* ---- opening and finishing ---- */

td_err td_xfer_send_open_at(td_xfer_peer *p, const void *ticket, size_t ticket_len,
                            td_xfer_region *g, size_t off, size_t size, td_xfer_send **out,
                            char *err, size_t errlen)
{
    if (!p || !ticket || !g || g->ctx != p->ctx || size == 0 || !out)
        return td_errf(err, errlen, TD_EINVAL, "send_open: missing ticket or region");
    if (off > g->size || size > g->size - off)
        return td_errf(err, errlen, TD_ERANGE, "send_open: [%zu, +%zu) outside the %zu-byte "
                       "region", off, size, g->size);
    const uint8_t *t = ticket;
    if (ticket_len < TICKET_HDR || get_u32(t) != TICKET_MAGIC ||
        get_u32(t + 4) != ticket_len - TICKET_HDR)
        return td_errf(err, errlen, TD_ECORRUPT, "send_open: malformed ticket (%zu bytes)",
                       ticket_len);
    uint64_t rcap = get_u64(t + 24);
    if (size > rcap)
        return td_errf(err, errlen, TD_ERANGE, "send_open: %zu bytes do not fit the %llu-byte "
                       "receive buffer", size, (unsigned long long)rcap);
    td_xfer_send *s = calloc(1, sizeof *s);
    if (!s)
        return TD_ENOMEM;
    s->peer = p;
    s->id = get_u64(t + 8);
    s->raddr = get_u64(t + 16);
    s->rcap = rcap;
    s->region = g;
    s->buf = (const uint8_t *)g->buf + off;
    s->size = size;
    ucs_status_t st = get_u64(t + 32) & TICKET_KEEP_RKEY
                          ? rkey_get(p, t + TICKET_HDR, ticket_len - TICKET_HDR, &s->rkey,
                                     &s->rkey_slot)
                          : ucp_ep_rkey_unpack(p->ep, t + TICKET_HDR, &s->rkey);
    if (st != UCS_OK) {
        free(s);
        return td_errf(err, errlen, TD_ECORRUPT, "ucp_ep_rkey_unpack: %s",
                       ucs_status_string(st));
    }
    s->put_status = UCS_OK;
    s->next = p->ctx->sends;
    p->ctx->sends = s;
    *out = s;
    return TD_OK;
}

td_err td_xfer_send_open(td_xfer_peer *p, const void *ticket, size_t ticket_len,
                         const void *buf, size_t size, td_xfer_send **out,
                         char *err, size_t errlen)
{
    if (!p || !ticket || !buf || size == 0 || !out)
        return td_errf(err, errlen, TD_EINVAL, "send_open: missing ticket or buffer");
    td_xfer_region *g;
    td_err e = td_xfer_region_create(p->ctx, (void *)buf, size, &g, err, errlen);
    if (e)
        return e;
    e = td_xfer_send_open_at(p, ticket, ticket_len, g, 0, size, out, err, errlen);
    if (e) {
        td_xfer_region_destroy(g);
        return e;
    }
    (*out)->owned = g;
    return TD_OK;
}

td_err td_xfer_send_finish(td_xfer_send *s, td_xfer_desc *desc, int lease_ms,
                           char *err, size_t errlen)
{
    if (!s || !desc)
        return TD_EINVAL;
    td_xfer_ctx *ctx = s->peer->ctx;
    int64_t deadline = xfer_now_ms() + (lease_ms < 0 ? 0 : lease_ms);
    ucp_request_param_t rp = { .op_attr_mask = 0 };
    /* The flush makes every put visible at the target before the last
     * notes and the completion can overtake it. */
    ucs_status_t st = xfer_wait_req(ctx, ucp_ep_flush_nbx(s->peer->ep, &rp), deadline);
    if (st == UCS_OK)
        flushed_upto(s, s->n_secs);
    send_notes(s);
    while (st == UCS_OK && s->pending && xfer_now_ms() <= deadline) {
        xfer_spin(ctx);
        send_notes(s);
    }
    if (st == UCS_OK)
        st = s->put_status != UCS_OK ? s->put_status : s->peer->ep_status;
    if (st == UCS_OK && s->pending)
        st = UCS_ERR_TIMED_OUT;
    if (st != UCS_OK)
        return td_errf(err, errlen, st == UCS_ERR_TIMED_OUT ? TD_ETIMEDOUT : TD_EIO,
                       "transfer %llu: flushing the puts: %s", (unsigned long long)s->id,
                       ucs_status_string(st));
    XXH3_state_t tab;
    XXH3_64bits_reset(&tab);
    sec_block *b = s->blocks;
    for (uint32_t i = 0; i < s->n_secs; i++) {
        if (i && i % SEC_BLOCK == 0)
            b = b->next;
        const wire_landed *w = &b->w[i % SEC_BLOCK];
        table_add(&tab, w->off, w->len, w->sum);
    }
    desc->checksum = XXH3_64bits_digest(&tab);
    wire_complete w = {
        .magic = COMPLETE_MAGIC, .layout_version = desc->layout_version, .id = s->id,
        .fingerprint = desc->fingerprint, .tokens = desc->tokens,
        .total_bytes = desc->total_bytes, .checksum = desc->checksum,
        .first_token = desc->first_token, .sections = s->n_secs,
    };
    if (desc->transfer_id != s->id)
        td_log(TD_LOG_WARN, "xfer: descriptor names transfer %llu, ticket %llu: using the ticket's",
               (unsigned long long)desc->transfer_id, (unsigned long long)s->id);
    /* REPLY gives the receiver an endpoint back to us for the ack. */
    ucp_request_param_t ap = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
        .flags = UCP_AM_SEND_FLAG_REPLY,
    };
    st = xfer_wait_req(ctx, ucp_am_send_nbx(s->peer->ep, AM_COMPLETE, &w, sizeof w, NULL, 0,
                                            &ap), deadline);
    if (st != UCS_OK)
        return td_errf(err, errlen, st == UCS_ERR_TIMED_OUT ? TD_ETIMEDOUT : TD_EIO,
                       "transfer %llu: sending the completion: %s", (unsigned long long)s->id,
                       ucs_status_string(st));
    while (!s->acked && s->peer->ep_status == UCS_OK && xfer_now_ms() <= deadline)
        xfer_spin(ctx);
    if (!s->acked)
        return td_errf(err, errlen, s->peer->ep_status != UCS_OK ? TD_EIO : TD_ETIMEDOUT,
                       "transfer %llu: no answer from the receiver within the %d ms lease",
                       (unsigned long long)s->id, lease_ms);
    if (s->verdict)
        return td_errf(err, errlen, s->verdict, "transfer %llu refused by the receiver: %s",
                       (unsigned long long)s->id, s->msg);
    return TD_OK;
}

void td_xfer_send_close(td_xfer_send *s)
{
    if (!s)
        return;
    td_xfer_ctx *ctx = s->peer->ctx;
    /* Puts, flushes and notes in flight hold pointers to s and its
     * records: wait for them (bounded), and if they never finish keep all
     * of it alive, memory registration included, rather than risk a use
     * after free or a put into unmapped memory. */
    int64_t deadline = xfer_now_ms() + 2000;
    while (s->pending && s->peer->ep_status == UCS_OK && xfer_now_ms() <= deadline)
        xfer_spin(ctx);
    td_xfer_send **pp = &ctx->sends;
    while (*pp != s)
        pp = &(*pp)->next;
    *pp = s->next;
    if (s->pending) {
        td_log(TD_LOG_WARN, "xfer: %zu operations of transfer %llu still pending at close",
               s->pending, (unsigned long long)s->id);
        return;
    }
    rkey_put(s);
    while (s->blocks) {
        sec_block *b = s->blocks;
        s->blocks = b->next;
        free(b);
    }
    td_xfer_region *owned = s->owned;
    free(s);
    td_xfer_region_destroy(owned);
}
