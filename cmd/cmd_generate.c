/* tandem generate: stream a completion of a prompt to stdout.
 * tandem logits: write float32 logits of every position (parity checks). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/args.h"
#include "cmd/cmd.h"
#include "common/fileio.h"
#include "model/model.h"
#include "model/sample.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    const char *model_dir;
    const char *prompt;
    const char *ids_file;
    const char *ids_out;     /* generate: the generated ids as a JSON array */
    const char *out;
    const char *mtp_out;
    const char *stop;
    long decode_from;    /* -1: one-shot prefill */
    long max_tokens;
    long chunk;
    long threads;
    long ctx;
    float temperature, top_p;
    long top_k;
    unsigned long long seed;
    int chat;
} gen_args;

/* Parses the options both commands share; returns 0, or 2 on a usage error. */
static int parse_args(int argc, char **argv, gen_args *a, const char *cmd)
{
    memset(a, 0, sizeof *a);
    a->decode_from = -1;
    a->max_tokens = 64;
    a->temperature = 0.0f;
    a->top_p = 1.0f;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(o, "--chat")) {
            a->chat = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "tandem %s: %s needs a value\n", cmd, o);
            return 2;
        }
        if (!strcmp(o, "--model")) a->model_dir = v;
        else if (!strcmp(o, "--prompt")) a->prompt = v;
        else if (!strcmp(o, "--ids")) a->ids_file = v;
        else if (!strcmp(o, "--out")) a->out = v;
        else if (!strcmp(o, "--ids-out")) a->ids_out = v;
        else if (!strcmp(o, "--mtp-out")) a->mtp_out = v;
        else if (!strcmp(o, "--stop")) a->stop = v;
        else if (!strcmp(o, "--decode-from")) bad = td_arg_long(v, 1, 1L << 30, &a->decode_from);
        else if (!strcmp(o, "--max-tokens")) bad = td_arg_long(v, 0, 1L << 30, &a->max_tokens);
        else if (!strcmp(o, "--chunk")) bad = td_arg_long(v, 1, 4096, &a->chunk);
        else if (!strcmp(o, "--threads")) bad = td_arg_long(v, 1, 1024, &a->threads);
        else if (!strcmp(o, "--ctx")) bad = td_arg_long(v, 1, 1L << 30, &a->ctx);
        else if (!strcmp(o, "--temperature")) bad = td_arg_float(v, 0.0f, 100.0f, &a->temperature);
        else if (!strcmp(o, "--top-p")) bad = td_arg_float(v, 1e-6f, 1.0f, &a->top_p);
        else if (!strcmp(o, "--top-k")) bad = td_arg_long(v, 0, 1L << 30, &a->top_k);
        else if (!strcmp(o, "--seed")) {
            char *end;
            errno = 0;
            a->seed = strtoull(v, &end, 10);
            bad = errno || *end || end == v;
        } else {
            fprintf(stderr, "tandem %s: unknown option %s\n", cmd, o);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "tandem %s: bad value for %s: %s\n", cmd, o, v);
            return 2;
        }
        i++;
    }
    if (!a->model_dir) {
        fprintf(stderr, "tandem %s: --model DIR is required\n", cmd);
        return 2;
    }
    return 0;
}

/* Reads a JSON array of token ids. */
static int read_ids(const char *path, int32_t **ids, size_t *n)
{
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        fprintf(stderr, "%s:%d: %s\n", path, je.line, je.text);
        return -1;
    }
    td_arg_ids_opts o = {.min_id = 0, .allow_empty = false};
    size_t bad;
    td_err e = td_arg_ids(root, &o, ids, n, &bad);
    json_decref(root);
    if (e == TD_EINVAL && bad == SIZE_MAX)
        fprintf(stderr, "%s: expected a non-empty JSON array of token ids\n", path);
    else if (e == TD_EINVAL)
        fprintf(stderr, "%s: element %zu is not a token id\n", path, bad);
    return e ? -1 : 0;
}

/* The pieces both commands need: weights, model, tokenizer (optional). */
typedef struct {
    td_v4_weights *w;
    td_v4_model *m;
    td_tok *tok;
} runtime;

static void runtime_close(runtime *rt)
{
    td_v4_model_destroy(rt->m);
    td_v4_weights_destroy(rt->w);
    td_tok_destroy(rt->tok);
}

static int runtime_open(runtime *rt, const gen_args *a, int need_tok, const char *cmd)
{
    char err[512];
    memset(rt, 0, sizeof *rt);
    td_kernels_init(-1);
    if (td_v4_weights_load(&rt->w, a->model_dir, err, sizeof err)) {
        fprintf(stderr, "tandem %s: %s\n", cmd, err);
        return -1;
    }
    td_v4_model_opts mo = {.max_rows = (int)a->chunk, .nthreads = (int)a->threads};
    if (td_v4_model_create(&rt->m, rt->w, &mo, err, sizeof err)) {
        fprintf(stderr, "tandem %s: %s\n", cmd, err);
        runtime_close(rt);
        return -1;
    }
    if (need_tok) {
        char path[4096];
        snprintf(path, sizeof path, "%s/tokenizer.json", a->model_dir);
        if (td_tok_load(&rt->tok, path, err, sizeof err)) {
            fprintf(stderr, "tandem %s: %s\n", cmd, err);
            runtime_close(rt);
            return -1;
        }
    }
    return 0;
}

/* Wraps the prompt as one non-thinking user turn of the V4 chat format
 * (encoding_dsv4.py: BOS, <｜User｜>, text, <｜Assistant｜>, </think>). */
static char *chat_wrap(const char *prompt)
{
    static const char pre[] = "<｜begin▁of▁sentence｜><｜User｜>";
    static const char post[] = "<｜Assistant｜></think>";
    size_t n = strlen(pre) + strlen(prompt) + strlen(post) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s%s", pre, prompt, post);
    return s;
}

static int encode_prompt(runtime *rt, const gen_args *a, int32_t **ids, size_t *n,
                         const char *cmd)
{
    if (a->ids_file)
        return read_ids(a->ids_file, ids, n);
    char *text = a->chat ? chat_wrap(a->prompt) : strdup(a->prompt);
    td_tok_ids v = {0};
    char err[256];
    td_err e = td_tok_encode(rt->tok, text, strlen(text), 0, &v, err, sizeof err);
    free(text);
    if (e) {
        fprintf(stderr, "tandem %s: %s\n", cmd, err);
        return -1;
    }
    if (v.len == 0) {
        fprintf(stderr, "tandem %s: the prompt encodes to no tokens\n", cmd);
        td_tok_ids_free(&v);
        return -1;
    }
    *ids = v.ids;
    *n = v.len;
    return 0;
}

static int64_t context_of(const runtime *rt, const gen_args *a)
{
    int64_t ctx = td_v4_model_config(rt->m)->max_position;
    if (a->ctx > 0 && a->ctx < ctx)
        ctx = a->ctx;
    return ctx;
}

int cmd_logits(int argc, char **argv)
{
    gen_args a;
    int rc = parse_args(argc, argv, &a, "logits");
    if (rc)
        return rc;
    if ((!a.ids_file) == (!a.prompt) || !a.out) {
        fprintf(stderr, "usage: tandem logits --model DIR (--ids FILE | --prompt TEXT) "
                        "[--decode-from N] [--chunk N] [--threads N] [--mtp-out FILE] --out FILE\n");
        return 2;
    }
    runtime rt;
    if (runtime_open(&rt, &a, a.prompt != NULL, "logits"))
        return 1;
    int32_t *ids = NULL;
    size_t n = 0;
    rc = 1;
    if (encode_prompt(&rt, &a, &ids, &n, "logits"))
        goto done;
    if ((int64_t)n > context_of(&rt, &a)) {
        fprintf(stderr, "tandem logits: the prompt has %zu tokens, more than the context "
                        "of %lld\n", n, (long long)context_of(&rt, &a));
        goto done;
    }
    int V = td_v4_model_config(rt.m)->vocab_size;
    float *logits = malloc(sizeof(float) * n * (size_t)V);
    td_v4_seq *seq = NULL;
    char err[512];
    if (!logits || td_v4_seq_create(&seq, rt.m, (int64_t)n, err, sizeof err)) {
        fprintf(stderr, "tandem logits: %s\n", logits ? err : "out of memory");
        free(logits);
        goto done;
    }
    const td_v4_config *c = td_v4_model_config(rt.m);
    size_t hrow = (size_t)c->hc_mult * c->dim;
    float *hidden = a.mtp_out ? malloc(sizeof(float) * n * hrow) : NULL;
    size_t pre = a.decode_from > 0 && (size_t)a.decode_from < n ? (size_t)a.decode_from : n;
    td_v4_step st = {.seq = seq, .tokens = ids, .n = (int)pre, .logits = logits,
                     .all_logits = 1, .hidden = hidden};
    td_err e = td_v4_forward(rt.m, &st, 1, err, sizeof err);
    for (size_t i = pre; !e && i < n; i++) {
        st = (td_v4_step){.seq = seq, .tokens = ids + i, .n = 1,
                          .logits = logits + i * (size_t)V, .all_logits = 1,
                          .hidden = hidden ? hidden + i * hrow : NULL};
        e = td_v4_forward(rt.m, &st, 1, err, sizeof err);
    }
    /* MTP row i: the streams at position i with the token at i+1. */
    if (!e && hidden && n > 1) {
        float *mlog = malloc(sizeof(float) * (n - 1) * (size_t)V);
        e = td_v4_mtp_forward(rt.m, seq, hidden, ids + 1, (int)(n - 1), mlog, err, sizeof err);
        FILE *f = e ? NULL : fopen(a.mtp_out, "wb");
        if (!e && (!f || fwrite(mlog, sizeof(float) * (size_t)V, n - 1, f) != n - 1 || fclose(f))) {
            snprintf(err, sizeof err, "cannot write %s", a.mtp_out);
            e = TD_EIO;
        }
        free(mlog);
    }
    free(hidden);
    if (e) {
        fprintf(stderr, "tandem logits: %s\n", err);
    } else {
        FILE *f = fopen(a.out, "wb");
        if (!f || fwrite(logits, sizeof(float) * (size_t)V, n, f) != n || fclose(f)) {
            fprintf(stderr, "tandem logits: cannot write %s: %s\n", a.out, strerror(errno));
        } else {
            rc = 0;
        }
    }
    td_v4_seq_destroy(seq);
    free(logits);
done:
    free(ids);
    runtime_close(&rt);
    return rc;
}

int cmd_generate(int argc, char **argv)
{
    gen_args a;
    int rc = parse_args(argc, argv, &a, "generate");
    if (rc)
        return rc;
    if ((!a.prompt) == (!a.ids_file)) {
        fprintf(stderr, "usage: tandem generate --model DIR (--prompt TEXT [--chat] | "
                        "--ids FILE) [--max-tokens N] [--temperature T] [--top-p P] "
                        "[--top-k K] [--seed S] [--stop STR] [--ctx N] [--threads N] "
                        "[--ids-out FILE]\n");
        return 2;
    }
    runtime rt;
    if (runtime_open(&rt, &a, 1, "generate"))
        return 1;
    int32_t *ids = NULL;
    size_t n = 0;
    rc = 1;
    if (encode_prompt(&rt, &a, &ids, &n, "generate"))
        goto done;
    int64_t ctx = context_of(&rt, &a);
    if ((int64_t)n >= ctx) {
        fprintf(stderr, "tandem generate: the prompt has %zu tokens; the context is %lld\n",
                n, (long long)ctx);
        goto done;
    }
    int64_t budget = a.max_tokens;
    if ((int64_t)n + budget > ctx)
        budget = ctx - (int64_t)n;
    const td_v4_config *c = td_v4_model_config(rt.m);
    int V = c->vocab_size;
    float *logits = malloc(sizeof(float) * (size_t)V);
    td_v4_seq *seq = NULL;
    td_sampler *smp = NULL;
    char err[512];
    td_sample_opts so = {.temperature = a.temperature, .top_p = a.top_p,
                         .top_k = (int)a.top_k, .seed = a.seed};
    if (!logits || td_v4_seq_create(&seq, rt.m, (int64_t)n + budget, err, sizeof err) ||
        td_sampler_create(&smp, V, &so)) {
        fprintf(stderr, "tandem generate: cannot set up generation\n");
        goto gen_done;
    }
    td_tok_stream ts;
    td_tok_stream_init(&ts, rt.tok, 0);
    /* The generated text is kept only to look for the stop string. */
    size_t stop_len = a.stop ? strlen(a.stop) : 0;
    char tail[4096];
    size_t tail_n = 0;
    json_t *out_ids = a.ids_out ? json_array() : NULL;
    td_v4_step st = {.seq = seq, .tokens = ids, .n = (int)n, .logits = logits};
    td_err e = td_v4_forward(rt.m, &st, 1, err, sizeof err);
    for (int64_t i = 0; !e && i < budget; i++) {
        int32_t t = td_sampler_pick(smp, logits);
        if (t == c->eos_id)
            break;
        if (out_ids)
            json_array_append_new(out_ids, json_integer(t));
        const char *text;
        size_t len;
        if (td_tok_stream_push(&ts, t, &text, &len, err, sizeof err) == TD_OK && len) {
            fwrite(text, 1, len, stdout);
            fflush(stdout);
            if (stop_len && stop_len < sizeof tail) {
                for (size_t k = 0; k < len; k++) {
                    if (tail_n == sizeof tail) {
                        memmove(tail, tail + tail_n - stop_len, stop_len);
                        tail_n = stop_len;
                    }
                    tail[tail_n++] = text[k];
                }
                if (tail_n >= stop_len && memmem(tail, tail_n, a.stop, stop_len))
                    break;
            }
        }
        if (i + 1 == budget)
            break;
        st = (td_v4_step){.seq = seq, .tokens = &t, .n = 1, .logits = logits};
        e = td_v4_forward(rt.m, &st, 1, err, sizeof err);
    }
    const char *text;
    size_t len;
    td_tok_stream_flush(&ts, &text, &len);
    fwrite(text, 1, len, stdout);
    fputc('\n', stdout);
    td_tok_stream_free(&ts);
    if (e)
        fprintf(stderr, "tandem generate: %s\n", err);
    else if (a.ids_out && (!out_ids || json_dump_file(out_ids, a.ids_out, JSON_COMPACT)))
        fprintf(stderr, "tandem generate: cannot write %s\n", a.ids_out);
    else
        rc = 0;
    json_decref(out_ids);
gen_done:
    td_sampler_destroy(smp);
    td_v4_seq_destroy(seq);
    free(logits);
done:
    free(ids);
    runtime_close(&rt);
    return rc;
}
