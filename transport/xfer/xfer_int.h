/* td_xfer internals shared by xfer.c (context, regions), recv.c and send.c:
 * wire formats, the structs behind the opaque handles, small helpers.
 * Not installed, not included outside transport/xfer. */
#ifndef TD_TRANSPORT_XFER_INT_H
#define TD_TRANSPORT_XFER_INT_H

#include <stdint.h>
#include <string.h>
#include <time.h>

#include <ucp/api/ucp.h>
#define XXH_STATIC_LINKING_ONLY  /* XXH3_state_t on the stack (the table checksum) */
#include <xxhash.h>

#include "transport/xfer/hash.h"
#include "transport/xfer/xfer.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "td_xfer wire formats assume a little-endian host"
#endif

enum {
    AM_COMPLETE = 0x7d01,   /* sender -> receiver: descriptor */
    AM_ACK = 0x7d02,        /* receiver -> sender: verdict */
    AM_LANDED = 0x7d03,     /* sender -> receiver: a section's bytes are in place */
};

#define TICKET_MAGIC 0x54584454u    /* "TDXT" */
#define COMPLETE_MAGIC 0x43584454u  /* "TDXC" */
#define ACK_MAGIC 0x41584454u       /* "TDXA" */
#define LANDED_MAGIC 0x53584454u    /* "TDXS" */
#define TICKET_HDR 40
/* Ticket flags (the u64 at offset 32). KEEP_RKEY: the memory is a region
 * that outlives this transfer, so the sender may keep the unpacked key for
 * the next ticket into it; without it (a buffer mapped for one transfer)
 * a cached key would hold the freed segment attached. */
#define TICKET_KEEP_RKEY 1u
#define MSG_MAX 200

/* The completion: all of it travels in the AM header, nothing in data. */
typedef struct {
    uint32_t magic, layout_version;
    uint64_t id, fingerprint, tokens, total_bytes, checksum;
    int32_t first_token;
    uint32_t sections;       /* how many AM_LANDED notes precede it */
} wire_complete;

typedef struct {
    uint32_t magic, status;  /* td_err */
    uint64_t id;
} wire_ack;

/* One section, sent once a flush has made its puts visible at the target,
 * so the receiver can check it while later sections are still moving.
 * Notes travel in batches: an AM_LANDED's data is one or more of these
 * (no header). */
typedef struct {
    uint32_t magic, index;   /* index: the order the sender put it in */
    uint64_t id, off, len, sum;  /* sum: XXH3-64 of the section's bytes */
} wire_landed;

struct td_xfer_ctx {
    ucp_context_h ucp;
    ucp_worker_h worker;
    ucp_address_t *addr;
    size_t addr_len;
    td_xfer_recv *recvs;  /* open receives, matched by id on completion */
    td_xfer_send *sends;  /* open sends, matched by id on ack */
    int peer_errors;
    const xfer_hash_impl *h; /* XXH3 as fast as this CPU runs it */
    void *hs;             /* the sender's section hash (one section at a time) */
    unsigned idle;        /* progress calls in a row that found nothing (xfer_spin) */
};

struct td_xfer_region {
    td_xfer_ctx *ctx;
    void *buf;
    size_t size;
    ucp_mem_h memh;
    void *rkey;
    size_t rkey_len;
};

/* A section as the receiver learnt it. */
typedef struct {
    uint64_t off, len, sum;
    uint32_t index;
} recv_sec;

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
    /* Sections: landed [0, n_secs), checked [0, n_checked); the one being
     * hashed is secs[n_checked], hashed up to hash_pos (a chunk per
     * progress call, so tcp puts keep moving meanwhile). */
    recv_sec *secs;
    uint32_t n_secs, cap_secs, n_checked;
    uint64_t hash_pos;
    void *hs;                /* ctx->h's streaming state */
    td_err sec_err;          /* first bad section; its message in msg */
    uint32_t want_secs;      /* from the completion */
    int arrived;             /* completion received, not yet judged */
    int done;                /* verdict reached (and ack attempted) */
    td_xfer_desc got;
    ucp_ep_h reply_ep;
    td_err verdict;
    char msg[MSG_MAX];
};

/* An unpacked remote key, kept for the next ticket that carries the same
 * packed bytes (tickets into one decode region all do). Unpacking attaches
 * the remote shared-memory segment, and each fresh attachment page-faults
 * every byte the puts touch: on one host that cost more than the copy. */
enum { RKEY_CACHE = 8 };
typedef struct {
    uint8_t *packed;         /* NULL: free slot */
    size_t len;
    ucp_rkey_h rkey;
    uint32_t refs;           /* open sends using it: never evicted while > 0 */
    uint64_t used;           /* LRU clock */
} rkey_slot;

struct td_xfer_peer {
    td_xfer_ctx *ctx;
    ucp_ep_h ep;
    ucs_status_t ep_status;  /* set by the error handler */
    rkey_slot rkeys[RKEY_CACHE];
    uint64_t rkey_clock;
};

/* The sender's section records live in blocks that never move: a run of
 * notes is the data of one AM_LANDED, a tag the user data of a flush,
 * until those complete. One block per 64 sections, so no allocation per
 * put. */
enum { SEC_BLOCK = 64 };
/* The sender puts and hashes a section this much at a time (send.c). */
enum { PUT_CHUNK = 256u << 10 };
/* ... and flushes (so that notes can go) once this much is unflushed:
 * the receiver's checks overlap later puts at this grain, and small
 * sections share one flush and one note AM (send.c). */
enum { NOTE_BYTES = 1u << 20 };
typedef struct {
    td_xfer_send *s;
    uint32_t index;          /* the flush covers sections [0, index] */
} flush_tag;
typedef struct sec_block {
    struct sec_block *next;
    wire_landed w[SEC_BLOCK];
    flush_tag tag[SEC_BLOCK];
} sec_block;

struct td_xfer_send {
    td_xfer_peer *peer;
    td_xfer_send *next;
    uint64_t id;
    const uint8_t *buf;
    size_t size;
    td_xfer_region *region;
    td_xfer_region *owned;   /* made by td_xfer_send_open, destroyed at close */
    ucp_rkey_h rkey;
    rkey_slot *rkey_slot;    /* where rkey is cached; NULL: ours to destroy */
    uint64_t raddr;
    size_t rcap;
    sec_block *blocks, *last;
    uint32_t n_secs;         /* sections put */
    size_t unflushed;        /* bytes put since the last flush */
    uint32_t flushed;        /* sections [0, flushed) are visible at the target */
    uint32_t noted;          /* sections [0, noted) have had their note sent */
    sec_block *note_blk;     /* where record `noted` lives */
    size_t pending;          /* puts, flushes and notes in flight */
    ucs_status_t put_status; /* first failure */
    int acked;
    td_err verdict;
    char msg[MSG_MAX];
};

static inline int64_t xfer_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint32_t get_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t get_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* The descriptor's checksum is XXH3-64 over the section table: for each
 * section in put order, its offset, length and XXH3-64 (little-endian
 * u64s). Both sides feed the same records through this. */
static inline void table_add(XXH3_state_t *st, uint64_t off, uint64_t len, uint64_t sum)
{
    uint64_t rec[3] = { off, len, sum };
    XXH3_64bits_update(st, rec, sizeof rec);
}

/* Idle progress calls (about 0.1-0.3 us each) before a busy wait yields
 * (xfer.c: xfer_spin). */
enum { SPIN_BEFORE_YIELD = 200 };

/* xfer.c */
void xfer_spin(td_xfer_ctx *ctx);
ucs_status_t xfer_wait_req(td_xfer_ctx *ctx, void *req, int64_t deadline);
/* recv.c: AM handler, and one step of the receivers' section checks
 * (returns the bytes hashed). */
ucs_status_t xfer_on_complete(void *arg, const void *header, size_t header_length, void *data,
                              size_t length, const ucp_am_recv_param_t *param);
ucs_status_t xfer_on_landed(void *arg, const void *header, size_t header_length, void *data,
                            size_t length, const ucp_am_recv_param_t *param);
size_t xfer_check_some(td_xfer_ctx *ctx);
/* send.c: AM handler, and the notes whose flushes have completed. */
ucs_status_t xfer_on_ack(void *arg, const void *header, size_t header_length, void *data,
                         size_t length, const ucp_am_recv_param_t *param);
void xfer_send_notes(td_xfer_ctx *ctx);

#endif
