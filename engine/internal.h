/* What the engine's two files share (not a public header):
 *   engine.c  the engine thread: admission, the batched step, sampling,
 *             the prefix cache and its disk tier, the workers' modes
 *   api.c     the loop thread's side: submit, cancel, pause, load, the
 *             events delivered back, metrics, create and destroy
 * The threading rules are at the top of engine.c. */
#ifndef TD_ENGINE_INTERNAL_H
#define TD_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "constrain/constrain.h"
#include "engine/engine.h"
#include "engine/prefix_cache.h"
#include "engine/spill.h"
#include "model/model.h"
#include "model/sample.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

typedef struct ereq {
    struct ereq *next;
    uint64_t id;
    td_router_gen_cb cb;
    int32_t *prompt;             /* (n_prompt) */
    size_t n_prompt;
    int32_t *stop_ids;           /* (n_stop) */
    size_t n_stop;
    int64_t max_tokens;
    td_router_sampling sampling;
    char *session_id;            /* NULL = none; kept for a future scheduler */
    /* worker modes (td_engine_req) */
    td_engine_state_fn on_state;
    void *state_buf;             /* layer-by-layer saving (td_engine_req) */
    size_t state_cap;
    void (*on_section)(void *arg, size_t off, size_t len);
    size_t *offs;                /* (nlayers + 1) section offsets of the state */
    const void *state;           /* resume from these bytes; NULL = prefill the prompt */
    size_t state_len;
    int32_t first_token;
    void (*release_state)(void *arg);
    void *state_arg;
    /* engine thread only */
    td_v4_seq *seq;
    td_sampler *smp;
    size_t prefilled;            /* prompt tokens already in seq */
    size_t branch;               /* save the state when prefill reaches it (0: no) */
    uint64_t submitted_ns;       /* CLOCK_MONOTONIC at submit: queue time */
    int64_t generated;
    int32_t last;                /* the token to feed next */
    bool paused;
    bool cancel;                 /* cancelled while its state was being read */
    int32_t *gen;                /* emitted tokens, for the prefix cache */
    size_t n_gen, cap_gen;
    /* grammar-constrained output (router/engine.h td_router_constraint) */
    td_router_constraint_copy cons;
    td_cons_grammar *grammar;
    td_cons_matcher *matcher;
    uint64_t *mask;
} ereq;

typedef enum { CMD_CANCEL, CMD_PAUSE, CMD_RESUME } cmd_kind;
typedef struct {
    cmd_kind kind;
    uint64_t id;
} cmd;

typedef enum { EV_TOKEN, EV_FINISH, EV_LOADED, EV_STATE, EV_CACHE, EV_CACHED } ev_kind;
typedef struct {
    ev_kind kind;
    int32_t token;
    void *state;                 /* EV_STATE: handed to on_state; EV_CACHE: the tokens */
    size_t state_len;
    td_engine_state_fn on_state;
    td_router_finish why;
    td_err err;
    td_router_gen_cb cb;
} event;

/* A growable array whose storage is kept between uses. */
#define VEC(T) struct { T *v; size_t n, cap; }
#define VEC_PUSH(vec, x)                                                      \
    ((vec).n < (vec).cap || vec_grow((void **)&(vec).v, &(vec).cap, sizeof *(vec).v) \
         ? ((vec).v[(vec).n++] = (x), true) : false)

static inline bool vec_grow(void **v, size_t *cap, size_t elem)
{
    size_t nc = *cap ? 2 * *cap : 64;
    void *nv = realloc(*v, nc * elem);
    if (!nv)
        return false;
    *v = nv;
    *cap = nc;
    return true;
}

struct td_engine {
    uv_loop_t *loop;
    uv_async_t async;
    td_engine_opts opts;
    char *model_dir;
    char *kv_store_dir;          /* the copy opts.kv_store_dir points at */
    char *kv_store_peers;        /* the copy opts.kv_store_peers points at */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    ereq *inbox, *inbox_tail;
    VEC(cmd) cmds;
    VEC(event) outbox;
    bool stop;
    /* read anywhere */
    atomic_bool ready;
    atomic_llong ctx_len;
    /* Load for td_router_load: waiting is raised by submit (loop thread)
     * and lowered by the engine thread when it admits or finishes a
     * waiting request; running is written by the engine thread. */
    atomic_llong load_waiting, load_running;
    /* the prefix cache's counters, published by the engine thread */
    atomic_ullong pc_lookups, pc_hits, pc_tokens, pc_bytes, pc_entries, pc_evictions;
    /* iterations and their rows (prompt tokens + decoded sequences), and the
     * sequences in the last one; queue time under stat_mu */
    atomic_ullong steps_total, step_rows_total, last_batch;
    atomic_llong load_loading;   /* requests waiting for their state from disk */
    pthread_mutex_t stat_mu;
    td_prom_hist queue_time;
    /* loop thread only */
    uint64_t next_id;
    VEC(event) delivering;
    char load_err[512];
    void (*on_closed)(void *arg);
    void *closed_arg;
    /* engine thread only */
    td_v4_weights *w;
    td_v4_model *m;
    int vocab;
    ereq *waiting, *waiting_tail;
    ereq *running;
    int nrunning;
    ereq *loading;               /* their prompts' states being read from disk */
    int nloading;
    float *logits;               /* (max_batch, vocab) */
    td_v4_step *steps;           /* (max_batch) */
    ereq **step_req;             /* (max_batch) */
    int *step_take;              /* (max_batch) prompt tokens in the step, 0 = decode */
    td_pcache *pcache;
    _Atomic(td_spill *) spill;   /* the disk tier; written by the engine thread */
    td_tok *tok;                 /* for constrained requests: the vocabulary's bytes */
    td_cons_vocab *cvocab;       /* NULL: constraints are refused */
    VEC(cmd) cmds_local;
    VEC(event) events;           /* this iteration's */
};

/* engine.c */
void *td_eng_main(void *arg);    /* the engine thread */
void td_eng_ereq_free(ereq *r);
uint64_t td_eng_now_ns(void);    /* CLOCK_MONOTONIC */

#endif
