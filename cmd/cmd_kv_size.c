/* tandem kv-size --config PATH --tokens N [--json]
 *
 * KV state bytes of one sequence of N tokens, per layer kind, in the stored
 * format of docs/kv-layout.md, and the ratio to a GQA baseline of the same
 * depth. The arithmetic is td_v4_kv_size(); this file only prints. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "model/config.h"
#include "model/kvsize.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tandem kv-size --config PATH --tokens N [--json]\n"
            "\n"
            "KV state bytes for one sequence of N tokens (K/M/G suffixes = 2^10/2^20/2^30),\n"
            "per layer kind, in tandem's stored format (584-byte FP8+bf16 entries and\n"
            "68-byte FP4 indexer keys for V4-Flash), and the ratio to a GQA baseline of\n"
            "the same depth (8 KV heads x 128 dims, K and V, bf16: 4096 B/token/layer).\n"
            "\n"
            "  --config PATH   a config.json with model_type \"deepseek_v4\"\n"
            "  --tokens N      sequence length\n"
            "  --json          print one JSON object instead of the table\n");
}

/* "1048576", "1M", "128K". */
static int parse_tokens(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0)
        return -1;
    int shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10;
    else if (*end == 'M' || *end == 'm')
        shift = 20;
    else if (*end == 'G' || *end == 'g')
        shift = 30;
    if (shift)
        end++;
    if (*end || v > (TD_V4_KV_MAX_TOKENS >> shift))
        return -1;
    *out = (int64_t)v << shift;
    return 0;
}

/* 3688172544 -> "3,688,172,544" */
static const char *grouped(int64_t v, char *buf, size_t len)
{
    char digits[32];
    int n = snprintf(digits, sizeof(digits), "%lld", (long long)(v < 0 ? -v : v));
    size_t o = 0;
    if (v < 0 && o + 1 < len)
        buf[o++] = '-';
    for (int i = 0; i < n && o + 2 < len; i++) {
        if (i && (n - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

static double gib(int64_t b) { return (double)b / (1024.0 * 1024.0 * 1024.0); }

static const char *kind_label(const char *name, const td_v4_kv_kind *k, char *buf, size_t len)
{
    if (k->ratio >= 0)
        snprintf(buf, len, "%s (R=%d)", name, k->ratio);
    else
        snprintf(buf, len, "%s (mixed R)", name);
    return buf;
}

static void print_kind(const char *name, const td_v4_kv_kind *k)
{
    char l[48], a[32], b[32], c[32], d[32], e[32];
    printf("  %-18s %6d %17s %17s %17s %17s %13s\n", kind_label(name, k, l, sizeof(l)),
           k->layers, grouped(k->window_bytes, a, 32), grouped(k->compressed_bytes, b, 32),
           grouped(k->indexer_bytes, c, 32),
           grouped(k->window_bytes + k->compressed_bytes + k->indexer_bytes, d, 32),
           grouped(k->state_bytes, e, 32));
}

static void print_text(const char *path, const td_v4_config *cfg, const td_v4_kv_bytes *r)
{
    char a[32], b[32], c[32];
    int nope = cfg->head_dim - cfg->rope_dim;
    int raw = nope + 2 * cfg->rope_dim + nope / 64;
    printf("config: %s\n", path);
    printf("tokens: %s\n", grouped(r->tokens, a, sizeof(a)));
    printf("records: main KV entry %d B (%d e4m3 + %d bf16 rope + %d E8M0 scales + %d pad); "
           "indexer key %d B (%d FP4 + %d E8M0 scales)\n",
           r->entry_bytes, nope, 2 * cfg->rope_dim, nope / 64, r->entry_bytes - raw,
           r->index_key_bytes, cfg->index_head_dim / 2, cfg->index_head_dim / 32);
    printf("\n  %-18s %6s %17s %17s %17s %17s %13s\n", "layer kind", "layers", "window B",
           "compressed B", "indexer B", "KV B", "compressor B");
    if (r->window_only.layers)
        print_kind("window-only", &r->window_only);
    if (r->csa.layers)
        print_kind("CSA", &r->csa);
    if (r->hca.layers)
        print_kind("HCA", &r->hca);
    printf("\nKV state, main layers:        %17s B (%.3f GiB, %.1f B/token)\n",
           grouped(r->kv_bytes, a, 32), gib(r->kv_bytes),
           r->tokens ? (double)r->kv_bytes / (double)r->tokens : 0.0);
    printf("compressor state (fp32):      %17s B (fixed per sequence)\n",
           grouped(r->state_bytes, a, 32));
    printf("total with compressor state:  %17s B (%.3f GiB)\n",
           grouped(r->total_with_state, a, 32), gib(r->total_with_state));
    if (r->mtp.layers)
        printf("MTP block (%d layer%s, not included above): %s B window + %s B compressed "
               "+ %s B compressor state\n", r->mtp.layers, r->mtp.layers > 1 ? "s" : "",
               grouped(r->mtp.window_bytes, a, 32),
               grouped(r->mtp.compressed_bytes + r->mtp.indexer_bytes, b, 32),
               grouped(r->mtp.state_bytes, c, 32));
    printf("GQA baseline (%d layers x 8 KV heads x 128 x K,V x bf16 = %d B/token/layer): "
           "%s B (%.3f GiB)\n", cfg->n_layers, TD_V4_GQA_BYTES_PER_TOKEN_LAYER,
           grouped(r->gqa_bytes, a, 32), gib(r->gqa_bytes));
    printf("ratio: %.2f %% of the GQA baseline (KV state, main layers)\n", 100.0 * r->ratio);
}

static json_t *kind_json(const td_v4_kv_kind *k)
{
    return json_pack("{s:i, s:i, s:I, s:I, s:I, s:I, s:I}", "layers", k->layers,
                     "ratio", k->ratio, "window_bytes", (json_int_t)k->window_bytes,
                     "compressed_bytes", (json_int_t)k->compressed_bytes,
                     "indexer_bytes", (json_int_t)k->indexer_bytes,
                     "kv_bytes",
                     (json_int_t)(k->window_bytes + k->compressed_bytes + k->indexer_bytes),
                     "compressor_state_bytes", (json_int_t)k->state_bytes);
}

static int print_json(const char *path, const td_v4_kv_bytes *r)
{
    json_t *o = json_pack("{s:s, s:I, s:i, s:i, s:o, s:o, s:o, s:o, s:I, s:I, s:I, s:I, s:f}",
                          "config", path, "tokens", (json_int_t)r->tokens,
                          "entry_bytes", r->entry_bytes, "index_key_bytes", r->index_key_bytes,
                          "window_only", kind_json(&r->window_only), "csa", kind_json(&r->csa),
                          "hca", kind_json(&r->hca), "mtp_excluded", kind_json(&r->mtp),
                          "total_bytes", (json_int_t)r->kv_bytes,
                          "compressor_state_bytes", (json_int_t)r->state_bytes,
                          "total_with_compressor_state_bytes", (json_int_t)r->total_with_state,
                          "gqa_baseline_bytes", (json_int_t)r->gqa_bytes,
                          "ratio_percent", 100.0 * r->ratio);
    char *s = o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (!s) {
        fprintf(stderr, "tandem kv-size: out of memory\n");
        return 1;
    }
    printf("%s\n", s);
    free(s);
    return 0;
}

int cmd_kv_size(int argc, char **argv)
{
    const char *config = NULL, *tokens_arg = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--config") && i + 1 < argc) {
            config = argv[++i];
        } else if (!strncmp(a, "--config=", 9)) {
            config = a + 9;
        } else if (!strcmp(a, "--tokens") && i + 1 < argc) {
            tokens_arg = argv[++i];
        } else if (!strncmp(a, "--tokens=", 9)) {
            tokens_arg = a + 9;
        } else {
            fprintf(stderr, "tandem kv-size: unknown or incomplete option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!config || !tokens_arg) {
        fprintf(stderr, "tandem kv-size: --config and --tokens are required\n\n");
        usage(stderr);
        return 2;
    }
    int64_t tokens;
    if (parse_tokens(tokens_arg, &tokens)) {
        fprintf(stderr, "tandem kv-size: --tokens '%s' is not a token count in [0, 2^40]\n",
                tokens_arg);
        return 2;
    }
    char err[512];
    td_v4_config cfg;
    td_err rc = td_v4_config_load(&cfg, config, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "tandem kv-size: %s\n", err);
        return 1;
    }
    td_v4_kv_bytes r;
    if ((rc = td_v4_kv_size(&cfg, tokens, &r))) {
        fprintf(stderr, "tandem kv-size: %s: byte counts for %lld tokens do not fit in "
                "64 bits\n", config, (long long)tokens);
        return 1;
    }
    if (json)
        return print_json(config, &r);
    print_text(config, &cfg, &r);
    return 0;
}
