/* td_xfer: KV state bytes over UCX (see xfer.h and docs/transfer.md).
 * This file: the context, its progress, registered regions. The receiver
 * is recv.c, the sender send.c; wire formats and structs in xfer_int.h.
 *
 * Wire formats are fixed-width little-endian fields (this engine targets
 * x86-64 and aarch64, both little-endian; a big-endian host fails to
 * compile rather than silently mis-reading a peer). */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "transport/xfer/xfer_int.h"

uint64_t td_xfer_checksum(const void *buf, size_t len)
{
    return xfer_hash()->hash(buf, len);
}

unsigned td_xfer_progress(td_xfer_ctx *ctx)
{
    unsigned n = 0, k;
    while ((k = ucp_worker_progress(ctx->worker)))
        n += k;
    /* Flushes that completed above release their sections' notes; the
     * receiver checks sections that have landed, a chunk at a time. */
    xfer_send_notes(ctx);
    if (xfer_check_some(ctx))
        n++;
    return n;
}

/* One step of a busy wait. After a short spin with nothing for UCX to do,
 * the CPU goes to whoever else wants it: on a host with more runnable
 * threads than cores, that is often the peer we wait for (its completion,
 * its ack), and a spin that never yields costs a whole scheduler slice per
 * round trip. The spin first, because a peer on its own core answers
 * within microseconds. (Sleeping on the worker's event fd instead, with
 * UCP_FEATURE_WAKEUP, measured no better here: 0.8-1.1x of this.) */
void xfer_spin(td_xfer_ctx *ctx)
{
    if (ucp_worker_progress(ctx->worker))
        ctx->idle = 0;
    else if (++ctx->idle >= SPIN_BEFORE_YIELD)
        sched_yield();
}

/* Progresses until req completes or the deadline passes. A request that
 * times out is released to UCX (freed when it completes), never reused. */
ucs_status_t xfer_wait_req(td_xfer_ctx *ctx, void *req, int64_t deadline)
{
    if (req == NULL)
        return UCS_OK;
    if (UCS_PTR_IS_ERR(req))
        return UCS_PTR_STATUS(req);
    ucs_status_t st;
    while ((st = ucp_request_check_status(req)) == UCS_INPROGRESS) {
        if (xfer_now_ms() > deadline) {
            ucp_request_cancel(ctx->worker, req);
            ucp_request_free(req);
            return UCS_ERR_TIMED_OUT;
        }
        xfer_spin(ctx);
    }
    ucp_request_free(req);
    return st;
}

/* ---- context ---- */

/* ---- context ---- */

td_err td_xfer_ctx_create(const td_xfer_opts *opts, td_xfer_ctx **out, char *err,
                          size_t errlen)
{
    td_xfer_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return TD_ENOMEM;
    ctx->peer_errors = opts ? opts->peer_errors : 0;
    ctx->h = xfer_hash();
    td_debug("xfer: XXH3 from %s", ctx->h->name);
    if (!(ctx->hs = ctx->h->create())) {
        free(ctx);
        return TD_ENOMEM;
    }
    ucp_config_t *cfg;
    ucs_status_t st = ucp_config_read(NULL, NULL, &cfg);
    if (st != UCS_OK) {
        ctx->h->destroy(ctx->hs);
        free(ctx);
        return td_errf(err, errlen, TD_EIO, "ucp_config_read: %s", ucs_status_string(st));
    }
    ucp_params_t params = {
        .field_mask = UCP_PARAM_FIELD_FEATURES,
        .features = UCP_FEATURE_RMA | UCP_FEATURE_AM,
    };
    st = ucp_init(&params, cfg, &ctx->ucp);
    ucp_config_release(cfg);
    if (st != UCS_OK) {
        ctx->h->destroy(ctx->hs);
        free(ctx);
        return td_errf(err, errlen, TD_EIO, "ucp_init: %s", ucs_status_string(st));
    }
    ucp_worker_params_t wp = {
        .field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
        .thread_mode = UCS_THREAD_MODE_SINGLE,
    };
    st = ucp_worker_create(ctx->ucp, &wp, &ctx->worker);
    if (st == UCS_OK)
        st = ucp_worker_get_address(ctx->worker, &ctx->addr, &ctx->addr_len);
    static const struct {
        unsigned id;
        ucp_am_recv_callback_t cb;
    } handlers[] = {
        { AM_COMPLETE, xfer_on_complete }, { AM_ACK, xfer_on_ack },
        { AM_LANDED, xfer_on_landed },
    };
    for (size_t i = 0; st == UCS_OK && i < sizeof handlers / sizeof *handlers; i++) {
        ucp_am_handler_param_t hp = {
            .field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                          UCP_AM_HANDLER_PARAM_FIELD_ARG,
            .id = handlers[i].id,
            .cb = handlers[i].cb,
            .arg = ctx,
        };
        st = ucp_worker_set_am_recv_handler(ctx->worker, &hp);
    }
    if (st != UCS_OK) {
        td_xfer_ctx_destroy(ctx);
        return td_errf(err, errlen, TD_EIO, "ucp worker: %s", ucs_status_string(st));
    }
    *out = ctx;
    return TD_OK;
}

void td_xfer_ctx_destroy(td_xfer_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->recvs || ctx->sends)
        td_log(TD_LOG_WARN, "xfer: context destroyed with transfers still open");
    if (ctx->addr)
        ucp_worker_release_address(ctx->worker, ctx->addr);
    if (ctx->worker)
        ucp_worker_destroy(ctx->worker);
    if (ctx->ucp)
        ucp_cleanup(ctx->ucp);
    ctx->h->destroy(ctx->hs);
    free(ctx);
}

td_err td_xfer_ctx_address(const td_xfer_ctx *ctx, const void **addr, size_t *len)
{
    if (!ctx || !addr || !len)
        return TD_EINVAL;
    *addr = ctx->addr;
    *len = ctx->addr_len;
    return TD_OK;
}

/* ---- regions (either side) ---- */

td_err td_xfer_region_create(td_xfer_ctx *ctx, void *buf, size_t size,
                             td_xfer_region **out, char *err, size_t errlen)
{
    if (!ctx || size == 0 || !out)
        return td_errf(err, errlen, TD_EINVAL, "region_create: empty region");
    td_xfer_region *g = calloc(1, sizeof *g);
    if (!g)
        return TD_ENOMEM;
    g->ctx = ctx;
    g->size = size;
    g->buf = buf;
    ucp_mem_map_params_t mp = {
        .field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                      UCP_MEM_MAP_PARAM_FIELD_FLAGS,
        .address = buf,
        .length = size,
        .flags = buf ? 0 : UCP_MEM_MAP_ALLOCATE,
    };
    ucs_status_t st = ucp_mem_map(ctx->ucp, &mp, &g->memh);
    if (st == UCS_OK && !buf) {
        ucp_mem_attr_t attr = { .field_mask = UCP_MEM_ATTR_FIELD_ADDRESS };
        st = ucp_mem_query(g->memh, &attr);
        if (st == UCS_OK)
            g->buf = attr.address;
        else
            ucp_mem_unmap(ctx->ucp, g->memh);
    }
    if (st != UCS_OK) {
        free(g);
        return td_errf(err, errlen, TD_EIO, "ucp_mem_map%s %zu bytes: %s",
                       buf ? "" : " (allocate)", size, ucs_status_string(st));
    }
    /* Packed once: every ticket into this region carries the same rkey. */
    st = ucp_rkey_pack(ctx->ucp, g->memh, &g->rkey, &g->rkey_len);
    if (st != UCS_OK) {
        ucp_mem_unmap(ctx->ucp, g->memh);
        free(g);
        return td_errf(err, errlen, TD_EIO, "ucp_rkey_pack: %s", ucs_status_string(st));
    }
    *out = g;
    return TD_OK;
}

void *td_xfer_region_data(const td_xfer_region *g)
{
    return g ? g->buf : NULL;
}

void td_xfer_region_destroy(td_xfer_region *g)
{
    if (!g)
        return;
    for (td_xfer_recv *r = g->ctx->recvs; r; r = r->next)
        if (r->region == g)
            td_log(TD_LOG_ERROR, "xfer: region destroyed under open transfer %llu",
                   (unsigned long long)r->id);
    for (td_xfer_send *s = g->ctx->sends; s; s = s->next)
        if (s->region == g)
            td_log(TD_LOG_ERROR, "xfer: region destroyed under open send %llu",
                   (unsigned long long)s->id);
    ucp_rkey_buffer_release(g->rkey);
    ucp_mem_unmap(g->ctx->ucp, g->memh);
    free(g);
}
