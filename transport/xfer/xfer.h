/* td_xfer: ship a sequence's serialised KV state (docs/kv-layout.md) from a
 * prefill worker to a decode worker with UCX one-sided puts.
 *
 * The receiver (decode) registers the destination buffer and hands the
 * sender a small "ticket" (remote address, length, packed rkey) through the
 * control plane; the sender (prefill) puts the bytes section by section as
 * they become ready, each followed by a note with the section's XXH3-64
 * once its puts are visible, then a completion carrying the descriptor.
 * The receiver checks each section's bytes as they land (overlapped with
 * the puts still moving), then the descriptor and the section table, and
 * answers with an acknowledgement that releases the sender's buffer.
 * Protocol: docs/transfer.md.
 *
 * Threading: a td_xfer_ctx owns one ucp_worker and is used from one thread
 * at a time. Nothing progresses unless that thread is inside a td_xfer call
 * (one-sided puts only move while the target polls, see
 * shared/notes/platform.md): a receiver must sit in td_xfer_recv_wait (or
 * call td_xfer_progress) while a transfer is in flight. */
#ifndef TD_TRANSPORT_XFER_H
#define TD_TRANSPORT_XFER_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct td_xfer_ctx td_xfer_ctx;
typedef struct td_xfer_peer td_xfer_peer;
typedef struct td_xfer_recv td_xfer_recv;
typedef struct td_xfer_region td_xfer_region;
typedef struct td_xfer_send td_xfer_send;

/* What the completion message carries; mirrors proto KvReady. */
typedef struct {
    uint64_t transfer_id;    /* KvReady.request_id */
    uint32_t layout_version;
    uint64_t fingerprint;    /* td_v4_layout_fingerprint of the model */
    uint64_t tokens;
    uint64_t total_bytes;
    /* XXH3-64 over the section table: for each section in put order, its
     * offset, length and the XXH3-64 of its bytes (docs/transfer.md).
     * Computed by td_xfer_send_finish, never by the caller. */
    uint64_t checksum;
    int32_t first_token;     /* KvReady.first_token: carried, not checked */
} td_xfer_desc;

typedef struct {
    /* UCP_ERR_HANDLING_MODE_PEER on the endpoints this context creates: a
     * peer that dies becomes an error on our requests (and a forced close)
     * instead of undefined behaviour. UCX 1.13 then refuses its shared
     * memory transports, so on one host it costs the sm bandwidth and the
     * transfer runs over tcp/lo. Zero (the default): shared memory where
     * UCX finds it; every wait is still bounded by our timeouts. */
    int peer_errors;
} td_xfer_opts;

/* One UCX context and worker; opts may be NULL. Transports are whatever
 * UCX_TLS allows (read by UCX itself); keep tcp in the list. */
td_err td_xfer_ctx_create(const td_xfer_opts *opts, td_xfer_ctx **out, char *err,
                          size_t errlen);
void td_xfer_ctx_destroy(td_xfer_ctx *ctx);

/* The worker address to publish (WorkerRegister.ucx_address). The pointer
 * stays valid until the context is destroyed. */
td_err td_xfer_ctx_address(const td_xfer_ctx *ctx, const void **addr, size_t *len);

/* Non-blocking UCX progress until nothing is left to do; returns how much
 * happened (0: idle, so a poller may nap). */
unsigned td_xfer_progress(td_xfer_ctx *ctx);

/* XXH3-64 of a buffer: what td_xfer_send_section computes per section. */
uint64_t td_xfer_checksum(const void *buf, size_t len);

/* ---- receiver (decode) ---- */

/* Registers buf[0..cap) for remote writes for transfer `id`. `expect`
 * holds what decode requires: layout_version and fingerprint must match;
 * tokens and total_bytes are checked when non-zero (total_bytes must not
 * exceed cap in any case). The buffer must outlive the recv.
 *
 * buf == NULL: UCX allocates cap bytes itself (td_xfer_recv_data gives
 * them; they go away at td_xfer_recv_close, so restore the state from
 * them first). On one host that memory is shared, so puts land by direct
 * copy instead of going through active messages: several times faster. */
td_err td_xfer_recv_open(td_xfer_ctx *ctx, uint64_t id, void *buf, size_t cap,
                         const td_xfer_desc *expect, td_xfer_recv **out,
                         char *err, size_t errlen);

/* A registered region, e.g. a decode worker's whole KV arena, or the
 * buffer a prefill worker saves states into: registering once avoids a
 * ucp_mem_map per transfer (and, for memory UCX allocates, the page faults
 * of a fresh shared segment each time, which dominate transfer time).
 * buf == NULL: UCX allocates size bytes. Either side may use it (receives
 * with td_xfer_recv_open_at, sends with td_xfer_send_open_at). Destroy it
 * only after every transfer opened in it is closed. */
td_err td_xfer_region_create(td_xfer_ctx *ctx, void *buf, size_t size,
                             td_xfer_region **out, char *err, size_t errlen);
void *td_xfer_region_data(const td_xfer_region *g);
void td_xfer_region_destroy(td_xfer_region *g);

/* As td_xfer_recv_open, into region bytes [off, off + cap). */
td_err td_xfer_recv_open_at(td_xfer_ctx *ctx, uint64_t id, td_xfer_region *g, size_t off,
                            size_t cap, const td_xfer_desc *expect, td_xfer_recv **out,
                            char *err, size_t errlen);

/* The receive buffer (the caller's, or the one UCX allocated). */
void *td_xfer_recv_data(const td_xfer_recv *r);

/* The bytes the sender needs (valid until the recv is closed). */
td_err td_xfer_recv_ticket(const td_xfer_recv *r, const void **ticket, size_t *len);

/* Progresses (and checks sections as they land) until the completion for
 * this transfer arrived and was verified (TD_OK, *got filled), was refused
 * (TD_ECORRUPT / TD_EFORMAT with a message naming the field or section;
 * the sender is told), or timeout_ms passed (TD_ETIMEDOUT). */
td_err td_xfer_recv_wait(td_xfer_recv *r, int timeout_ms, td_xfer_desc *got,
                         char *err, size_t errlen);

/* As td_xfer_recv_wait without waiting: TD_EBUSY while the completion has
 * not arrived or sections are still being checked. Call td_xfer_progress
 * between polls: it is what hashes the sections that have landed. */
td_err td_xfer_recv_poll(td_xfer_recv *r, td_xfer_desc *got, char *err, size_t errlen);

/* Unregisters the buffer. Safe at any point, also after a timeout. */
void td_xfer_recv_close(td_xfer_recv *r);

/* ---- sender (prefill) ---- */

/* Connects to a receiver's worker address and flushes the new endpoint
 * (UCX 1.13 can hang the first send otherwise), within timeout_ms. */
td_err td_xfer_connect(td_xfer_ctx *ctx, const void *addr, size_t len,
                       int timeout_ms, td_xfer_peer **out, char *err, size_t errlen);
void td_xfer_peer_close(td_xfer_peer *p);

/* Starts a transfer of buf[0..size) into the buffer the ticket describes.
 * buf is registered here (for this transfer only) and must stay untouched
 * until td_xfer_send_finish returns (the lease). */
td_err td_xfer_send_open(td_xfer_peer *p, const void *ticket, size_t ticket_len,
                         const void *buf, size_t size, td_xfer_send **out,
                         char *err, size_t errlen);

/* As td_xfer_send_open, from region bytes [off, off + size): nothing is
 * registered per transfer. */
td_err td_xfer_send_open_at(td_xfer_peer *p, const void *ticket, size_t ticket_len,
                            td_xfer_region *g, size_t off, size_t size, td_xfer_send **out,
                            char *err, size_t errlen);

/* Queues the put of buf[off..off+len) (non-blocking) and the note that
 * lets the receiver check it once it has landed. sum: the XXH3-64 of those
 * bytes if the caller has it (e.g. hashed while writing them), else NULL
 * and it is computed here. Sections may come in any order, e.g. one per
 * layer as prefill finishes it, and may overlap; together they must cover
 * [0, total_bytes). One per layer is the intended grain: each costs a
 * 40-byte note, and a flush comes once per MiB put (the receiver checks
 * what it covers while later sections move). */
td_err td_xfer_send_section(td_xfer_send *s, size_t off, size_t len, const uint64_t *sum);

/* Flushes every put, sends the completion carrying *desc, and waits for the
 * receiver's verdict until lease_ms has passed: TD_OK once the receiver has
 * verified the bytes, the receiver's error if it refused them, TD_ETIMEDOUT
 * if no answer came. Sets desc->checksum (the section table's, see
 * td_xfer_desc) before sending. After it returns, the buffer is the
 * caller's again. */
td_err td_xfer_send_finish(td_xfer_send *s, td_xfer_desc *desc, int lease_ms,
                           char *err, size_t errlen);
void td_xfer_send_close(td_xfer_send *s);

#endif
