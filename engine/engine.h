/* td_engine: the in-process engine behind router/engine.h.
 *
 * One engine thread owns the model and runs continuous batching: each
 * iteration admits waiting requests, then makes one td_v4_forward call that
 * prefills new requests (in chunks, within a per-iteration token budget) and
 * decodes one token for every running one, then samples. Tokens and
 * finishes go back to the loop thread through a mutex-protected queue and a
 * uv_async handle; the engine thread makes no other libuv call.
 *
 * The model loads on the engine thread, so the server answers /health (and
 * 503 on /ready) while a large model is still loading.
 */
#ifndef TD_ENGINE_ENGINE_H
#define TD_ENGINE_ENGINE_H

#include <uv.h>

#include "common/err.h"
#include "common/prom.h"
#include "router/engine.h"

typedef struct td_engine td_engine;

typedef struct {
    const char *model_dir;       /* config.json, *.safetensors */
    /* Sequences decoded together; more requests wait. 0 = 16. */
    int max_batch;
    /* Prompt tokens prefilled per iteration over all new requests, so a long
     * prompt delays running decodes by one chunk, not by its whole length.
     * 0 = 512. */
    int prefill_budget;
    int nthreads;                /* model threads; 0 = one per CPU */
    int64_t max_context;         /* cap on tokens per sequence; 0 = the model's */
    /* Bytes of recent sequence states kept so a prompt that extends one is
     * prefilled only past it (engine/prefix_cache.h). 0 = 256 MiB, -1 = off. */
    int64_t prefix_cache_bytes;
    /* The disk tier under the prefix cache (engine/spill.h, docs/kvstore.md):
     * a td_kv store directory, NULL for none. States leave memory for it
     * when the cache needs room, when idle for kv_spill_idle_ms, and when
     * the engine stops; a prompt that misses in memory is looked up there.
     * Needs the prefix cache (prefix_cache_bytes >= 0). */
    const char *kv_store_dir;
    uint64_t kv_store_bytes;     /* capacity of a new store; 0: the store's default */
    /* Spill a cached state unused for this long (an agent's session waiting
     * on its tools), freeing its memory; 0: only for room and at stop. */
    int64_t kv_spill_idle_ms;
    /* Other workers' stores, comma-separated, read on a miss (td_spill_opts.peers). */
    const char *kv_store_peers;
    /* td_spill_opts.range_tokens: states this long are filed in token
     * ranges shared between states; 0: 16384; < 0: states whole. */
    int64_t kv_range_tokens;
    /* Optional: each prefix the cache stored or dropped, on the loop thread
     * (tokens borrowed for the call): a worker publishes them (KvEvents).
     * With a disk tier, also every state found on disk at start (stored)
     * and every one the disk drops. */
    void (*on_cache)(void *arg, bool stored, const int32_t *tokens, size_t n);
    /* Called once on the loop thread when loading ends: err is NULL on
     * success, else the reason (the engine then refuses every request). */
    void (*on_loaded)(void *arg, const char *err);
    void *arg;
} td_engine_opts;

/* Called on the loop thread with a prefilled request's saved state
 * (docs/kv-layout.md), which it now owns (free()), before on_finish. */
typedef void (*td_engine_state_fn)(void *arg, void *state, size_t len);

/* What a worker process asks of the engine beyond the router's interface. */
typedef struct {
    td_router_gen_req gen;
    /* Prefill worker: with gen.max_tokens == 1, once the first token is
     * sampled (and is not a stop id) the sequence's state is saved and
     * handed to on_state; the request then finishes with LENGTH. */
    td_engine_state_fn on_state;
    /* Prefill worker, layer by layer (with on_state): the state is written
     * into state_buf (state_cap bytes, td_engine_state_size of the prompt),
     * each main layer's section as soon as the prompt's last chunk has
     * passed that layer, announced by on_section(cb.arg, off, len) on the
     * ENGINE thread (keep it short: queue a put); then the buffer is sealed
     * (header, MTP sections, checksum) and handed to on_state, still the
     * caller's (not freed by the engine). The buffer must outlive the
     * request. NULL: the state is saved whole at the end into a buffer the
     * engine allocates. */
    void *state_buf;
    size_t state_cap;
    void (*on_section)(void *arg, size_t off, size_t len);
    /* Decode worker: the request continues from state[0..state_len), a
     * saved state covering exactly gen.n_prompt tokens (gen.prompt may be
     * NULL), with first_token (sampled by the prefill worker with the same
     * seed) as its first generated token: it is fed next and not reported
     * again. The bytes are borrowed until release_state(state_arg), which
     * the engine calls from any thread once it has read them or will not
     * (cancel, error), exactly once if submit returned TD_OK. */
    const void *state;
    size_t state_len;
    int32_t first_token;
    void (*release_state)(void *arg);
    void *state_arg;
} td_engine_req;

td_err td_engine_submit(td_engine *e, const td_engine_req *req, const td_router_gen_cb *cb,
                        uint64_t *id);
/* Bytes of the saved state of a `tokens`-long prompt (what a decode worker
 * reserves before prefill ships it), and the layout fingerprint; 0 until
 * the model is loaded. */
size_t td_engine_state_size(td_engine *e, int64_t tokens);
uint64_t td_engine_fingerprint(td_engine *e);

/* The prefix cache's counters (any thread; a snapshot at most one
 * iteration old). */
typedef struct {
    uint64_t lookups, hits, tokens_reused, bytes, entries, evictions;
} td_engine_cache_stats;
td_engine_cache_stats td_engine_cache(td_engine *e);
/* Appends the engine's families to a /metrics page (any thread): the
 * prefix cache (tandem_prefix_cache_*), its disk tier if any
 * (tandem_kvstore_*, tandem_kv_spill*, tandem_kv_resume*), queue time
 * (tandem_request_queue_time_seconds), iterations and batch size. */
void td_engine_metrics(td_engine *e, td_prom_buf *b);

/* Starts the engine thread (which loads the model). Called on the loop
 * thread; loop must outlive the engine. */
td_err td_engine_create(td_engine **out, uv_loop_t *loop, const td_engine_opts *opts,
                        char *err, size_t errlen);
/* The interface to hand to the router; ctx is e. */
td_router_engine td_engine_interface(td_engine *e);
/* Stops the thread: requests still queued or running finish with
 * TD_ROUTER_FINISH_CANCELLED (their callbacks run inside this call, on the
 * loop thread). Then closes the async handle; cb runs from the loop when it
 * is closed, after which e is freed. */
void td_engine_destroy(td_engine *e, void (*cb)(void *arg), void *arg);

#endif
