/* See serve_workers.h. Children share our stderr, so their logs interleave
 * with the router's, each line naming its process. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd/serve_workers.h"

enum { NROLES = 2, RESTART_MS = 500, KILL_AFTER_MS = 5000, START_TRIES = 3 };
static const char *const roles[NROLES] = {"prefill", "decode"};

typedef struct {
    serve_workers *w;
    int role;
    uv_process_t proc;
    uv_timer_t restart;
    bool running;
    int failed_starts;           /* exits before it ever registered */
} child;

struct serve_workers {
    serve_workers_opts o;
    uv_loop_t *loop;
    char exe[4096];
    char threads[24], max_batch[24], ctx[24], pcache[24];
    char kv_decode[4096];        /* the decode worker's store: kv_store/decode */
    child kids[NROLES];
    bool stopping;
    uv_timer_t kill_timer;       /* SIGKILL for children that ignore SIGTERM */
    int open_handles;
    void (*on_stopped)(void *);
    void *stopped_arg;
};

static void spawn_child(child *c);

/* Every handle (restart timers, live process handles) counts in
 * open_handles; once stopping and the last is closed, w goes. */
static void on_handle_closed(uv_handle_t *h)
{
    serve_workers *w = h->data;
    if (--w->open_handles > 0 || !w->stopping)
        return;
    void (*cb)(void *) = w->on_stopped;
    void *arg = w->stopped_arg;
    free(w);
    if (cb)
        cb(arg);
}

static void close_handle(serve_workers *w, uv_handle_t *h)
{
    h->data = w;
    uv_close(h, on_handle_closed);
}

/* A child still loading a model (or stuck in I/O) may not get to its
 * signal handler: the server must still exit. */
static void on_kill_timer(uv_timer_t *t)
{
    serve_workers *w = t->data;
    for (int i = 0; i < NROLES; i++)
        if (w->kids[i].running) {
            fprintf(stderr, "tandem serve: the %s worker ignored SIGTERM: SIGKILL\n",
                    roles[i]);
            uv_process_kill(&w->kids[i].proc, SIGKILL);
        }
    close_handle(w, (uv_handle_t *)t);
}

static void on_restart(uv_timer_t *t)
{
    child *c = t->data;
    if (!c->w->stopping)
        spawn_child(c);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
    child *c = p->data;
    serve_workers *w = c->w;
    c->running = false;
    close_handle(w, (uv_handle_t *)p);
    if (w->stopping) {
        bool all = true;
        for (int i = 0; i < NROLES; i++)
            all = all && !w->kids[i].running;
        if (all && uv_is_active((uv_handle_t *)&w->kill_timer)) {
            uv_timer_stop(&w->kill_timer);
            close_handle(w, (uv_handle_t *)&w->kill_timer);
        }
        return;
    }
    fprintf(stderr, "tandem serve: the %s worker exited (%s %d)\n", roles[c->role],
            sig ? "signal" : "status", sig ? sig : (int)status);
    /* One that never came up: an exit status means it said why (a model
     * that does not load): give up. Killed by a signal, it gets a few tries. */
    if (!w->o.registered(w->o.arg, roles[c->role]) &&
        (!sig || ++c->failed_starts >= START_TRIES)) {
        w->o.on_failed(w->o.arg, roles[c->role]);
        return;
    }
    uv_timer_start(&c->restart, on_restart, RESTART_MS, 0);
}

static void spawn_child(child *c)
{
    serve_workers *w = c->w;
    char *args[32];
    int n = 0;
    args[n++] = w->exe;
    args[n++] = (char *)roles[c->role];
    args[n++] = "--router";
    args[n++] = (char *)w->o.router_url;
    args[n++] = "--model";
    args[n++] = (char *)w->o.model_dir;
    args[n++] = "--exit-with-parent";
    if (w->o.threads) {
        args[n++] = "--threads";
        args[n++] = w->threads;
    }
    if (w->o.max_batch) {
        args[n++] = "--max-batch";
        args[n++] = w->max_batch;
    }
    if (w->o.ctx) {
        args[n++] = "--ctx";
        args[n++] = w->ctx;
    }
    if (w->o.prefix_cache_mib >= 0) {
        args[n++] = "--prefix-cache-mib";
        args[n++] = w->pcache;
    }
    /* Both keep a prefix cache (prefill: prompts; decode: finished
     * conversations), so both get a disk tier: the prefill worker the store
     * at --kv-store, the decode worker one beside it, and each reads the
     * other's (--kv-store-peers), so a session resumes whichever of the two
     * the router picks for its next turn. */
    const char *mine = c->role == 0 ? w->o.kv_store : w->kv_decode;
    const char *theirs = c->role == 0 ? w->kv_decode : w->o.kv_store;
    const char *kv[][2] = {{"--kv-store", mine}, {"--kv-store-peers", theirs},
                           {"--kv-store-gib", w->o.kv_store_gib},
                           {"--kv-spill-idle-ms", w->o.kv_spill_idle_ms},
                           {"--kv-store-range-tokens", w->o.kv_range_tokens}};
    for (size_t i = 0; w->o.kv_store && i < sizeof kv / sizeof *kv; i++)
        if (kv[i][1]) {
            args[n++] = (char *)kv[i][0];
            args[n++] = (char *)kv[i][1];
        }
    args[n] = NULL;
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE}, {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = 2},
    };
    uv_process_options_t po = {.exit_cb = on_exit_cb, .file = w->exe, .args = args,
                               .stdio_count = 3, .stdio = stdio};
    c->proc.data = c;
    int rc = uv_spawn(w->loop, &c->proc, &po);
    w->open_handles++;  /* initialised even when the spawn failed */
    if (rc) {
        fprintf(stderr, "tandem serve: cannot start the %s worker: %s\n", roles[c->role],
                uv_strerror(rc));
        close_handle(w, (uv_handle_t *)&c->proc);
        w->o.on_failed(w->o.arg, roles[c->role]);
        return;
    }
    c->running = true;
}

td_err serve_workers_start(serve_workers **out, uv_loop_t *loop, const serve_workers_opts *o,
                           char *err, size_t errlen)
{
    serve_workers *w = calloc(1, sizeof *w);
    if (!w)
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    w->o = *o;
    w->loop = loop;
    size_t len = sizeof w->exe;
    if (uv_exepath(w->exe, &len)) {
        free(w);
        return td_errf(err, errlen, TD_EIO, "cannot find our own executable");
    }
    snprintf(w->threads, sizeof w->threads, "%ld", o->threads);
    snprintf(w->max_batch, sizeof w->max_batch, "%ld", o->max_batch);
    snprintf(w->ctx, sizeof w->ctx, "%ld", o->ctx);
    snprintf(w->pcache, sizeof w->pcache, "%ld", o->prefix_cache_mib);
    /* The decode worker's store lives inside the prefill worker's
     * directory, which must exist before either starts (they race). */
    if (o->kv_store) {
        snprintf(w->kv_decode, sizeof w->kv_decode, "%s/decode", o->kv_store);
        if (mkdir(o->kv_store, 0755) != 0 && errno != EEXIST)
            fprintf(stderr, "tandem serve: cannot create %s: %s (the workers will say more)\n",
                    o->kv_store, strerror(errno));
    }
    w->open_handles = NROLES + 1;  /* the restart timers, the kill timer */
    uv_timer_init(loop, &w->kill_timer);
    w->kill_timer.data = w;
    for (int i = 0; i < NROLES; i++) {
        child *c = &w->kids[i];
        c->w = w;
        c->role = i;
        uv_timer_init(loop, &c->restart);
        c->restart.data = c;
    }
    *out = w;
    for (int i = 0; i < NROLES; i++)
        spawn_child(&w->kids[i]);
    return TD_OK;
}

void serve_workers_stop(serve_workers *w, void (*cb)(void *arg), void *arg)
{
    w->stopping = true;
    w->on_stopped = cb;
    w->stopped_arg = arg;
    bool any = false;
    for (int i = 0; i < NROLES; i++) {
        if (w->kids[i].running) {
            uv_process_kill(&w->kids[i].proc, SIGTERM);
            any = true;
        }
        close_handle(w, (uv_handle_t *)&w->kids[i].restart);
    }
    if (any)
        uv_timer_start(&w->kill_timer, on_kill_timer, KILL_AFTER_MS, 0);
    else
        close_handle(w, (uv_handle_t *)&w->kill_timer);
}
