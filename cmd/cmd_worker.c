/* tandem prefill / tandem decode: the worker processes of disaggregated
 * serving. Each loads the model, registers with the router given by
 * --router and serves until SIGINT/SIGTERM. */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <uv.h>

#include "cmd/args.h"
#include "cmd/cmd.h"
#include "decode/decode.h"
#include "prefill/prefill.h"

typedef struct {
    bool decode;
    const char *name;
    const char *model_dir, *router_url, *listen_url, *id, *metrics_host;
    long metrics_port;
    long threads, max_batch, heartbeat_ms, kv_capacity_mib, ctx, prefix_cache_mib;
    long drain_ms, kv_region_mib, state_region_mib;
    const char *kv_store;        /* --kv-store: the disk tier */
    const char *kv_store_peers;  /* --kv-store-peers: other workers' stores */
    float kv_store_gib;          /* capacity of a new store; 0: the store's default */
    long kv_spill_idle_ms;
    long kv_range_tokens;        /* -1: not given (the default) */
    bool exit_with_parent;
} worker_args;

typedef struct {
    uv_loop_t loop;
    uv_signal_t sigint, sigterm;
    uv_timer_t drain_timer;      /* the drain's deadline */
    bool draining;
    td_prefill *prefill;
    td_decode *decode;
    const char *name;
    long drain_ms;
    int status;
    bool stopping;
} worker;

static void usage(FILE *f, const char *name)
{
    fprintf(f,
        "usage: tandem %s --router URL [--model DIR] [options]\n"
        "\n"
        "A %s worker: registers with the router's control listener (an nng URL such\n"
        "as tcp://10.0.0.1:7100) and serves until SIGINT/SIGTERM.\n"
        "\n"
        "  --router URL          the router's worker listener (required)\n"
        "  --listen URL          our control listener (default tcp://127.0.0.1:0)\n"
        "  --model DIR           model directory (default models/tiny-v4)\n"
        "  --id NAME             worker id (default %s-<pid>)\n"
        "  --metrics-host ADDR   address of GET /metrics (default 127.0.0.1)\n"
        "  --metrics-port N      its port (default 0: a free one, logged; -1: none)\n"
        "  --threads N           model threads (default: one per CPU)\n"
        "  --max-batch N         sequences in the batch (default 16)\n"
        "  --ctx N               cap on prompt + completion tokens (default: the model's)\n"
        "  --heartbeat-ms N      heartbeat interval (default 200)\n"
        "  --exit-with-parent    stop when the parent process dies (tandem serve's workers)\n"
        "  --drain-timeout-ms N  on SIGTERM/SIGINT: stop taking work, let what runs finish\n"
        "                        for up to N ms (default 30000), then stop; a second\n"
        "                        signal stops at once\n"
        "  --kv-store DIR        disk tier under the prefix cache (docs/kvstore.md):\n"
        "                        states leave memory for DIR and come back from it,\n"
        "                        also after a restart (default: none; one per worker)\n"
        "  --kv-store-gib N      capacity of a new store (default 64)\n"
        "  --kv-spill-idle-ms N  spill a state unused for N ms (default 0: only for\n"
        "                        room and at stop)\n"
        "  --kv-store-range-tokens N  file states of N tokens or more in token ranges\n"
        "                        of N, written once for all states that share them (a\n"
        "                        multiple of 128; default 16384; 0: states whole)\n"
        "  --kv-store-peers DIRS other workers' stores (comma-separated, on a shared\n"
        "                        volume), read on a miss: a conversation another worker\n"
        "                        spilled resumes here without recompute\n"
        "%s"
        "\n"
        "UCX picks the KV transport (UCX_TLS, e.g. UCX_TLS=tcp across hosts without RDMA).\n",
        name, name, name,
        !strcmp(name, "decode") ? "  --kv-capacity-mib N   KV state held at once (default 8192)\n"
                                  "  --kv-region-mib N     receive memory registered once, at start\n"
                                  "                        (default min(capacity, 1024); 0: none)\n"
                                : "  --prefix-cache-mib N  recent states kept for prompts that extend them\n"
                                  "                        (default 256; 0: off)\n"
                                  "  --state-region-mib N  send memory registered once, at start, that\n"
                                  "                        states are saved into (default 256; 0: none)\n");
}

static int parse(int argc, char **argv, worker_args *a)
{
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            usage(stdout, a->name);
            return -1;
        }
        if (!strcmp(o, "--exit-with-parent")) {
            a->exit_with_parent = true;
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "tandem %s: %s needs a value\n", a->name, o);
            return 2;
        }
        int bad = 0;
        if (!strcmp(o, "--router")) a->router_url = v;
        else if (!strcmp(o, "--listen")) a->listen_url = v;
        else if (!strcmp(o, "--model")) a->model_dir = v;
        else if (!strcmp(o, "--id")) a->id = v;
        else if (!strcmp(o, "--metrics-host")) a->metrics_host = v;
        else if (!strcmp(o, "--metrics-port")) bad = td_arg_long(v, -1, 65535, &a->metrics_port);
        else if (!strcmp(o, "--threads")) bad = td_arg_long(v, 1, 1024, &a->threads);
        else if (!strcmp(o, "--max-batch")) bad = td_arg_long(v, 1, 4096, &a->max_batch);
        else if (!strcmp(o, "--ctx")) bad = td_arg_long(v, 1, 1L << 30, &a->ctx);
        else if (!strcmp(o, "--drain-timeout-ms"))
            bad = td_arg_long(v, 0, 24L * 3600 * 1000, &a->drain_ms);
        else if (!strcmp(o, "--heartbeat-ms"))
            bad = td_arg_long(v, 10, 60000, &a->heartbeat_ms);
        else if (!strcmp(o, "--prefix-cache-mib"))
            bad = td_arg_long(v, 0, 1L << 30, &a->prefix_cache_mib);
        else if (!strcmp(o, "--kv-store")) a->kv_store = v;
        else if (!strcmp(o, "--kv-store-peers")) a->kv_store_peers = v;
        else if (!strcmp(o, "--kv-store-gib"))
            bad = td_arg_float(v, 0.0009f, 1e6f, &a->kv_store_gib);
        else if (!strcmp(o, "--kv-spill-idle-ms"))
            bad = td_arg_long(v, 0, 30L * 24 * 3600 * 1000, &a->kv_spill_idle_ms);
        else if (!strcmp(o, "--kv-store-range-tokens"))
            bad = td_arg_long(v, 0, 1L << 30, &a->kv_range_tokens) || a->kv_range_tokens % 128;
        else if (!a->decode && !strcmp(o, "--state-region-mib"))
            bad = td_arg_long(v, 0, 1L << 30, &a->state_region_mib);
        else if (a->decode && !strcmp(o, "--kv-region-mib"))
            bad = td_arg_long(v, 0, 1L << 30, &a->kv_region_mib);
        else if (a->decode && !strcmp(o, "--kv-capacity-mib"))
            bad = td_arg_long(v, 1, 1L << 30, &a->kv_capacity_mib);
        else {
            fprintf(stderr, "tandem %s: unknown option %s\n\n", a->name, o);
            usage(stderr, a->name);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "tandem %s: bad value for %s: %s\n", a->name, o, v);
            return 2;
        }
        i++;
    }
    if (!a->router_url) {
        fprintf(stderr, "tandem %s: --router URL is required\n\n", a->name);
        usage(stderr, a->name);
        return 2;
    }
    return 0;
}

static void closed(void *arg)
{
    worker *w = arg;
    uv_close((uv_handle_t *)&w->sigint, NULL);
    uv_close((uv_handle_t *)&w->sigterm, NULL);
    uv_close((uv_handle_t *)&w->drain_timer, NULL);
}

static void stop(worker *w)
{
    if (w->stopping)
        return;
    w->stopping = true;
    if (w->prefill)
        td_prefill_destroy(w->prefill, closed, w);
    else
        td_decode_destroy(w->decode, closed, w);
}

static void drained(void *arg)
{
    worker *w = arg;
    uv_timer_stop(&w->drain_timer);
    stop(w);
}

static void on_drain_deadline(uv_timer_t *t)
{
    worker *w = t->data;
    fprintf(stderr, "tandem %s: drain deadline passed: stopping\n", w->name);
    stop(w);
}

/* First signal: drain (the router stops placing work here; what runs
 * finishes). Second: stop now. */
static void on_signal(uv_signal_t *h, int signum)
{
    worker *w = h->data;
    const char *sig = signum == SIGINT ? "SIGINT" : "SIGTERM";
    if (w->draining || w->stopping) {
        fprintf(stderr, "tandem %s: %s: stopping\n", w->name, sig);
        stop(w);
        return;
    }
    fprintf(stderr, "tandem %s: %s: draining\n", w->name, sig);
    w->draining = true;
    uv_timer_start(&w->drain_timer, on_drain_deadline, (uint64_t)w->drain_ms, 0);
    if (w->prefill)
        td_prefill_drain(w->prefill, drained, w);
    else
        td_decode_drain(w->decode, drained, w);
}

static void on_ready(void *arg, const char *err)
{
    worker *w = arg;
    if (!err) {
        fprintf(stderr, "tandem %s: ready\n", w->name);
        return;
    }
    fprintf(stderr, "tandem %s: %s\n", w->name, err);
    w->status = 1;
    stop(w);
}

/* Endpoints with peer error handling unless UCX may use shared memory:
 * over tcp it is what survives a dead peer (and avoids a crash of UCX 1.13's
 * tcp transport seen without it); UCX 1.13 refuses shared memory with it. */
static int peer_errors_from_env(void)
{
    const char *tls = getenv("UCX_TLS");
    if (!tls || !*tls)
        return 0;
    static const char *const shm[] = {"all", "sm", "shm", "posix", "sysv", "xpmem", "cma",
                                      "knem", "mm"};
    for (size_t i = 0; i < sizeof shm / sizeof *shm; i++)
        if (strstr(tls, shm[i]))
            return 0;
    return 1;
}

/* A --*-mib flag as the worker options take it: not given (-1) is 0, "the
 * default"; 0 is -1, "none"; otherwise bytes. */
static int64_t mib_opt(long mib)
{
    return mib < 0 ? 0 : mib == 0 ? -1 : (int64_t)mib << 20;
}

/* --kv-store-range-tokens: not given (-1) is the default (0 to the
 * engine), 0 is "states whole" (< 0 to the engine). */
static int64_t range_opt(long n)
{
    return n < 0 ? 0 : n == 0 ? -1 : n;
}

static int run(int argc, char **argv, bool decode)
{
    worker_args a = {.decode = decode, .name = decode ? "decode" : "prefill",
                     .model_dir = "models/tiny-v4", .prefix_cache_mib = -1,
                     .drain_ms = 30000, .kv_region_mib = -1, .state_region_mib = -1,
                     .kv_range_tokens = -1};
    int rc = parse(argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    /* SIGTERM when the parent goes, even by SIGKILL; it may be gone already. */
    if (a.exit_with_parent &&
        (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() == 1)) {
        fprintf(stderr, "tandem %s: the parent process is gone\n", a.name);
        return 1;
    }
    worker w = {.name = a.name, .drain_ms = a.drain_ms};
    uv_loop_init(&w.loop);
    uv_timer_init(&w.loop, &w.drain_timer);
    w.drain_timer.data = &w;
    uv_signal_init(&w.loop, &w.sigint);
    uv_signal_init(&w.loop, &w.sigterm);
    w.sigint.data = w.sigterm.data = &w;
    uv_signal_start(&w.sigint, on_signal, SIGINT);
    uv_signal_start(&w.sigterm, on_signal, SIGTERM);
    char err[512];
    td_err e;
    uint64_t kv_store_bytes = (uint64_t)((double)a.kv_store_gib * (1u << 30));
    if (decode) {
        td_decode_opts o = {.model_dir = a.model_dir, .router_url = a.router_url,
                            .listen_url = a.listen_url, .worker_id = a.id,
                            .nthreads = (int)a.threads, .max_batch = (int)a.max_batch,
                            .max_context = a.ctx,
                            .heartbeat_ms = (int)a.heartbeat_ms,
                            .ucx_peer_errors = peer_errors_from_env(),
                            .metrics_host = a.metrics_host, .metrics_port = (int)a.metrics_port,
                            .kv_capacity = (uint64_t)a.kv_capacity_mib << 20,
                            .kv_region_bytes = mib_opt(a.kv_region_mib),
                            .prefix_cache_bytes = mib_opt(a.prefix_cache_mib),
                            .kv_store_dir = a.kv_store,
                            .kv_store_bytes = kv_store_bytes,
                            .kv_spill_idle_ms = a.kv_spill_idle_ms,
                            .kv_store_peers = a.kv_store_peers,
                            .kv_range_tokens = range_opt(a.kv_range_tokens),
                            .on_ready = on_ready, .arg = &w};
        e = td_decode_create(&w.decode, &w.loop, &o, err, sizeof err);
    } else {
        td_prefill_opts o = {.model_dir = a.model_dir, .router_url = a.router_url,
                             .listen_url = a.listen_url, .worker_id = a.id,
                             .nthreads = (int)a.threads, .max_batch = (int)a.max_batch,
                            .max_context = a.ctx,
                             .heartbeat_ms = (int)a.heartbeat_ms,
                             .ucx_peer_errors = peer_errors_from_env(),
                             .metrics_host = a.metrics_host,
                             .metrics_port = (int)a.metrics_port,
                             .prefix_cache_bytes = mib_opt(a.prefix_cache_mib),
                             .kv_store_dir = a.kv_store,
                             .kv_store_bytes = kv_store_bytes,
                             .kv_spill_idle_ms = a.kv_spill_idle_ms,
                             .kv_store_peers = a.kv_store_peers,
                             .kv_range_tokens = range_opt(a.kv_range_tokens),
                             .state_region_bytes = mib_opt(a.state_region_mib),
                             .on_ready = on_ready, .arg = &w};
        e = td_prefill_create(&w.prefill, &w.loop, &o, err, sizeof err);
    }
    if (e) {
        fprintf(stderr, "tandem %s: %s\n", a.name, err);
        uv_close((uv_handle_t *)&w.sigint, NULL);
        uv_close((uv_handle_t *)&w.sigterm, NULL);
        uv_close((uv_handle_t *)&w.drain_timer, NULL);
        w.status = 1;
    }
    uv_run(&w.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&w.loop))
        fprintf(stderr, "tandem %s: warning: handles left open at exit\n", a.name);
    return w.status;
}

int cmd_prefill(int argc, char **argv) { return run(argc, argv, false); }
int cmd_decode(int argc, char **argv) { return run(argc, argv, true); }
