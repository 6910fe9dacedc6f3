/* See spill.h. Two threads:
 *
 * - The engine thread hands states over (the memory cache's spill
 *   function: the arrays change owner, nothing is copied), asks for
 *   restores, and collects finished work in td_spill_poll: the memory of a
 *   written state is freed there, a state that could not be written goes
 *   back to the cache, a finished resume goes back to its request.
 * - The KV thread owns the stores (td_kv is single-threaded) and does the
 *   I/O: resumes first (a request waits on each), then spills in order.
 *
 * Until the engine thread collects a spill, its state stays findable in
 * memory (the pending list): a prompt that arrives while its state is
 * being written restores from memory, as if it had never left. The engine
 * thread also keeps the set of block keys that have an index record in
 * our store, so a prompt with nothing on disk never waits for the KV
 * thread (which may be in the middle of a long write). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "engine/spill_internal.h"
#include "model/state.h"

enum { DEFAULT_MAX_QUEUED = 1 << 30 };

/* ---- sets of block keys with an index record (engine thread) ----------- */

static size_t slot_of(td_kv_key k, size_t cap) { return (size_t)(k.lo ^ k.hi) & (cap - 1); }

static bool key_zero(td_kv_key k) { return !k.lo && !k.hi; }

static bool set_has(const spill_keyset *t, td_kv_key k)
{
    if (!t->cap)
        return false;
    for (size_t i = slot_of(k, t->cap);; i = (i + 1) & (t->cap - 1)) {
        if (key_zero(t->keys[i]))
            return false;
        if (t->keys[i].lo == k.lo && t->keys[i].hi == k.hi)
            return true;
    }
}

static void set_add(spill_keyset *t, td_kv_key k)
{
    if (key_zero(k) || set_has(t, k))
        return;  /* a zero key is the empty slot (2^-128) */
    if ((t->n + 1) * 2 > t->cap) {
        size_t nc = t->cap ? 2 * t->cap : 256;
        td_kv_key *nv = calloc(nc, sizeof *nv), *old = t->keys;
        if (!nv)
            return;  /* a key missing costs a disk lookup not made: a recompute */
        size_t oc = t->cap;
        t->keys = nv;
        t->cap = nc;
        t->n = 0;
        for (size_t i = 0; i < oc; i++)
            if (!key_zero(old[i]))
                set_add(t, old[i]);
        free(old);
    }
    size_t i = slot_of(k, t->cap);
    while (!key_zero(t->keys[i]))
        i = (i + 1) & (t->cap - 1);
    t->keys[i] = k;
    t->n++;
}

/* Linear probing without tombstones: later members of the cluster move
 * back into the hole unless their home slot lies cyclically after it. */
static void set_del(spill_keyset *t, td_kv_key k)
{
    if (!t->cap)
        return;
    size_t mask = t->cap - 1, i = slot_of(k, t->cap);
    while (!key_zero(t->keys[i]) && (t->keys[i].lo != k.lo || t->keys[i].hi != k.hi))
        i = (i + 1) & mask;
    if (key_zero(t->keys[i]))
        return;
    for (size_t j = i;;) {
        j = (j + 1) & mask;
        if (key_zero(t->keys[j]))
            break;
        size_t h = slot_of(t->keys[j], t->cap);
        bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
        if (!stays) {
            t->keys[i] = t->keys[j];
            i = j;
        }
    }
    t->keys[i] = (td_kv_key){0, 0};
    t->n--;
}

static int add_index_key(const td_kv_entry_info *e, void *arg)
{
    if (e->section == SPILL_SECTION_INDEX)
        set_add(arg, e->key);
    return 0;
}

/* Whether the set may name a state longer than got tokens among the chain
 * keys of the prompt's nb whole blocks (s->ekeys). */
static bool set_may_have(const td_spill *s, const spill_keyset *t, size_t nb, size_t got)
{
    for (size_t i = nb; i-- > 0;) {
        size_t have = (i + 1) * s->bt;
        if (have + s->bt <= got + 1)
            break;  /* its states end before what memory gave */
        if (set_has(t, s->ekeys[i]))
            return true;
    }
    return false;
}

/* Whether the disk may hold a state longer than got tokens that
 * prompt[0..n) continues (one token must remain): our store's set, and for
 * each peer (whose store changes under us) the set the KV thread read at
 * its last open, if the peer's manifest is still the one it read (a stat
 * of its two files); otherwise the KV thread is asked. */
static bool disk_may_have(td_spill *s, const int32_t *prompt, size_t n, size_t got)
{
    size_t limit = n - 1;
    if (n == 0 || limit < s->bt || limit <= got)
        return false;
    size_t nb = limit / s->bt;
    if (nb > s->nekeys) {
        td_kv_key *k = realloc(s->ekeys, nb * sizeof *k);
        if (!k)
            return true;  /* let the KV thread look */
        s->ekeys = k;
        s->nekeys = nb;
    }
    nb = td_kv_chain(s->fingerprint, s->bt, prompt, limit, s->ekeys, nb);
    if (set_may_have(s, &s->set, nb, got))
        return true;
    for (int i = 0; i < s->npeers; i++) {
        spill_peer_view *v = &s->views[i];
        td_kv_manifest_id now;
        if (!v->valid)
            return true;
        td_kv_manifest_id_at(s->peers[i].dir, &now);
        if (!td_kv_manifest_id_eq(&now, &v->id) || set_may_have(s, &v->set, nb, got))
            return true;
    }
    return false;
}

/* A peer's index keys as the KV thread read them (td_spill_peer_view). */
static void view_replace(td_spill *s, spill_job *j)
{
    spill_peer_view *v = &s->views[j->peer];
    free(v->set.keys);
    v->set = (spill_keyset){0};
    for (size_t i = 0; i < j->n; i++)
        set_add(&v->set, j->keys[i]);
    v->id = j->id;
    v->valid = true;
}

/* ---- the KV thread ---------------------------------------------------------- */

static void run_job(td_spill *s, spill_job *j)
{
    if (j->kind == JOB_RESUME) {
        j->got = td_spill_disk_restore(s, j->seq, j->prompt, j->n, j->min, &j->reset);
        return;
    }
    j->result = td_spill_disk_put(s, j->tokens, j->n, j->state, j->len, &j->block);
    s->dirty = true;
}

/* Idle after writes: checkpoint, empty the log, give the files of empty
 * segments back to the file system, so neither grows while the worker
 * waits for its next session. */
static void reclaim(td_spill *s)
{
    char err[512] = "";
    double t0 = (double)clock() / CLOCKS_PER_SEC;
    td_err e = td_kv_gc(s->kv, err, sizeof err);
    s->dirty = false;
    if (e) {
        td_log(TD_LOG_WARN, "kv spill: background reclamation failed: %s", err);
        return;
    }
    s->c.gcs++;
    td_spill_publish(s);
    td_log(TD_LOG_DEBUG, "kv spill: reclaimed (checkpoint, empty segments) in %.1f ms cpu",
           ((double)clock() / CLOCKS_PER_SEC - t0) * 1e3);
}

/* CLOCK_REALTIME ms from now: a pthread_cond_timedwait deadline. */
static struct timespec realtime_after(int64_t ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000;
    if (t.tv_nsec >= 1000000000) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000;
    }
    return t;
}

static double mono_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

enum { PEER_LOOK_MS = 1000 };

/* Waits on qcv (qmu held) for work, or until a timed duty is due: the
 * store's reclamation gc_idle_ms after the last work, if that wrote; a
 * look at the peers' stores every second, so the engine thread's views of
 * them stay fresh. Does the duty, without qmu, when the wait times out. */
static void wait_work(td_spill *s, double last_work)
{
    double gc_left = s->dirty && s->gc_idle_ms >= 0
                         ? s->gc_idle_ms / 1e3 - (mono_s() - last_work) : -1;
    double wait = s->npeers ? PEER_LOOK_MS / 1e3 : -1;
    if (gc_left >= 0 && (wait < 0 || gc_left < wait))
        wait = gc_left;
    if (wait < 0) {
        pthread_cond_wait(&s->qcv, &s->qmu);
        return;
    }
    struct timespec until = realtime_after((int64_t)(wait * 1e3) + 1);
    if (pthread_cond_timedwait(&s->qcv, &s->qmu, &until) != ETIMEDOUT || s->resumes ||
        s->spills || s->quit)
        return;
    pthread_mutex_unlock(&s->qmu);
    if (s->dirty && s->gc_idle_ms >= 0 && mono_s() - last_work >= s->gc_idle_ms / 1e3)
        reclaim(s);
    if (s->npeers)
        td_spill_disk_look_at_peers(s);
    pthread_mutex_lock(&s->qmu);
}

/* Hands j to the engine thread (td_spill_poll) and wakes it; a written
 * spill's bytes leave the queue's count. */
static void finished(td_spill *s, spill_job *j)
{
    pthread_mutex_lock(&s->qmu);
    if (j->kind == JOB_SPILL)
        s->queued_bytes -= j->len;
    j->next = NULL;  /* in order: an index evicted, then written again, ends in the set */
    if (s->done_tail)
        s->done_tail->next = j;
    else
        s->done = j;
    s->done_tail = j;
    atomic_store(&s->news, true);
    pthread_cond_broadcast(&s->dcv);
    pthread_mutex_unlock(&s->qmu);
    if (s->wake)
        s->wake(s->wake_arg);
}

/* Resumes first (a request waits on each), then what the store held at
 * start is announced (in slices, so a resume never waits for all of it),
 * then spills in order. */
static void *kv_main(void *arg)
{
    td_spill *s = arg;
    bool announcing = false;
    if (s->on_held) {
        td_spill_disk_announce_begin(s);
        announcing = true;
    }
    double last_work = mono_s();
    pthread_mutex_lock(&s->qmu);
    for (;;) {
        while (!s->resumes && !announcing && !s->spills && !s->quit)
            wait_work(s, last_work);
        if (!s->resumes && announcing && !s->quit) {
            pthread_mutex_unlock(&s->qmu);
            announcing = td_spill_disk_announce_some(s, 64);
            pthread_mutex_lock(&s->qmu);
            continue;
        }
        spill_job *j = s->resumes ? s->resumes : s->spills;
        if (!j)
            break;  /* quit, and nothing left to write */
        if (j == s->resumes) {
            if (!(s->resumes = j->next))
                s->resumes_tail = NULL;
        } else if (!(s->spills = j->next)) {
            s->spills_tail = NULL;
        }
        pthread_mutex_unlock(&s->qmu);
        run_job(s, j);
        finished(s, j);
        last_work = mono_s();
        pthread_mutex_lock(&s->qmu);
    }
    pthread_mutex_unlock(&s->qmu);
    return NULL;
}

void td_spill_unindex(td_spill *s, td_kv_key block)
{
    spill_job *j = calloc(1, sizeof *j);
    if (!j)
        return;  /* a stale key costs a lookup that misses */
    *j = (spill_job){.kind = JOB_UNINDEX, .block = block};
    finished(s, j);
}

void td_spill_peer_view(td_spill *s, int peer, td_kv_key *keys, size_t n,
                        const td_kv_manifest_id *id)
{
    spill_job *j = calloc(1, sizeof *j);
    if (!j) {
        free(keys);
        return;  /* the view stays older: its id differs, so the KV thread is asked */
    }
    *j = (spill_job){.kind = JOB_PEERVIEW, .peer = peer, .keys = keys, .n = n, .id = *id};
    finished(s, j);
}

void td_spill_notice(td_spill *s, int32_t *tokens, size_t n, bool stored)
{
    spill_job *j = calloc(1, sizeof *j);
    if (!j) {
        free(tokens);
        return;  /* the router keeps a stale view: a placement that recomputes */
    }
    *j = (spill_job){.kind = JOB_HELD, .stored = stored, .tokens = tokens, .n = n};
    finished(s, j);
}

static void enqueue(td_spill *s, spill_job *j)
{
    j->next = NULL;
    bool resume = j->kind == JOB_RESUME;
    spill_job **head = resume ? &s->resumes : &s->spills;
    spill_job **tail = resume ? &s->resumes_tail : &s->spills_tail;
    if (*tail)
        (*tail)->next = j;
    else
        *head = j;
    *tail = j;
    pthread_cond_signal(&s->qcv);
}

/* ---- the engine thread's side ----------------------------------------------- */

/* The memory cache lets a state go: queue it for the KV thread. Waits
 * while too many bytes are queued (the disk is slower than the evictions):
 * the memory they hold is not free until they are written. */
static td_err spill_cb(void *arg, int32_t *tokens, size_t n, uint8_t *state, size_t len)
{
    td_spill *s = arg;
    if (!s->kv || n < s->bt || len < 8)
        return TD_ENOTSUP;  /* not worth a disk write: it stays, or goes, in memory */
    spill_job *j = calloc(1, sizeof *j);
    if (!j)
        return TD_ENOMEM;
    *j = (spill_job){.kind = JOB_SPILL, .tokens = tokens, .n = n, .state = state, .len = len};
    pthread_mutex_lock(&s->qmu);
    while (s->queued_bytes && s->queued_bytes + len > s->max_queued)
        pthread_cond_wait(&s->dcv, &s->qmu);
    s->queued_bytes += len;
    enqueue(s, j);
    pthread_mutex_unlock(&s->qmu);
    j->pnext = s->pending;
    s->pending = j;
    atomic_fetch_add(&s->pending_bytes, len);
    return TD_OK;
}

static void free_job(spill_job *j)
{
    free(j->tokens);
    free(j->state);
    free(j);
}

/* The memory tiers: the cache, and the states on their way to disk; the
 * longer one is loaded (only it: a state is megabytes to gigabytes). */
static size_t restore_memory(td_spill *s, td_pcache *c, td_v4_seq *seq, const int32_t *prompt,
                             size_t n)
{
    const spill_job *best = NULL;
    for (const spill_job *j = s ? s->pending : NULL; j; j = j->pnext)
        if (j->n < n && (!best || j->n > best->n) &&
            !memcmp(j->tokens, prompt, j->n * sizeof *prompt))
            best = j;
    size_t got = td_pcache_restore(c, seq, prompt, n, best ? best->n : 0);
    char err[128];
    if (!got && best && td_v4_seq_load(seq, best->state, best->len, err, sizeof err) == TD_OK)
        got = best->n;  /* (a failed load leaves seq as it was) */
    return got;
}

size_t td_spill_restore_begin(td_spill *s, td_pcache *c, td_v4_seq *seq, const int32_t *prompt,
                              size_t n, void *tag, bool *queued)
{
    *queued = false;
    size_t got = restore_memory(s, c, seq, prompt, n);
    if (!s || !s->kv)
        return got;
    if (!disk_may_have(s, prompt, n, got)) {
        atomic_fetch_add(&s->quick_misses, 1);
        return got;
    }
    spill_job *j = calloc(1, sizeof *j);
    if (!j)
        return got;
    *j = (spill_job){.kind = JOB_RESUME, .prompt = prompt, .n = n, .seq = seq, .min = got,
                     .tag = tag};
    pthread_mutex_lock(&s->qmu);
    enqueue(s, j);
    pthread_mutex_unlock(&s->qmu);
    s->npending++;
    *queued = true;
    return got;
}

void td_spill_poll(td_spill *s, td_pcache *c, td_spill_resumed_fn done, void *arg)
{
    if (!s || !atomic_exchange(&s->news, false))
        return;
    pthread_mutex_lock(&s->qmu);
    spill_job *list = s->done;
    s->done = s->done_tail = NULL;
    pthread_mutex_unlock(&s->qmu);
    while (list) {
        spill_job *j = list;
        list = j->next;
        if (j->kind == JOB_UNINDEX) {
            set_del(&s->set, j->block);
            free(j);
            continue;
        }
        if (j->kind == JOB_PEERVIEW) {
            view_replace(s, j);
            free(j->keys);
            free(j);
            continue;
        }
        if (j->kind == JOB_HELD) {
            if (s->on_held && done)
                s->on_held(s->held_arg, j->stored, j->tokens, j->n);
            free_job(j);
            continue;
        }
        if (j->kind == JOB_RESUME) {
            if (!done) {  /* cannot happen: destroy comes after the resumes */
                free(j);
                continue;
            }
            size_t got = j->got ? j->got : j->min;
            if (j->reset)  /* the failed load emptied seq: what memory has, again */
                got = restore_memory(s, c, j->seq, j->prompt, j->n);
            s->npending--;
            done(arg, j->tag, got);
            free(j);
            continue;
        }
        for (spill_job **pp = &s->pending; *pp; pp = &(*pp)->pnext)
            if (*pp == j) {
                *pp = j->pnext;
                break;
            }
        atomic_fetch_sub(&s->pending_bytes, j->len);
        if (j->result == TD_OK) {
            set_add(&s->set, j->block);
            free_job(j);
        } else {  /* could not be written: back to memory, or gone */
            if (c && j->result != TD_ENOTSUP)
                td_pcache_adopt(c, j->tokens, j->n, j->state, j->len);
            else
                free(j->tokens), free(j->state);
            free(j);
        }
    }
}

bool td_spill_news(td_spill *s) { return s && atomic_load(&s->news); }

size_t td_spill_resuming(const td_spill *s) { return s ? s->npending : 0; }

void td_spill_wait(td_spill *s)
{
    pthread_mutex_lock(&s->qmu);
    while (!s->done)
        pthread_cond_wait(&s->dcv, &s->qmu);
    pthread_mutex_unlock(&s->qmu);
}

/* ---- create, destroy ------------------------------------------------------- */

td_err td_spill_create(td_spill **out, const td_spill_opts *o, const td_v4_model *m,
                       td_pcache *c)
{
    td_spill *s = calloc(1, sizeof *s);
    if (!s)
        return TD_ENOMEM;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->qmu, NULL);
    pthread_cond_init(&s->qcv, NULL);
    pthread_cond_init(&s->dcv, NULL);
    s->m = m;
    s->fingerprint = td_v4_layout_fingerprint(td_v4_model_config(m));
    s->wake = o->wake;
    s->wake_arg = o->wake_arg;
    s->on_held = o->on_held;
    s->held_arg = o->held_arg;
    s->max_queued = o->max_queued_bytes ? o->max_queued_bytes : DEFAULT_MAX_QUEUED;
    s->gc_idle_ms = o->gc_idle_ms ? o->gc_idle_ms : 30000;
    s->range_tokens = o->range_tokens < 0 ? 0 : o->range_tokens ? (uint32_t)o->range_tokens : 16384;
    snprintf(s->dir, sizeof s->dir, "%s", o->dir);
    td_err e = td_spill_open_store(s, o);
    if (!e && s->kv) {
        td_kv_foreach(s->kv, add_index_key, &s->set);
        if (pthread_create(&s->thread, NULL, kv_main, s)) {
            td_log(TD_LOG_ERROR, "kv spill: cannot start the KV thread: serving without the "
                   "disk tier");
            td_kv_close(s->kv);
            s->kv = NULL;
        } else {
            s->thread_started = true;
        }
    }
    if (e) {
        td_spill_destroy(s, NULL);
        return e;
    }
    if (!c)
        td_log(TD_LOG_WARN, "kv spill: the prefix cache is off: nothing will be spilled");
    else if (s->kv)
        td_pcache_set_spill(c, spill_cb, s);
    *out = s;
    return TD_OK;
}

void td_spill_destroy(td_spill *s, td_pcache *c)
{
    if (!s)
        return;
    if (s->kv && c)
        td_pcache_spill_all(c);  /* queued: the thread writes them before it ends */
    if (s->thread_started) {
        pthread_mutex_lock(&s->qmu);
        s->quit = true;
        pthread_cond_signal(&s->qcv);
        pthread_mutex_unlock(&s->qmu);
        pthread_join(s->thread, NULL);
    }
    if (c)
        td_pcache_set_spill(c, NULL, NULL);
    atomic_store(&s->news, true);
    td_spill_poll(s, NULL, NULL, NULL);  /* (no resume is left: the engine waited) */
    td_spill_close_stores(s);
    free(s->set.keys);
    for (int i = 0; i < MAX_PEERS; i++)
        free(s->views[i].set.keys);
    free(s->ekeys);
    pthread_cond_destroy(&s->qcv);
    pthread_cond_destroy(&s->dcv);
    pthread_mutex_destroy(&s->qmu);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int td_spill_up(const td_spill *s) { return s && s->kv; }

bool td_spill_idle(td_spill *s, td_pcache *c, int64_t idle_ms, struct timespec *until)
{
    if (!s || !s->kv || !c || idle_ms <= 0)
        return false;
    int64_t next = td_pcache_spill_idle(c, idle_ms);
    if (next < 0)
        return false;
    *until = realtime_after(next);
    return true;
}

/* ---- metrics (any thread) ---------------------------------------------------- */

void td_spill_metrics(td_spill *s, td_prom_buf *b)
{
    pthread_mutex_lock(&s->mu);
    spill_counters c = s->pub;
    pthread_mutex_unlock(&s->mu);
    c.resume_misses += atomic_load(&s->quick_misses);
    td_prom_gauge(b, "tandem_kv_spill_store_up",
                  "1 if the disk tier's store is open, 0 if it could not be (see the log).",
                  s->kv ? 1 : 0);
    if (s->kv)
        td_kv_metrics(&c.kv, b);
    td_prom_gauge(b, "tandem_kv_spill_pending_bytes",
                  "States handed to the disk tier and not written yet: memory still held.",
                  (double)atomic_load(&s->pending_bytes));
    td_prom_counter(b, "tandem_kv_spills_total",
                    "States written to the disk tier (evicted for room, idle, or at stop).",
                    c.spills);
    td_prom_counter(b, "tandem_kv_spill_bytes_total", "Bytes of states written to disk.",
                    c.spill_bytes);
    td_prom_counter(b, "tandem_kv_spills_skipped_total",
                    "Spills not written: the same tokens' state was on disk already.",
                    c.spill_skipped);
    td_prom_histogram(b, "tandem_kv_spill_duration_seconds",
                      "One spill: chain keys, write the state and its tail record, sync.",
                      &c.spill_s);
    td_prom_counter(b, "tandem_kv_spill_gc_total",
                    "Background reclamations: checkpoint, log emptied, empty segment files "
                    "deleted (after writes, when idle).", c.gcs);
    td_prom_counter(b, "tandem_kv_resumes_total",
                    "Prompts that missed in memory and resumed from a state on disk.", c.resumes);
    td_prom_counter(b, "tandem_kv_resume_tokens_total",
                    "Prompt tokens restored from disk instead of prefilled.", c.resume_tokens);
    td_prom_counter(b, "tandem_kv_resume_misses_total",
                    "Disk lookups that found no usable state.", c.resume_misses);
    td_prom_counter(b, "tandem_kv_peer_resumes_total",
                    "Prompts resumed from a peer worker's store (--kv-store-peers).",
                    c.peer_resumes);
    td_prom_counter(b, "tandem_kv_peer_resume_tokens_total",
                    "Prompt tokens restored from a peer worker's store.", c.peer_resume_tokens);
    td_prom_histogram(b, "tandem_kv_resume_duration_seconds",
                      "One resume: lookup, read and verify, load into the sequence.",
                      &c.resume_s);
    td_prom_family(b, "tandem_kv_spill_errors_total", "counter",
                   "Disk tier failures by operation and reason; the request recomputes.");
    for (int op = 0; op < NOPS; op++)
        for (int r = 0; r < NREASONS; r++)
            td_prom_put(b, "tandem_kv_spill_errors_total{op=\"%s\",reason=\"%s\"} %llu\n",
                        td_spill_op_name[op], td_spill_reason_name[r],
                        (unsigned long long)c.failures[op][r]);
}
