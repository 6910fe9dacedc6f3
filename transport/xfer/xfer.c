/* td_xfer: KV state bytes over UCX (see xfer.h and docs/transfer.md).
 *
 * Wire formats are fixed-width little-endian fields (this engine targets
 * x86-64 and aarch64, both little-endian; a big-endian host fails to
 * compile rather than silently mis-reading a peer). */
#include "transport/xfer/xfer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ucp/api/ucp.h>
#include <xxhash.h>

#include "common/log.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "td_xfer wire formats assume a little-endian host"
#endif

enum {
    AM_COMPLETE = 0x7d01,   /* sender -> receiver: descriptor */
    AM_ACK = 0x7d02,        /* receiver -> sender: verdict */
};

#define TICKET_MAGIC 0x54584454u    /* "TDXT" */
#define COMPLETE_MAGIC 0x43584454u  /* "TDXC" */
#define ACK_MAGIC 0x41584454u       /* "TDXA" */
#define TICKET_HDR 40
#define MSG_MAX 200

/* The completion header: what travels in the AM header, nothing in data. */
typedef struct {
    uint32_t magic, layout_version;
    uint64_t id, fingerprint, tokens, total_bytes, checksum;
    int32_t first_token;
    uint32_t pad;
} wire_complete;

typedef struct {
    uint32_t magic, status;  /* td_err */
    uint64_t id;
} wire_ack;

struct td_xfer_ctx {
    ucp_context_h ucp;
    ucp_worker_h worker;
    ucp_address_t *addr;
    size_t addr_len;
    td_xfer_recv *recvs;  /* open receives, matched by id on completion */
    td_xfer_send *sends;  /* open sends, matched by id on ack */
    int peer_errors;
};

struct td_xfer_region {
    td_xfer_ctx *ctx;
    void *buf;
    size_t size;
    ucp_mem_h memh;
    void *rkey;
    size_t rkey_len;
};

struct td_xfer_recv {
    td_xfer_ctx *ctx;
    td_xfer_recv *next;
    uint64_t id;
    void *buf;
    size_t cap;
    td_xfer_desc expect;
    td_xfer_region *region;
    td_xfer_region *owned;  /* made by td_xfer_recv_open, destroyed at close */
    uint8_t *ticket;
    size_t ticket_len;
    int arrived;       /* completion received, not yet judged */
    int done;          /* verdict reached (and ack attempted) */
    td_xfer_desc got;
    ucp_ep_h reply_ep;
    td_err verdict;
    char msg[MSG_MAX];
};

struct td_xfer_peer {
    td_xfer_ctx *ctx;
    ucp_ep_h ep;
    ucs_status_t ep_status;  /* set by the error handler */
};

struct td_xfer_send {
    td_xfer_peer *peer;
    td_xfer_send *next;
    uint64_t id;
    const uint8_t *buf;
    size_t size;
    ucp_mem_h memh;
    ucp_rkey_h rkey;
    uint64_t raddr;
    size_t rcap;
    size_t pending;          /* puts in flight */
    ucs_status_t put_status; /* first failure */
    int acked;
    td_err verdict;
    char msg[MSG_MAX];
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t td_xfer_checksum(const void *buf, size_t len)
{
    return XXH3_64bits(buf, len);
}

unsigned td_xfer_progress(td_xfer_ctx *ctx)
{
    unsigned n = 0, k;
    while ((k = ucp_worker_progress(ctx->worker)))
        n += k;
    return n;
}

/* Progresses until req completes or the deadline passes. A request that
 * times out is released to UCX (freed when it completes), never reused. */
static ucs_status_t wait_req(td_xfer_ctx *ctx, void *req, int64_t deadline)
{
    if (req == NULL)
        return UCS_OK;
    if (UCS_PTR_IS_ERR(req))
        return UCS_PTR_STATUS(req);
    ucs_status_t st;
    while ((st = ucp_request_check_status(req)) == UCS_INPROGRESS) {
        if (now_ms() > deadline) {
            ucp_request_cancel(ctx->worker, req);
            ucp_request_free(req);
            return UCS_ERR_TIMED_OUT;
        }
        ucp_worker_progress(ctx->worker);
    }
    ucp_request_free(req);
    return st;
}

/* ---- active-message handlers ---- */

static ucs_status_t on_complete(void *arg, const void *header, size_t header_length,
                                void *data, size_t length, const ucp_am_recv_param_t *param)
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
    td_xfer_recv *r = ctx->recvs;
    while (r && r->id != w.id)
        r = r->next;
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
    r->reply_ep = (param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) ? param->reply_ep : NULL;
    r->arrived = 1;
    return UCS_OK;
}

static ucs_status_t on_ack(void *arg, const void *header, size_t header_length,
                           void *data, size_t length, const ucp_am_recv_param_t *param)
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

/* ---- context ---- */

td_err td_xfer_ctx_create(const td_xfer_opts *opts, td_xfer_ctx **out, char *err,
                          size_t errlen)
{
    td_xfer_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return TD_ENOMEM;
    ctx->peer_errors = opts ? opts->peer_errors : 0;
    ucp_config_t *cfg;
    ucs_status_t st = ucp_config_read(NULL, NULL, &cfg);
    if (st != UCS_OK) {
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
    for (int i = 0; st == UCS_OK && i < 2; i++) {
        ucp_am_handler_param_t hp = {
            .field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                          UCP_AM_HANDLER_PARAM_FIELD_ARG,
            .id = i == 0 ? AM_COMPLETE : AM_ACK,
            .cb = i == 0 ? on_complete : on_ack,
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

/* ---- receiver ---- */

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

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
    ucp_rkey_buffer_release(g->rkey);
    ucp_mem_unmap(g->ctx->ucp, g->memh);
    free(g);
}

td_err td_xfer_recv_open_at(td_xfer_ctx *ctx, uint64_t id, td_xfer_region *g, size_t off,
                            size_t cap, const td_xfer_desc *expect, td_xfer_recv **out,
                            char *err, size_t errlen)
{
    if (!ctx || !g || g->ctx != ctx || cap == 0 || !expect || !out)
        return td_errf(err, errlen, TD_EINVAL, "recv_open: missing region or expectations");
    if (off > g->size || cap > g->size - off)
        return td_errf(err, errlen, TD_ERANGE, "recv_open: [%zu, +%zu) outside the %zu-byte "
                       "region", off, cap, g->size);
    for (td_xfer_recv *o = ctx->recvs; o; o = o->next)
        if (o->id == id)
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
    if (!r->ticket) {
        free(r);
        return TD_ENOMEM;
    }
    put_u32(r->ticket, TICKET_MAGIC);
    put_u32(r->ticket + 4, (uint32_t)g->rkey_len);
    put_u64(r->ticket + 8, id);
    put_u64(r->ticket + 16, (uint64_t)(uintptr_t)r->buf);
    put_u64(r->ticket + 24, cap);
    put_u64(r->ticket + 32, 0);
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

/* Judges a completion against what decode expects and the bytes in the
 * buffer. The cheap header checks go first so a wrong-model transfer is
 * not hashed. */
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
    uint64_t sum = XXH3_64bits(r->buf, g->total_bytes);
    if (sum != g->checksum)
        return td_errf(m, MSG_MAX, TD_ECORRUPT,
                       "checksum of the %llu received bytes %016llx, descriptor says %016llx",
                       (unsigned long long)g->total_bytes, (unsigned long long)sum,
                       (unsigned long long)g->checksum);
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
        int64_t ack_deadline = now_ms() + 1000;
        ucs_status_t st = wait_req(ctx, req, ack_deadline > deadline ? ack_deadline : deadline);
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
    int64_t deadline = now_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
    while (!r->done) {
        if (!r->arrived) {
            if (now_ms() > deadline)
                return td_errf(err, errlen, TD_ETIMEDOUT,
                               "transfer %llu: no completion within %d ms",
                               (unsigned long long)r->id, timeout_ms);
            ucp_worker_progress(ctx->worker);
            continue;
        }
        conclude(r, deadline);
    }
    return verdict(r, got, err, errlen);
}

td_err td_xfer_recv_poll(td_xfer_recv *r, td_xfer_desc *got, char *err, size_t errlen)
{
    if (!r)
        return TD_EINVAL;
    if (!r->done && !r->arrived)
        return TD_EBUSY;
    if (!r->done)
        conclude(r, now_ms());
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
    td_xfer_region *owned = r->owned;
    free(r);
    td_xfer_region_destroy(owned);
}

/* ---- sender ---- */

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
    st = wait_req(ctx, ucp_ep_flush_nbx(p->ep, &rp), now_ms() + timeout_ms);
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
    ucs_status_t st = wait_req(p->ctx, ucp_ep_close_nbx(p->ep, &rp), now_ms() + 1000);
    if (st != UCS_OK && st != UCS_ERR_CANCELED && st != UCS_ERR_TIMED_OUT)
        td_debug("xfer: ep close: %s", ucs_status_string(st));
    free(p);
}

td_err td_xfer_send_open(td_xfer_peer *p, const void *ticket, size_t ticket_len,
                         const void *buf, size_t size, td_xfer_send **out,
                         char *err, size_t errlen)
{
    if (!p || !ticket || !buf || size == 0 || !out)
        return td_errf(err, errlen, TD_EINVAL, "send_open: missing ticket or buffer");
    const uint8_t *t = ticket;
    if (ticket_len < TICKET_HDR || get_u32(t) != TICKET_MAGIC ||
        get_u32(t + 4) != ticket_len - TICKET_HDR)
        return td_errf(err, errlen, TD_ECORRUPT, "send_open: malformed ticket (%zu bytes)",
                       ticket_len);
    td_xfer_send *s = calloc(1, sizeof *s);
    if (!s)
        return TD_ENOMEM;
    s->peer = p;
    s->id = get_u64(t + 8);
    s->raddr = get_u64(t + 16);
    s->rcap = get_u64(t + 24);
    s->buf = buf;
    s->size = size;
    if (size > s->rcap) {
        size_t rcap = s->rcap;
        free(s);
        return td_errf(err, errlen, TD_ERANGE, "send_open: %zu bytes do not fit the %zu-byte "
                       "receive buffer", size, rcap);
    }
    ucs_status_t st = ucp_ep_rkey_unpack(p->ep, t + TICKET_HDR, &s->rkey);
    if (st != UCS_OK) {
        free(s);
        return td_errf(err, errlen, TD_ECORRUPT, "ucp_ep_rkey_unpack: %s",
                       ucs_status_string(st));
    }
    /* Registered once so every section can go zero-copy. */
    ucp_mem_map_params_t mp = {
        .field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH,
        .address = (void *)buf,
        .length = size,
    };
    st = ucp_mem_map(p->ctx->ucp, &mp, &s->memh);
    if (st != UCS_OK) {
        ucp_rkey_destroy(s->rkey);
        free(s);
        return td_errf(err, errlen, TD_EIO, "ucp_mem_map: %s", ucs_status_string(st));
    }
    s->put_status = UCS_OK;
    s->next = p->ctx->sends;
    p->ctx->sends = s;
    *out = s;
    return TD_OK;
}

static void on_put_done(void *req, ucs_status_t status, void *user_data)
{
    td_xfer_send *s = user_data;
    s->pending--;
    if (status != UCS_OK && s->put_status == UCS_OK)
        s->put_status = status;
    ucp_request_free(req);
}

td_err td_xfer_send_section(td_xfer_send *s, size_t off, size_t len)
{
    if (!s || off > s->size || len > s->size - off)
        return TD_EINVAL;
    if (len == 0)
        return TD_OK;
    if (s->put_status != UCS_OK || s->peer->ep_status != UCS_OK)
        return TD_EIO;
    ucp_request_param_t rp = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA |
                        UCP_OP_ATTR_FIELD_MEMH,
        .cb.send = on_put_done,
        .user_data = s,
        .memh = s->memh,
    };
    void *req = ucp_put_nbx(s->peer->ep, s->buf + off, len, s->raddr + off, s->rkey, &rp);
    if (UCS_PTR_IS_ERR(req)) {
        s->put_status = UCS_PTR_STATUS(req);
        td_log(TD_LOG_ERROR, "xfer: put of %zu bytes at %zu: %s", len, off,
               ucs_status_string(s->put_status));
        return TD_EIO;
    }
    if (req)
        s->pending++;
    /* Let the put start moving while the caller computes the next layer. */
    ucp_worker_progress(s->peer->ctx->worker);
    return TD_OK;
}

td_err td_xfer_send_finish(td_xfer_send *s, const td_xfer_desc *desc, int lease_ms,
                           char *err, size_t errlen)
{
    if (!s || !desc)
        return TD_EINVAL;
    td_xfer_ctx *ctx = s->peer->ctx;
    int64_t deadline = now_ms() + (lease_ms < 0 ? 0 : lease_ms);
    ucp_request_param_t rp = { .op_attr_mask = 0 };
    /* The flush makes every put visible at the target before the
     * completion can overtake it. */
    ucs_status_t st = wait_req(ctx, ucp_ep_flush_nbx(s->peer->ep, &rp), deadline);
    while (st == UCS_OK && s->pending && now_ms() <= deadline)
        ucp_worker_progress(ctx->worker);
    if (st == UCS_OK)
        st = s->put_status != UCS_OK ? s->put_status : s->peer->ep_status;
    if (st == UCS_OK && s->pending)
        st = UCS_ERR_TIMED_OUT;
    if (st != UCS_OK)
        return td_errf(err, errlen, st == UCS_ERR_TIMED_OUT ? TD_ETIMEDOUT : TD_EIO,
                       "transfer %llu: flushing the puts: %s", (unsigned long long)s->id,
                       ucs_status_string(st));
    wire_complete w = {
        .magic = COMPLETE_MAGIC, .layout_version = desc->layout_version, .id = s->id,
        .fingerprint = desc->fingerprint, .tokens = desc->tokens,
        .total_bytes = desc->total_bytes, .checksum = desc->checksum,
        .first_token = desc->first_token,
    };
    if (desc->transfer_id != s->id)
        td_log(TD_LOG_WARN, "xfer: descriptor names transfer %llu, ticket %llu: using the ticket's",
               (unsigned long long)desc->transfer_id, (unsigned long long)s->id);
    /* REPLY gives the receiver an endpoint back to us for the ack. */
    ucp_request_param_t ap = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
        .flags = UCP_AM_SEND_FLAG_REPLY,
    };
    st = wait_req(ctx, ucp_am_send_nbx(s->peer->ep, AM_COMPLETE, &w, sizeof w, NULL, 0, &ap),
                  deadline);
    if (st != UCS_OK)
        return td_errf(err, errlen, st == UCS_ERR_TIMED_OUT ? TD_ETIMEDOUT : TD_EIO,
                       "transfer %llu: sending the completion: %s", (unsigned long long)s->id,
                       ucs_status_string(st));
    while (!s->acked && s->peer->ep_status == UCS_OK && now_ms() <= deadline)
        ucp_worker_progress(ctx->worker);
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
    /* Puts in flight hold a pointer to s: wait for them (bounded), and if
     * they never finish keep s alive rather than risk a use after free. */
    int64_t deadline = now_ms() + 2000;
    while (s->pending && s->peer->ep_status == UCS_OK && now_ms() <= deadline)
        ucp_worker_progress(ctx->worker);
    td_xfer_send **pp = &ctx->sends;
    while (*pp != s)
        pp = &(*pp)->next;
    *pp = s->next;
    ucp_rkey_destroy(s->rkey);
    ucp_mem_unmap(ctx->ucp, s->memh);
    if (s->pending) {
        td_log(TD_LOG_WARN, "xfer: %zu puts of transfer %llu still pending at close",
               s->pending, (unsigned long long)s->id);
        return;
    }
    free(s);
}
