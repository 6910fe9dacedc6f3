/* What the cluster's files share (cluster.c: the protocol and a request's
 * phases; placement.c: which worker gets it). Not a public header. */
#ifndef TD_CLUSTER_INTERNAL_H
#define TD_CLUSTER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/cluster.h"
#include "cluster/prefix_index.h"
#include "transport/ctl/ctl_link.h"
#include "transport/ctl/mailbox.h"

enum { SEND_TIMEOUT_MS = 1000, MAX_SESSIONS = 4096, LOAD_SLACK = 2 };

typedef struct wkr {
    struct wkr *next;
    char *id, *url;
    Tandem__Ctl__Role role;
    td_ctl_out *out;
    uint8_t *ucx;
    size_t ucx_len;
    uint64_t fingerprint, max_context, kv_free;
    uint32_t running, waiting, max_batch;
    bool draining;
    uint64_t last_seen;          /* uv_now */
    int assigned;                /* attempts placed on it, not finished */
    td_pidx *prefixes;           /* what its KvEvents say it holds */
} wkr;

/* Where a session's last request was prefilled (its state is cached there). */
typedef struct sess {
    struct sess *next;
    char *id;
    char *worker;
} sess;

typedef enum { PH_TICKET, PH_PREFILL, PH_DECODE } phase;

/* Why a request went where it went (tandem_placements_total{decision}). */
typedef enum {
    TD_CL_WHY_SESSION,           /* the worker its session last used */
    TD_CL_WHY_PREFIX,            /* the longest announced prefix */
    TD_CL_WHY_LEAST_LOADED,      /* no prefix held (or policy least-loaded) */
    TD_CL_WHY_ROUND_ROBIN,
    TD_CL_WHY_LOCAL,             /* answered whole by the decode worker holding it */
    TD_CL_WHY_COUNT
} td_cl_why;

typedef struct creq {
    struct creq *next;
    uint64_t id, wire;
    td_router_gen_cb cb;
    int32_t *prompt, *stops;
    size_t n_prompt, n_stop;
    int64_t max_tokens;
    td_router_sampling s;
    char *session;
    td_router_constraint_copy cons;
    uint64_t *chain;             /* the prompt's block hashes (proto/blockhash.h) */
    size_t n_chain;
    wkr *P, *D;
    phase ph;
    uint64_t next_index;
    int attempts;
    bool cancelled, paused;
    int32_t *early;              /* decode's tokens that overtook KvReady */
    size_t n_early, cap_early;
    int early_finish;            /* a FinishReason that overtook it; 0 none */
    char early_error[256];
} creq;

struct td_cluster {
    td_cluster_opts o;
    uv_loop_t *loop;
    td_ctl_in *in;
    td_mbox *mbox;
    uv_timer_t sweep;            /* heartbeat timeouts */
    uv_timer_t cancels;          /* finishes cancelled requests off the caller's stack */
    wkr *workers;
    creq *reqs;
    sess *sessions;              /* most recent first, at most MAX_SESSIONS */
    size_t n_sessions;
    unsigned rr;                 /* round-robin turn */
    uint64_t next_id, next_wire;
    uint64_t fingerprint;        /* of the first worker; others must match */
    uint64_t orphans[64];        /* wire ids we told the workers to cancel, a ring */
    unsigned n_orphans;
    /* /metrics (loop thread) */
    uint64_t m_placed[TD_CL_WHY_COUNT];
    uint64_t m_prefix_tokens;    /* prompt tokens the chosen worker announced holding */
    uint64_t m_retries, m_dropped;
    int closing;
};

/* ---- placement.c ------------------------------------------------------------------ */

bool td_cl_can_prefill(const wkr *w);
bool td_cl_can_decode(const wkr *w);
wkr *td_cl_find_worker(td_cluster *c, const char *id);
/* Least loaded of a kind (not draining), by what we placed on it plus what
 * it reports waiting; NULL when there is none. */
wkr *td_cl_least_loaded(td_cluster *c, bool (*can)(const wkr *));
/* The prefill worker for r under the cluster's policy, or NULL; *why says
 * how it was chosen and *held how many leading blocks it announced. */
wkr *td_cl_choose_prefill(td_cluster *c, const creq *r, td_cl_why *why, size_t *held);
/* A decode worker to answer r whole, or NULL: under the prefix policy, the
 * one whose cached prefix is longer than P's (the prefill worker chosen)
 * with at most local_prefill_max prompt tokens left. */
wkr *td_cl_choose_local(td_cluster *c, const creq *r, const wkr *P, size_t *held);
/* The decode worker: the least loaded; among equals the most free KV. */
wkr *td_cl_choose_decode(td_cluster *c);
/* Remembers that session id's state now lives on w (bounded, LRU). */
void td_cl_session_remember(td_cluster *c, const char *id, const wkr *w);
void td_cl_sessions_free(td_cluster *c);

#endif
