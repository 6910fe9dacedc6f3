/* The in-process engine: a request queue, one engine thread running
 * continuous batching over the V4 model, and the event queue back to the
 * loop thread (engine/engine.h).
 *
 * Threads and what they touch:
 * - loop thread: submit/cancel/pause append to the inbox or the command
 *   list under mu and signal cv; the async callback swaps the outbox out
 *   under mu and runs the callbacks with mu released.
 * - engine thread: everything model-side (weights, sequences, samplers, the
 *   waiting and running lists) is its own; it takes mu only to pick up the
 *   inbox and commands and to hand over one iteration's events.
 *
 * The hot loop allocates nothing per token: logits, steps and the event
 * queues are sized once and only grow (amortised) when a burst needs it.
 *
 * This file is the engine thread; the loop thread's side is api.c.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "engine/internal.h"
#include "kernels/kernels.h"
#include "model/state.h"

/* Shared tokens past the restored state that make a branch state worth
 * saving (branch_point): one router block. */
enum { BRANCH_MIN = 64 };

uint64_t td_eng_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- events: engine thread -> loop thread (api.c delivers them) ------------ */

static void post_events(td_engine *e)
{
    if (e->events.n == 0)
        return;
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < e->events.n; i++)
        if (!VEC_PUSH(e->outbox, e->events.v[i]))
            td_log(TD_LOG_ERROR, "engine: out of memory queueing events");
    pthread_mutex_unlock(&e->mu);
    e->events.n = 0;
    uv_async_send(&e->async);  /* the one libuv call made off the loop */
}

/* ---- the engine thread ------------------------------------------------------ */

/* The decode worker's receive buffer goes back as soon as nothing reads it. */
static void release_state(ereq *r)
{
    if (r->state && r->release_state)
        r->release_state(r->state_arg);
    r->state = NULL;
}

void td_eng_ereq_free(ereq *r)
{
    release_state(r);
    td_v4_seq_destroy(r->seq);
    td_sampler_destroy(r->smp);
    free(r->prompt);
    free(r->stop_ids);
    free(r->session_id);
    free(r->gen);
    free(r->offs);
    td_router_constraint_free(&r->cons);
    td_cons_matcher_destroy(r->matcher);
    td_cons_grammar_destroy(r->grammar);
    free(r->mask);
    free(r);
}

static void emit(td_engine *e, event ev)
{
    if (!VEC_PUSH(e->events, ev))
        td_log(TD_LOG_ERROR, "engine: out of memory queueing an event");
}

/* Keeps what r's sequence processed (its prompt and the emitted tokens it
 * was fed) for a later prompt that extends it. The prompt alone was kept
 * when its prefill ended (the next turn re-encodes the answer's text, which
 * need not give back the generated ids); this keeps the longer state. */
static void remember(td_engine *e, ereq *r)
{
    int64_t len = r->seq ? td_v4_seq_len(r->seq) : 0;
    if (!e->pcache || !r->prompt || len <= (int64_t)r->n_prompt ||
        (size_t)len - r->n_prompt > r->n_gen)
        return;
    size_t k = (size_t)len - r->n_prompt;
    int32_t *toks = malloc((size_t)len * sizeof *toks);
    if (!toks)
        return;
    memcpy(toks, r->prompt, r->n_prompt * sizeof *toks);
    memcpy(toks + r->n_prompt, r->gen, k * sizeof *toks);
    if (td_pcache_put(e->pcache, r->seq, toks, (size_t)len))
        td_log(TD_LOG_WARN, "engine: prefix cache: out of memory");
    free(toks);
}

/* Notes an emitted token for remember(). */
static void remember_token(td_engine *e, ereq *r, int32_t t)
{
    if (!e->pcache || !r->prompt)
        return;
    /* amortised: the array doubles, a handful of times per request */
    if (r->n_gen == r->cap_gen) {
        size_t nc = r->cap_gen ? 2 * r->cap_gen : 64;
        int32_t *ng = realloc(r->gen, nc * sizeof *ng);
        if (ng) {
            r->gen = ng;
            r->cap_gen = nc;
        }
    }
    if (r->n_gen < r->cap_gen)
        r->gen[r->n_gen++] = t;
}

static void unlink_req(ereq **head, ereq *r)
{
    for (ereq **p = head; *p; p = &(*p)->next)
        if (*p == r) {
            *p = r->next;
            return;
        }
}

/* Unlinks r from the list at *head and finishes it. */
static void finish(td_engine *e, ereq **head, ereq *r, td_router_finish why, td_err err)
{
    if (why != TD_ROUTER_FINISH_ERROR)
        remember(e, r);
    unlink_req(head, r);
    if (head == &e->running)
        atomic_store(&e->load_running, --e->nrunning);
    if (head == &e->loading) {
        atomic_store(&e->load_loading, --e->nloading);
        atomic_fetch_sub(&e->load_waiting, 1);
    }
    if (head == &e->waiting) {
        atomic_fetch_sub(&e->load_waiting, 1);
        e->waiting_tail = NULL;
        for (ereq *q = e->waiting; q; q = q->next)
            e->waiting_tail = q;
    }
    /* A state not yet loaded (cancelled while queued) goes back before the
     * finish can be delivered: the release callback reads the caller's
     * request, which the finish callback frees (decode's job_free), and the
     * loop may deliver the finish before this thread gets to ereq_free. */
    release_state(r);
    emit(e, (event){.kind = EV_FINISH, .why = why, .err = err, .cb = r->cb});
    td_eng_ereq_free(r);
}

static ereq *find(ereq *list, uint64_t id)
{
    for (; list; list = list->next)
        if (list->id == id)
            return list;
    return NULL;
}

static void apply_commands(td_engine *e)
{
    for (size_t i = 0; i < e->cmds_local.n; i++) {
        const cmd *c = &e->cmds_local.v[i];
        ereq **head = &e->running;
        ereq *r = find(e->running, c->id);
        if (!r) {
            head = &e->waiting;
            r = find(e->waiting, c->id);
        }
        if (!r && (r = find(e->loading, c->id)) && c->kind == CMD_CANCEL) {
            r->cancel = true;  /* its sequence is the KV thread's until the read ends */
            continue;
        }
        if (!r)
            continue;  /* finished already */
        if (c->kind == CMD_CANCEL)
            finish(e, head, r, TD_ROUTER_FINISH_CANCELLED, TD_OK);
        else
            r->paused = c->kind == CMD_PAUSE;
    }
    e->cmds_local.n = 0;
}

static bool has_work(const td_engine *e)
{
    if (e->waiting && e->nrunning + e->nloading < e->opts.max_batch)
        return true;
    for (const ereq *r = e->running; r; r = r->next)
        if (!r->paused)
            return true;
    return false;
}

/* Compiles r's constraint and starts its matcher (engine thread). */
static td_err constrain(td_engine *e, ereq *r, char *err, size_t errlen)
{
    const td_router_constraint_copy *k = &r->cons;
    if (!k->json_schema && !k->tools)
        return TD_OK;
    if (!e->cvocab)
        return td_errf(err, errlen, TD_ENOTSUP, "constrained output needs the model's "
                       "tokenizer.json");
    td_err er;
    if (k->tools) {
        td_cons_tools_opts o = {.force_name = k->force_name, .single = k->single};
        er = td_cons_grammar_tools(&r->grammar, k->tools, strlen(k->tools), &o, err,
                                   errlen);
    } else {
        er = td_cons_grammar_json(&r->grammar, k->json_schema[0] ? k->json_schema : NULL,
                                  strlen(k->json_schema), err, errlen);
    }
    td_cons_matcher_opts mo = {.thinking = k->thinking};
    if (!er)
        er = td_cons_matcher_create(&r->matcher, r->grammar, e->cvocab, &mo, err, errlen);
    if (!er && !(r->mask = malloc(td_cons_mask_words(e->cvocab) * sizeof *r->mask)))
        er = TD_ENOMEM;
    return er;
}

/* A request that continues from a state another process prefilled: load
 * it and carry on as if this engine had sampled the first token. */
static td_err resume(td_engine *e, ereq *r, char *err, size_t errlen)
{
    td_err er = td_v4_seq_load(r->seq, r->state, r->state_len, err, errlen);
    release_state(r);
    if (er)
        return er;
    if (td_v4_seq_len(r->seq) != (int64_t)r->n_prompt)
        return td_errf(err, errlen, TD_ECORRUPT, "state covers %lld tokens, the request %zu",
                       (long long)td_v4_seq_len(r->seq), r->n_prompt);
    r->prefilled = r->n_prompt;
    r->last = r->first_token;
    r->generated = 1;
    remember_token(e, r, r->first_token);
    td_sampler_skip(r->smp);
    /* prefill picked the first token under the same grammar */
    if (r->matcher && td_cons_advance(r->matcher, r->first_token))
        return td_errf(err, errlen, TD_EINVAL, "the first token breaks the constraint");
    return TD_OK;
}

/* Where this prompt leaves the longest cached prompt it shares tokens with
 * (0: nowhere worth a state). Prompts of one family (an agent's system
 * prompt and tools, then different conversations) restore only whole
 * cached prompts that are prefixes of theirs, and no cached prompt is a
 * prefix of a new conversation; a state saved where they branch apart is,
 * for every later member of the family. Worth one state save when at
 * least a block's worth is shared past what was restored. */
static size_t branch_point(td_engine *e, const ereq *r)
{
    size_t d = td_pcache_common(e->pcache, r->prompt, r->n_prompt);
    return d >= r->prefilled + BRANCH_MIN && d + 1 < r->n_prompt ? d : 0;
}

/* r joins the batch, with r->prefilled prompt tokens in its sequence. */
static void start_running(td_engine *e, ereq *r)
{
    if (r->prefilled && !r->generated)
        emit(e, (event){.kind = EV_CACHED, .state_len = r->prefilled, .cb = r->cb});
    if (!r->generated && e->pcache)
        r->branch = branch_point(e, r);
    r->next = e->running;
    e->running = r;
    atomic_store(&e->load_running, ++e->nrunning);
    atomic_fetch_sub(&e->load_waiting, 1);
    pthread_mutex_lock(&e->stat_mu);
    td_prom_observe(&e->queue_time, (double)(td_eng_now_ns() - r->submitted_ns) * 1e-9);
    pthread_mutex_unlock(&e->stat_mu);
}

/* The disk tier finished reading r's state (td_spill_restore_begin). */
static void resumed(void *arg, void *tag, size_t tokens)
{
    td_engine *e = arg;
    ereq *r = tag;
    r->prefilled = tokens;
    if (r->cancel) {
        finish(e, &e->loading, r, TD_ROUTER_FINISH_CANCELLED, TD_OK);
        return;
    }
    unlink_req(&e->loading, r);
    atomic_store(&e->load_loading, --e->nloading);
    start_running(e, r);
}

/* Moves waiting requests into the batch while there is room; one whose
 * prompt continues a state on disk waits in the loading list while the KV
 * thread reads it, and the batch goes on. */
static void admit(td_engine *e)
{
    char err[256];
    while (e->waiting && e->nrunning + e->nloading < e->opts.max_batch) {
        ereq *r = e->waiting;
        err[0] = '\0';
        td_sample_opts so = {.temperature = r->sampling.temperature,
                             .top_p = r->sampling.top_p, .top_k = r->sampling.top_k,
                             .seed = r->sampling.seed};
        td_err er = td_v4_seq_create(&r->seq, e->m, (int64_t)r->n_prompt + r->max_tokens,
                                     err, sizeof err);
        if (!er)
            er = td_sampler_create(&r->smp, e->vocab, &so);
        if (!er)
            er = constrain(e, r, err, sizeof err);
        if (!er && r->state_buf) {
            const td_v4_config *c = td_v4_model_config(e->m);
            if (!(r->offs = malloc(sizeof *r->offs * (size_t)(c->n_layers + c->n_mtp_layers + 1))))
                er = TD_ENOMEM;
            else if (td_v4_state_size_at(e->m, (int64_t)r->n_prompt, 0) > r->state_cap)
                er = td_errf(err, sizeof err, TD_ERANGE, "state buffer too small");
            else
                td_v4_state_offsets(e->m, (int64_t)r->n_prompt, 0, r->offs);
        }
        bool queued = false;
        if (!er && r->state)
            er = resume(e, r, err, sizeof err);
        else if (!er && e->pcache)
            r->prefilled = td_spill_restore_begin(atomic_load(&e->spill), e->pcache, r->seq,
                                                  r->prompt, r->n_prompt, r, &queued);
        if (er) {
            td_log(TD_LOG_ERROR, "engine: request %llu: cannot start: %s",
                   (unsigned long long)r->id, err[0] ? err : td_strerror(er));
            finish(e, &e->waiting, r, TD_ROUTER_FINISH_ERROR, er);
            continue;
        }
        e->waiting = r->next;
        if (!e->waiting)
            e->waiting_tail = NULL;
        if (queued) {
            r->next = e->loading;
            e->loading = r;
            atomic_store(&e->load_loading, ++e->nloading);
            continue;
        }
        start_running(e, r);
    }
}

static bool is_stop(const ereq *r, int32_t t)
{
    for (size_t i = 0; i < r->n_stop; i++)
        if (r->stop_ids[i] == t)
            return true;
    return false;
}

/* A prefill worker's request ends here: its state goes to the loop thread
 * (and from there over UCX), the memory of the sequence is freed with it. */
static td_err hand_over_state(td_engine *e, ereq *r)
{
    size_t n = td_v4_seq_state_size(r->seq), w = 0;
    if (r->state_buf) {  /* the main layers are in place already */
        td_err er = td_v4_seq_seal(r->seq, r->state_buf, r->state_cap, &w);
        if (!er)
            emit(e, (event){.kind = EV_STATE, .state = r->state_buf, .state_len = w,
                            .on_state = r->on_state, .cb = r->cb});
        return er;
    }
    void *buf = malloc(n);
    if (!buf)
        return TD_ENOMEM;
    td_err er = td_v4_seq_save(r->seq, buf, n, &w);
    if (er) {
        free(buf);
        return er;
    }
    emit(e, (event){.kind = EV_STATE, .state = buf, .state_len = w, .on_state = r->on_state,
                    .cb = r->cb});
    return TD_OK;
}

/* A prefill worker's request, in its last chunk: layer l is final, so its
 * section can go out while the next layers compute. */
static void layer_done(void *arg, int l)
{
    ereq *r = arg;
    if (td_v4_seq_save_layer(r->seq, l, (int64_t)r->n_prompt, r->state_buf, r->state_cap))
        return;  /* cannot happen: the buffer was sized for this prompt */
    r->on_section(r->cb.arg, r->offs[l], r->offs[l + 1] - r->offs[l]);
}

/* One iteration: one forward call over every runnable request. */
static void step(td_engine *e)
{
    int n = 0;
    int budget = e->opts.prefill_budget;
    for (ereq *r = e->running; r; r = r->next) {
        if (r->paused)
            continue;
        td_v4_step *st = &e->steps[n];
        float *lg = e->logits + (size_t)n * (size_t)e->vocab;
        if (r->prefilled < r->n_prompt) {
            if (budget == 0)
                continue;
            size_t take = r->n_prompt - r->prefilled;
            if (take > (size_t)budget)
                take = (size_t)budget;
            if (r->branch > r->prefilled && r->prefilled + take > r->branch)
                take = r->branch - r->prefilled;   /* stop where the family branches */
            budget -= (int)take;
            bool done = r->prefilled + take == r->n_prompt;
            *st = (td_v4_step){.seq = r->seq, .tokens = r->prompt + r->prefilled,
                               .n = (int)take, .logits = done ? lg : NULL};
            if (done && r->state_buf) {
                st->on_layer = layer_done;
                st->layer_arg = r;
            }
            e->step_take[n] = (int)take;
        } else {
            *st = (td_v4_step){.seq = r->seq, .tokens = &r->last, .n = 1, .logits = lg};
            e->step_take[n] = 0;
        }
        e->step_req[n++] = r;
    }
    if (n == 0)
        return;
    uint64_t rows = 0;
    for (int i = 0; i < n; i++)
        rows += (uint64_t)e->steps[i].n;
    atomic_fetch_add(&e->steps_total, 1);
    atomic_fetch_add(&e->step_rows_total, rows);
    atomic_store(&e->last_batch, (unsigned long long)n);
    char err[256];
    td_err er = td_v4_forward(e->m, e->steps, n, err, sizeof err);
    if (er) {
        /* The model checks before it changes anything, so the error is one
         * request's (a token out of range, a full sequence): fail them all
         * rather than guess which. */
        td_log(TD_LOG_ERROR, "engine: forward: %s", err);
        for (int i = 0; i < n; i++)
            finish(e, &e->running, e->step_req[i], TD_ROUTER_FINISH_ERROR, er);
        return;
    }
    for (int i = 0; i < n; i++) {
        ereq *r = e->step_req[i];
        r->prefilled += (size_t)e->step_take[i];
        if (r->branch && r->prefilled == r->branch) {
            if (td_pcache_put(e->pcache, r->seq, r->prompt, r->branch))
                td_log(TD_LOG_WARN, "engine: prefix cache: out of memory");
            r->branch = 0;
        }
        if (!e->steps[i].logits)
            continue;  /* a prefill chunk that is not the last */
        if (e->step_take[i] && e->pcache && r->prompt &&
            td_pcache_put(e->pcache, r->seq, r->prompt, r->n_prompt))
            td_log(TD_LOG_WARN, "engine: prefix cache: out of memory");
        if (r->matcher) {
            td_cons_mask(r->matcher, r->mask);
            td_cons_mask_logits(r->mask, e->cvocab, e->steps[i].logits, e->vocab);
        }
        int32_t t = td_sampler_pick(r->smp, e->steps[i].logits);
        if (r->matcher && td_cons_advance(r->matcher, t)) {
            td_log(TD_LOG_ERROR, "engine: request %llu: token %d outside its grammar",
                   (unsigned long long)r->id, t);
            finish(e, &e->running, r, TD_ROUTER_FINISH_ERROR, TD_EINVAL);
            continue;
        }
        if (is_stop(r, t)) {
            finish(e, &e->running, r, TD_ROUTER_FINISH_STOP, TD_OK);
            continue;
        }
        emit(e, (event){.kind = EV_TOKEN, .token = t, .cb = r->cb});
        r->last = t;
        remember_token(e, r, t);
        if (++r->generated == r->max_tokens) {
            td_err se = r->on_state ? hand_over_state(e, r) : TD_OK;
            finish(e, &e->running, r, se ? TD_ROUTER_FINISH_ERROR : TD_ROUTER_FINISH_LENGTH, se);
        }
    }
}

/* The cache stored or dropped a prefix: tell the loop thread (a copy of
 * the tokens travels with the event; once per request, not per token). */
static void cache_event(void *arg, bool stored, const int32_t *tokens, size_t n)
{
    td_engine *e = arg;
    int32_t *copy = malloc((n ? n : 1) * sizeof *copy);
    if (!copy)
        return;
    memcpy(copy, tokens, n * sizeof *copy);
    emit(e, (event){.kind = EV_CACHE, .token = stored, .state = copy, .state_len = n});
}

/* The prefix cache's counters, for td_engine_cache on other threads. */
static void publish_cache(td_engine *e)
{
    if (!e->pcache)
        return;
    td_pcache_stats ps = td_pcache_get_stats(e->pcache);
    atomic_store(&e->pc_lookups, ps.lookups);
    atomic_store(&e->pc_hits, ps.hits);
    atomic_store(&e->pc_tokens, ps.tokens_reused);
    atomic_store(&e->pc_bytes, ps.bytes);
    atomic_store(&e->pc_entries, ps.entries);
    atomic_store(&e->pc_evictions, ps.evictions);
}

/* The KV thread finished something: an idle engine thread wakes to collect it. */
static void wake(void *arg)
{
    td_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

static td_err load(td_engine *e)
{
    char err[512];
    td_err er = td_v4_weights_load(&e->w, e->model_dir, err, sizeof err);
    if (!er) {
        td_v4_model_opts mo = {.nthreads = e->opts.nthreads};
        er = td_v4_model_create(&e->m, e->w, &mo, err, sizeof err);
    }
    if (er) {
        snprintf(e->load_err, sizeof e->load_err, "%s", err);
        return er;
    }
    const td_v4_config *c = td_v4_model_config(e->m);
    e->vocab = c->vocab_size;
    int B = e->opts.max_batch;
    e->logits = malloc(sizeof(float) * (size_t)B * (size_t)e->vocab);
    e->steps = calloc((size_t)B, sizeof *e->steps);
    e->step_req = calloc((size_t)B, sizeof *e->step_req);
    e->step_take = calloc((size_t)B, sizeof *e->step_take);
    if (!e->logits || !e->steps || !e->step_req || !e->step_take) {
        snprintf(e->load_err, sizeof e->load_err, "out of memory for the batch buffers");
        return TD_ENOMEM;
    }
    int64_t ctx = c->max_position;
    if (e->opts.max_context > 0 && e->opts.max_context < ctx)
        ctx = e->opts.max_context;
    atomic_store(&e->ctx_len, ctx);
    /* The vocabulary's bytes, for constrained output; without a tokenizer
     * the engine still serves, refusing constraints. */
    char tpath[4096];
    snprintf(tpath, sizeof tpath, "%s/tokenizer.json", e->model_dir);
    char terr[256];
    if (td_tok_load(&e->tok, tpath, terr, sizeof terr) ||
        td_cons_vocab_create(&e->cvocab, e->tok, terr, sizeof terr))
        td_log(TD_LOG_WARN, "engine: no constrained output: %s", terr);
    int64_t pc = e->opts.prefix_cache_bytes;
    if (pc >= 0 && td_pcache_create(&e->pcache, pc ? (size_t)pc : (size_t)256 << 20,
                                    e->opts.on_cache ? cache_event : NULL, e)) {
        snprintf(e->load_err, sizeof e->load_err, "out of memory for the prefix cache");
        return TD_ENOMEM;
    }
    td_spill_opts so = {.dir = e->opts.kv_store_dir, .capacity_bytes = e->opts.kv_store_bytes,
                        .peers = e->opts.kv_store_peers,
                        .range_tokens = e->opts.kv_range_tokens, .wake = wake, .wake_arg = e,
                        .on_held = e->opts.on_cache ? cache_event : NULL, .held_arg = e};
    td_spill *sp = NULL;
    if (so.dir && so.dir[0] && td_spill_create(&sp, &so, e->m, e->pcache)) {
        snprintf(e->load_err, sizeof e->load_err, "out of memory for the kv store");
        return TD_ENOMEM;
    }
    atomic_store(&e->spill, sp);
    return TD_OK;
}

void *td_eng_main(void *arg)
{
    td_engine *e = arg;
    td_err er = load(e);
    if (!er)
        atomic_store(&e->ready, true);
    emit(e, (event){.kind = EV_LOADED, .err = er});
    post_events(e);

    for (;;) {
        struct timespec until;  /* when a cached state is due to go to disk */
        bool due = td_spill_idle(atomic_load(&e->spill), e->pcache, e->opts.kv_spill_idle_ms,
                                 &until);
        publish_cache(e);
        pthread_mutex_lock(&e->mu);
        while (!e->stop && !e->inbox && e->cmds.n == 0 && (er || !has_work(e)) &&
               !td_spill_news(atomic_load(&e->spill))) {
            if (!due)
                pthread_cond_wait(&e->cv, &e->mu);
            else if (pthread_cond_timedwait(&e->cv, &e->mu, &until) == ETIMEDOUT)
                break;
        }
        bool stop = e->stop;
        if (e->inbox) {
            if (e->waiting_tail)
                e->waiting_tail->next = e->inbox;
            else
                e->waiting = e->inbox;
            e->waiting_tail = e->inbox_tail;
            e->inbox = e->inbox_tail = NULL;
        }
        /* Swap the command lists: no copy, no allocation. */
        VEC(cmd) tmp = {e->cmds.v, e->cmds.n, e->cmds.cap};
        e->cmds.v = e->cmds_local.v;
        e->cmds.cap = e->cmds_local.cap;
        e->cmds.n = 0;
        e->cmds_local.v = tmp.v;
        e->cmds_local.cap = tmp.cap;
        e->cmds_local.n = tmp.n;
        pthread_mutex_unlock(&e->mu);

        apply_commands(e);
        td_spill_poll(atomic_load(&e->spill), e->pcache, resumed, e);
        if (stop) {
            for (ereq *r = e->loading; r; r = r->next)
                r->cancel = true;
            while (td_spill_resuming(atomic_load(&e->spill))) {
                td_spill_wait(atomic_load(&e->spill));
                td_spill_poll(atomic_load(&e->spill), e->pcache, resumed, e);
            }
            while (e->running)
                finish(e, &e->running, e->running, TD_ROUTER_FINISH_CANCELLED, TD_OK);
            while (e->waiting)
                finish(e, &e->waiting, e->waiting, TD_ROUTER_FINISH_CANCELLED, TD_OK);
            post_events(e);
            break;
        }
        if (!er) {
            admit(e);
            step(e);
            publish_cache(e);
        } else {
            while (e->waiting)  /* cannot happen: submit refuses; be safe */
                finish(e, &e->waiting, e->waiting, TD_ROUTER_FINISH_ERROR, er);
        }
        post_events(e);
    }
    td_spill_destroy(atomic_exchange(&e->spill, NULL), e->pcache);  /* memory to disk */
    td_pcache_destroy(e->pcache);
    e->pcache = NULL;
    /* Nothing is delivered after the last post: what the stop itself
     * emitted (cache events of states leaving) goes with the engine. */
    for (size_t i = 0; i < e->events.n; i++)
        if (e->events.v[i].kind == EV_CACHE)
            free(e->events.v[i].state);
    e->events.n = 0;
    td_cons_vocab_destroy(e->cvocab);
    td_tok_destroy(e->tok);
    td_v4_model_destroy(e->m);
    td_v4_weights_destroy(e->w);
    e->m = NULL;
    e->w = NULL;
    return NULL;
}
