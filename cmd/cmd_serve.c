/* tandem serve: the OpenAI-compatible HTTP server with the engine in the
 * same process (router/ in front of engine/).
 *
 * Shutdown: SIGINT or SIGTERM stops accepting, lets requests in flight
 * finish (up to --shutdown-grace-ms, then cancels them), stops the engine and
 * exits 0. A second signal cancels at once. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cmd/args.h"
#include "cmd/cmd.h"
#include "cmd/serve_workers.h"
#include "cluster/cluster.h"
#include "engine/engine.h"
#include "router/router.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    const char *model_dir;
    const char *host;
    const char *model_id;
    long port;
    long max_batch;
    long threads;
    long ctx;
    long max_body;
    long write_buffer;
    long grace_ms;
    long max_waiting;
    long prefix_cache_mib;     /* -1: the default */
    const char *kv_store;      /* the disk tier (in-process engine or the prefill worker) */
    const char *kv_store_gib;  /* as given: passed on to the worker */
    float kv_store_gibf;
    const char *kv_spill_idle_ms;
    long kv_spill_idle;
    const char *kv_range_tokens;  /* as given: passed on to the worker */
    long kv_range;                /* -1: not given */
    long responses_store_mib;  /* 0: store none */
    const char *api_key_file;
    bool router_only;          /* tandem router: workers register at workers_url */
    bool in_process;           /* tandem serve --in-process: the model in this process */
    const char *workers_url;
    long worker_timeout_ms;
    long local_prefill_max;    /* 0: the default; -1: never */
    td_cluster_policy policy;
} serve_args;

typedef struct {
    uv_loop_t loop;
    uv_signal_t sigint, sigterm;
    td_router *router;
    td_engine *engine;
    td_cluster *cluster;
    serve_workers *workers;    /* the embedded default's worker processes */
    int status;             /* exit status */
    bool stopping;
} server;

static void usage(FILE *f, bool router_only)
{
    if (router_only)
        fprintf(f,
            "usage: tandem router [--workers URL] [--model DIR] [--host ADDR] [--port N] [options]\n"
            "\n"
            "The HTTP front door (OpenAI and Anthropic APIs) over remote workers:\n"
            "`tandem prefill` and `tandem decode` processes register at --workers.\n"
            "The model directory provides the tokenizer and the served model's name.\n"
            "\n"
            "  --workers URL          workers' control listener (default tcp://127.0.0.1:7100)\n"
            "  --worker-timeout-ms N  silence after which a worker is dropped (default 5000)\n"
            "  --policy NAME          prefill placement: prefix (default: the worker holding\n"
            "                         the session's or the prompt's longest prefix, unless\n"
            "                         busier), least-loaded, round-robin\n"
            "  --local-prefill-max N  prefix policy: a decode worker holding a conversation's\n"
            "                         state answers its next turn whole when at most N\n"
            "                         prompt tokens are new (default 1024; 0: never)\n");
    else
        fprintf(f,
            "usage: tandem serve [--model DIR] [--host ADDR] [--port N] [options]\n"
            "\n"
            "Serves the OpenAI and Anthropic APIs on this machine: the router in this\n"
            "process, one prefill and one decode worker as child processes (restarted if\n"
            "they die), KV state between them over UCX.\n"
            "\n"
            "  --in-process           run the model in this process instead of workers\n"
        "  --prefix-cache-mib N   recent states kept for prompts that extend them\n"
        "                         (default 256; 0: off)\n"
        "  --kv-store DIR         disk tier under that cache (docs/kvstore.md): states\n"
        "                         leave memory for DIR and come back from it, also after\n"
        "                         a restart (default: none)\n"
        "  --kv-store-gib N       capacity of a new store (default 64)\n"
        "  --kv-spill-idle-ms N   spill a state unused for N ms (default 0: only for\n"
        "                         room and at stop)\n"
        "  --kv-store-range-tokens N  file states of N tokens or more in token ranges\n"
        "                         of N, written once for all states that share them\n"
        "                         (a multiple of 128; default 16384; 0: states whole)\n");
    fprintf(f,
        "  --model DIR            model directory (default models/tiny-v4)\n"
        "  --host ADDR            address to listen on (default 127.0.0.1)\n"
        "  --port N               port (default 8080; 0 picks a free one)\n"
        "  --model-id NAME        id in /v1/models (default: the directory's name)\n"
        "  --max-batch N          sequences decoded together (default 16)\n"
        "  --threads N            model threads per process (default: one per CPU)\n"
        "  --ctx N                cap on prompt + completion tokens (default: the model's)\n"
        "  --max-body BYTES       request body limit (default 1048576)\n"
        "  --write-buffer BYTES   per-connection write queue; a stream pauses its\n"
        "                         generation above it (default 65536)\n"
        "  --shutdown-grace-ms N  time requests get to finish on shutdown (default 10000)\n"
        "  --max-waiting N        requests queued for the batch before new ones get 429\n"
        "                         (default 256)\n"
        "  --responses-store-mib N  memory for finished Responses API answers\n"
        "                         (GET /v1/responses/{id}, previous_response_id;\n"
        "                         least recently used out; 0: keep none; default 64)\n"
        "  --api-key-file FILE    API keys, one per line: every path but /health and\n"
        "                         /ready then needs `Authorization: Bearer KEY` or\n"
        "                         `x-api-key: KEY`\n"
        "\n"
        "Environment: TANDEM_API_KEYS=KEY1,KEY2 adds API keys (with or without a file).\n");
}

static int parse_args(int argc, char **argv, serve_args *a)
{
    bool router_only = a->router_only;
    *a = (serve_args){.model_dir = "models/tiny-v4", .host = "127.0.0.1", .port = 8080,
                      .max_body = 1 << 20, .max_waiting = 256, .router_only = router_only,
                      .workers_url = "tcp://127.0.0.1:7100", .prefix_cache_mib = -1,
                      .responses_store_mib = 64, .kv_range = -1};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            usage(stdout, a->router_only);
            return -1;
        }
        if (!a->router_only && !strcmp(o, "--in-process")) {
            a->in_process = true;
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "tandem serve: %s needs a value\n", o);
            return 2;
        }
        int bad = 0;
        if (!strcmp(o, "--model")) a->model_dir = v;
        else if (!strcmp(o, "--host")) a->host = v;
        else if (!strcmp(o, "--model-id")) a->model_id = v;
        else if (!strcmp(o, "--port")) bad = td_arg_long(v, 0, 65535, &a->port);
        else if (!strcmp(o, "--max-batch")) bad = td_arg_long(v, 1, 4096, &a->max_batch);
        else if (!strcmp(o, "--threads")) bad = td_arg_long(v, 1, 1024, &a->threads);
        else if (!strcmp(o, "--ctx")) bad = td_arg_long(v, 1, 1L << 30, &a->ctx);
        else if (!strcmp(o, "--max-body")) bad = td_arg_long(v, 1, 1L << 30, &a->max_body);
        else if (!strcmp(o, "--write-buffer"))
            bad = td_arg_long(v, 1024, 1L << 30, &a->write_buffer);
        else if (!strcmp(o, "--shutdown-grace-ms"))
            bad = td_arg_long(v, 1, 24L * 3600 * 1000, &a->grace_ms);
        else if (!strcmp(o, "--max-waiting"))
            bad = td_arg_long(v, 1, 1L << 20, &a->max_waiting);
        else if (!strcmp(o, "--responses-store-mib"))
            bad = td_arg_long(v, 0, 1L << 20, &a->responses_store_mib);
        else if (!strcmp(o, "--api-key-file")) a->api_key_file = v;
        else if (!a->router_only && !strcmp(o, "--kv-store")) a->kv_store = v;
        else if (!a->router_only && !strcmp(o, "--kv-store-gib")) {
            a->kv_store_gib = v;
            bad = td_arg_float(v, 0.0009f, 1e6f, &a->kv_store_gibf);
        } else if (!a->router_only && !strcmp(o, "--kv-spill-idle-ms")) {
            a->kv_spill_idle_ms = v;
            bad = td_arg_long(v, 0, 30L * 24 * 3600 * 1000, &a->kv_spill_idle);
        } else if (!a->router_only && !strcmp(o, "--kv-store-range-tokens")) {
            a->kv_range_tokens = v;
            bad = td_arg_long(v, 0, 1L << 30, &a->kv_range) || a->kv_range % 128;
        }
        else if (!a->router_only && !strcmp(o, "--prefix-cache-mib"))
            bad = td_arg_long(v, 0, 1L << 30, &a->prefix_cache_mib);
        else if (a->router_only && !strcmp(o, "--workers")) a->workers_url = v;
        else if (a->router_only && !strcmp(o, "--policy"))
            bad = td_cluster_policy_parse(v, &a->policy) != TD_OK;
        else if (a->router_only && !strcmp(o, "--local-prefill-max")) {
            bad = td_arg_long(v, 0, 1L << 30, &a->local_prefill_max);
            if (!bad && a->local_prefill_max == 0)
                a->local_prefill_max = -1;
        } else if (a->router_only && !strcmp(o, "--worker-timeout-ms"))
            bad = td_arg_long(v, 50, 3600L * 1000, &a->worker_timeout_ms);
        else {
            fprintf(stderr, "tandem serve: unknown option %s\n\n", o);
            usage(stderr, a->router_only);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "tandem serve: bad value for %s: %s\n", o, v);
            return 2;
        }
        i++;
    }
    return 0;
}

/* The directory's last component: "models/tiny-v4/" -> "tiny-v4". */
static char *base_name(const char *dir)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    size_t start = n;
    while (start > 0 && dir[start - 1] != '/')
        start--;
    return strndup(dir + start, n - start);
}

static void on_engine_closed(void *arg)
{
    server *s = arg;
    s->engine = NULL;
}

static void on_router_down(void *arg)
{
    server *s = arg;
    /* The router is quiet; the engine's last callbacks (cancellations) land
     * in it while it still exists. */
    if (s->engine)
        td_engine_destroy(s->engine, on_engine_closed, s);
    if (s->cluster)
        td_cluster_destroy(s->cluster);
    s->cluster = NULL;
    if (s->workers)
        serve_workers_stop(s->workers, NULL, NULL);  /* the loop runs until they exit */
    s->workers = NULL;
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
}

static void stop(server *s)
{
    s->stopping = true;
    td_router_shutdown(s->router, on_router_down, s);
}

static bool registered(void *arg, const char *role)
{
    server *s = arg;
    int np, nd;
    td_cluster_workers(s->cluster, &np, &nd);
    return !strcmp(role, "prefill") ? np > 0 : nd > 0;
}

static void worker_failed(void *arg, const char *role)
{
    server *s = arg;
    fprintf(stderr, "tandem serve: the %s worker could not start (see its message above)\n",
            role);
    s->status = 1;
    if (!s->stopping && s->router)
        stop(s);
}

static void on_signal(uv_signal_t *h, int signum)
{
    server *s = h->data;
    if (!s->stopping)
        fprintf(stderr, "tandem serve: %s: shutting down\n",
                signum == SIGINT ? "SIGINT" : "SIGTERM");
    stop(s);
}

static void on_loaded(void *arg, const char *err)
{
    server *s = arg;
    if (!err) {
        fprintf(stderr, "tandem serve: model loaded, ready\n");
        return;
    }
    fprintf(stderr, "tandem serve: cannot load the model: %s\n", err);
    s->status = 1;
    if (!s->stopping && s->router)
        stop(s);
}

static int serve(int argc, char **argv, bool router_only)
{
    serve_args a = {.router_only = router_only};
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;

    char path[PATH_MAX], err[512];
    snprintf(path, sizeof path, "%s/tokenizer.json", a.model_dir);
    td_tok *tok;
    if (td_tok_load(&tok, path, err, sizeof err)) {
        fprintf(stderr, "tandem serve: %s\n", err);
        return 1;
    }
    char *model_id = a.model_id ? strdup(a.model_id) : base_name(a.model_dir);

    server s = {0};
    uv_loop_init(&s.loop);
    td_router_engine ei;
    if (!a.in_process) {
        td_cluster_opts co = {.listen_url = router_only ? a.workers_url : "tcp://127.0.0.1:0",
                              .heartbeat_timeout_ms = (int)a.worker_timeout_ms,
                              .policy = a.policy,
                              .local_prefill_max = a.local_prefill_max};
        if (td_cluster_create(&s.cluster, &s.loop, &co, err, sizeof err)) {
            fprintf(stderr, "tandem router: %s\n", err);
            rc = 1;
            goto out;
        }
        ei = td_cluster_interface(s.cluster);
        if (router_only) {
            /* stdout, before the serving line: scripts start workers from it */
            printf("tandem: workers register at %s\n", td_cluster_url(s.cluster));
        }
    } else {
        td_engine_opts eo = {.model_dir = a.model_dir, .max_batch = (int)a.max_batch,
                             .nthreads = (int)a.threads, .max_context = a.ctx,
                             .prefix_cache_bytes = a.prefix_cache_mib < 0 ? 0
                                                   : a.prefix_cache_mib == 0 ? -1
                                                   : a.prefix_cache_mib << 20,
                             .kv_store_dir = a.kv_store,
                             .kv_store_bytes = (uint64_t)((double)a.kv_store_gibf * (1u << 30)),
                             .kv_spill_idle_ms = a.kv_spill_idle,
                             .kv_range_tokens = a.kv_range < 0 ? 0 : a.kv_range == 0 ? -1
                                                : a.kv_range,
                             .on_loaded = on_loaded, .arg = &s};
        if (td_engine_create(&s.engine, &s.loop, &eo, err, sizeof err)) {
            fprintf(stderr, "tandem serve: %s\n", err);
            rc = 1;
            goto out;
        }
        ei = td_engine_interface(s.engine);
    }
    td_router_opts ro = {.host = a.host, .port = (int)a.port, .model_id = model_id,
                         .tok = tok, .engine = ei,
                         .max_body = (size_t)a.max_body,
                         .write_buffer = (size_t)a.write_buffer,
                         .shutdown_grace_ms = (unsigned)a.grace_ms,
                         .max_waiting = a.max_waiting, .api_key_file = a.api_key_file,
                         .responses_store_mib = (size_t)a.responses_store_mib,
                         .responses_store_off = a.responses_store_mib == 0,
                         /* Keys from the environment: read here only (cmd/
                          * is the one place that reads the environment). */
                         .api_keys = getenv("TANDEM_API_KEYS")};
    if (td_router_create(&s.router, &s.loop, &ro, err, sizeof err)) {
        fprintf(stderr, "tandem serve: %s\n", err);
        if (s.engine)
            td_engine_destroy(s.engine, on_engine_closed, &s);
        if (s.cluster)
            td_cluster_destroy(s.cluster);
        uv_run(&s.loop, UV_RUN_DEFAULT);
        rc = 1;
        goto out;
    }
    uv_signal_init(&s.loop, &s.sigint);
    uv_signal_init(&s.loop, &s.sigterm);
    s.sigint.data = s.sigterm.data = &s;
    uv_signal_start(&s.sigint, on_signal, SIGINT);
    uv_signal_start(&s.sigterm, on_signal, SIGTERM);
    if (s.cluster && !router_only) {
        serve_workers_opts wo = {.router_url = td_cluster_url(s.cluster),
                                 .model_dir = a.model_dir, .threads = a.threads,
                                 .max_batch = a.max_batch, .ctx = a.ctx,
                                 .prefix_cache_mib = a.prefix_cache_mib,
                                 .kv_store = a.kv_store, .kv_store_gib = a.kv_store_gib,
                                 .kv_spill_idle_ms = a.kv_spill_idle_ms,
                                 .kv_range_tokens = a.kv_range_tokens,
                                 .registered = registered,
                                 .on_failed = worker_failed, .arg = &s};
        if (serve_workers_start(&s.workers, &s.loop, &wo, err, sizeof err)) {
            fprintf(stderr, "tandem serve: %s\n", err);
            s.status = 1;
            stop(&s);
        }
    }

    bool v6 = strchr(a.host, ':') != NULL;
    printf("tandem: serving %s on http://%s%s%s:%d (OpenAI API: /v1/chat/completions, "
           "/v1/completions, /v1/models)\n", model_id, v6 ? "[" : "", a.host, v6 ? "]" : "",
           td_router_port(s.router));
    fflush(stdout);

    uv_run(&s.loop, UV_RUN_DEFAULT);
    td_router_destroy(s.router);
    rc = s.status;
out:
    if (uv_loop_close(&s.loop))
        fprintf(stderr, "tandem serve: warning: handles left open at exit\n");
    free(model_id);
    td_tok_destroy(tok);
    return rc;
}

int cmd_serve(int argc, char **argv) { return serve(argc, argv, false); }
int cmd_router(int argc, char **argv) { return serve(argc, argv, true); }
