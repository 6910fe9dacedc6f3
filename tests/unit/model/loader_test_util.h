/* Test helpers for the loader tests: a small safetensors writer (so tests
 * can build valid files and then break them one way at a time), a
 * generator of a complete tiny V4 checkpoint from a config, and temp-dir
 * plumbing. Header-only, file-static: each test executable includes it once. */
#ifndef TD_LOADER_TEST_UTIL_H
#define TD_LOADER_TEST_UTIL_H

#include <dirent.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/config.h"
#include "model/safetensors.h"

/* Not every test uses every helper. */
#define TW_UNUSED __attribute__((unused))

/* ---- writer -------------------------------------------------------------- */

typedef struct {
    char name[160];
    char dtype[32];          /* written verbatim, so a test can write "F9" */
    int ndim;
    int64_t shape[TD_ST_MAX_DIMS];
    size_t nbytes;
    unsigned char *data;
    int has_offsets;         /* write off[] instead of the real offsets */
    int64_t off[2];
} tw_tensor;

typedef struct {
    tw_tensor *v;
    int n, cap;
} tw_list;

TW_UNUSED static size_t tw_dtype_size(const char *dt)
{
    td_st_dtype d;
    return td_st_dtype_parse(dt, &d) == 0 ? td_st_dtype_size(d) : 1;
}

TW_UNUSED static void tw_size(tw_tensor *t)
{
    size_t n = tw_dtype_size(t->dtype);
    for (int d = 0; d < t->ndim; d++)
        n *= (size_t)t->shape[d];
    t->nbytes = n;
    t->data = realloc(t->data, n ? n : 1);
    memset(t->data, 0, n);
}

TW_UNUSED static tw_tensor *tw_add(tw_list *l, const char *dtype, int ndim, const int64_t *shape,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));
TW_UNUSED static tw_tensor *tw_add(tw_list *l, const char *dtype, int ndim, const int64_t *shape,
                         const char *fmt, ...)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = realloc(l->v, (size_t)l->cap * sizeof(*l->v));
    }
    tw_tensor *t = &l->v[l->n++];
    memset(t, 0, sizeof(*t));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof(t->name), fmt, ap);
    va_end(ap);
    snprintf(t->dtype, sizeof(t->dtype), "%s", dtype);
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++)
        t->shape[d] = shape[d];
    tw_size(t);
    return t;
}

TW_UNUSED static tw_tensor *tw_find(tw_list *l, const char *name)
{
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].name, name))
            return &l->v[i];
    return NULL;
}

TW_UNUSED static int tw_remove(tw_list *l, const char *name)
{
    tw_tensor *t = tw_find(l, name);
    if (!t)
        return -1;
    free(t->data);
    memmove(t, t + 1, (size_t)(l->v + l->n - (t + 1)) * sizeof(*t));
    l->n--;
    return 0;
}

TW_UNUSED static void tw_free(tw_list *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->v[i].data);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

/* Writes tensors [from, to) of l as one safetensors file: header padded
 * with spaces to 8 bytes, every tensor's data aligned to 8. */
TW_UNUSED static int tw_write_range(const tw_list *l, int from, int to, const char *path)
{
    size_t cap = 4096 + (size_t)(to - from) * 512, len = 0;
    char *h = malloc(cap);
    uint64_t off = 0;
    len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = from; i < to; i++) {
        const tw_tensor *t = &l->v[i];
        len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                                t->name, t->dtype);
        for (int d = 0; d < t->ndim; d++)
            len += (size_t)snprintf(h + len, cap - len, "%s%lld", d ? "," : "",
                                    (long long)t->shape[d]);
        int64_t b = (int64_t)off, e = (int64_t)(off + t->nbytes);
        if (t->has_offsets)
            b = t->off[0], e = t->off[1];
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%lld,%lld]}",
                                (long long)b, (long long)e);
        off = (off + t->nbytes + 7) & ~(uint64_t)7;
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while (len % 8)
        h[len++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(h);
        return -1;
    }
    unsigned char n8[8];
    for (int i = 0; i < 8; i++)
        n8[i] = (unsigned char)((uint64_t)len >> (8 * i));
    fwrite(n8, 1, 8, f);
    fwrite(h, 1, len, f);
    free(h);
    static const unsigned char zero[8];
    off = 0;
    for (int i = from; i < to; i++) {
        const tw_tensor *t = &l->v[i];
        fwrite(t->data, 1, t->nbytes, f);
        off += t->nbytes;
        if (off % 8) {
            fwrite(zero, 1, 8 - off % 8, f);
            off = (off + 7) & ~(uint64_t)7;
        }
    }
    return fclose(f);
}

TW_UNUSED static int tw_write(const tw_list *l, const char *path)
{
    return tw_write_range(l, 0, l->n, path);
}

/* Reads an existing file into a list (to rewrite it with one change). */
TW_UNUSED static int tw_read(tw_list *l, const char *path)
{
    td_safetensors *st;
    char err[512];
    if (td_st_open_file(&st, path, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    for (size_t i = 0; i < td_st_count(st); i++) {
        const td_st_tensor *s = td_st_at(st, i);
        tw_tensor *t = tw_add(l, td_st_dtype_name(s->dtype), s->ndim, s->shape, "%s", s->name);
        memcpy(t->data, s->data, s->nbytes);
    }
    td_st_close(st);
    return 0;
}

/* ---- a complete tiny checkpoint from a config ---------------------------- */

TW_UNUSED static uint32_t tw_rng = 12345;

TW_UNUSED static uint32_t tw_rand(void)
{
    tw_rng = tw_rng * 1664525u + 1013904223u;
    return tw_rng >> 8;
}

/* Plausible contents per dtype; nothing reads them but the wo_a check. */
TW_UNUSED static void tw_fill(tw_tensor *t)
{
    for (size_t i = 0; i < t->nbytes; i++) {
        uint32_t r = tw_rand();
        if (!strcmp(t->dtype, "F8_E4M3"))
            t->data[i] = (unsigned char)((r % 0x7e) | (r & 0x100 ? 0x80 : 0)); /* no NaN */
        else if (!strcmp(t->dtype, "F8_E8M0"))
            t->data[i] = (unsigned char)(120 + r % 8);
        else if (!strcmp(t->dtype, "BF16"))
            t->data[i] = (i & 1) ? 0x3f : 0x80;          /* 1.0 */
        else if (!strcmp(t->dtype, "I8"))
            t->data[i] = (unsigned char)r;
        else
            t->data[i] = 0;                               /* F32 0.0, I64 0 */
    }
}

#define TW_SHAPE(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), \
    (const int64_t[]){__VA_ARGS__}

TW_UNUSED static void tw_linear(tw_list *l, const char *p, const char *stem, td_wtype type, int n, int k)
{
    switch (type) {
    case TD_W_FP8:
        tw_fill(tw_add(l, "F8_E4M3", TW_SHAPE(n, k), "%s%s.weight", p, stem));
        tw_fill(tw_add(l, "F8_E8M0", TW_SHAPE((n + 127) / 128, (k + 127) / 128),
                       "%s%s.scale", p, stem));
        break;
    case TD_W_FP4:
        tw_fill(tw_add(l, "I8", TW_SHAPE(n, k / 2), "%s%s.weight", p, stem));
        tw_fill(tw_add(l, "F8_E8M0", TW_SHAPE(n, k / 32), "%s%s.scale", p, stem));
        break;
    default:
        tw_fill(tw_add(l, "BF16", TW_SHAPE(n, k), "%s%s.weight", p, stem));
        break;
    }
}

TW_UNUSED static void tw_vec(tw_list *l, const char *dtype, int n, const char *p, const char *s)
{
    tw_fill(tw_add(l, dtype, TW_SHAPE(n), "%s%s", p, s));
}

TW_UNUSED static void tw_hc(tw_list *l, const td_v4_config *c, const char *p, const char *which, int mix,
                  int nscale)
{
    tw_fill(tw_add(l, "F32", TW_SHAPE(mix, c->hc_mult * c->dim), "%s%s_fn", p, which));
    tw_fill(tw_add(l, "F32", TW_SHAPE(mix), "%s%s_base", p, which));
    tw_fill(tw_add(l, "F32", TW_SHAPE(nscale), "%s%s_scale", p, which));
}

TW_UNUSED static void tw_compressor(tw_list *l, const td_v4_config *c, const char *p, const char *stem,
                          int d, int ratio)
{
    int cd = (ratio == 4 ? 2 : 1) * d;
    char n[128];
    tw_fill(tw_add(l, "F32", TW_SHAPE(ratio, cd), "%s%s.ape", p, stem));
    snprintf(n, sizeof(n), "%s.wkv", stem);
    tw_linear(l, p, n, TD_W_BF16, cd, c->dim);
    snprintf(n, sizeof(n), "%s.wgate", stem);
    tw_linear(l, p, n, TD_W_BF16, cd, c->dim);
    snprintf(n, sizeof(n), "%s.norm.weight", stem);
    tw_vec(l, "BF16", d, p, n);
}

/* Spec §4.2, one block under prefix p. */
TW_UNUSED static void tw_layer(tw_list *l, const td_v4_config *c, const char *p, int ratio, int hash)
{
    const int D = c->dim, H = c->n_heads, hd = c->head_dim, G = c->o_groups;
    const int E = c->n_routed_experts, I = c->moe_inter_dim, mix = (2 + c->hc_mult) * c->hc_mult;
    tw_hc(l, c, p, "hc_attn", mix, 3);
    tw_hc(l, c, p, "hc_ffn", mix, 3);
    tw_vec(l, "BF16", D, p, "attn_norm.weight");
    tw_vec(l, "BF16", D, p, "ffn_norm.weight");
    tw_vec(l, "F32", H, p, "attn.attn_sink");
    tw_linear(l, p, "attn.wq_a", c->dtype, c->q_lora_rank, D);
    tw_vec(l, "BF16", c->q_lora_rank, p, "attn.q_norm.weight");
    tw_linear(l, p, "attn.wq_b", c->dtype, H * hd, c->q_lora_rank);
    tw_linear(l, p, "attn.wkv", c->dtype, hd, D);
    tw_vec(l, "BF16", hd, p, "attn.kv_norm.weight");
    tw_linear(l, p, "attn.wo_a", c->dtype, G * c->o_lora_rank, H * hd / G);
    tw_linear(l, p, "attn.wo_b", c->dtype, D, G * c->o_lora_rank);
    if (ratio > 0)
        tw_compressor(l, c, p, "attn.compressor", hd, ratio);
    if (ratio == 4) {
        tw_linear(l, p, "attn.indexer.wq_b", c->dtype, c->index_n_heads * c->index_head_dim,
                  c->q_lora_rank);
        tw_linear(l, p, "attn.indexer.weights_proj", TD_W_BF16, c->index_n_heads, D);
        tw_compressor(l, c, p, "attn.indexer.compressor", c->index_head_dim, 4);
    }
    tw_linear(l, p, "ffn.gate", TD_W_BF16, E, D);
    if (hash) {
        tw_tensor *t = tw_add(l, "I64", TW_SHAPE(c->vocab_size, c->n_activated_experts),
                              "%sffn.gate.tid2eid", p);
        int64_t *ids = (int64_t *)t->data;
        for (int v = 0; v < c->vocab_size; v++)
            for (int j = 0; j < c->n_activated_experts; j++)
                ids[v * c->n_activated_experts + j] = (v * c->n_activated_experts + j) % E;
    } else {
        tw_vec(l, "F32", E, p, "ffn.gate.bias");
    }
    char n[96];
    for (int e = 0; e < E; e++) {
        snprintf(n, sizeof(n), "ffn.experts.%d.w1", e);
        tw_linear(l, p, n, c->expert_dtype, I, D);
        snprintf(n, sizeof(n), "ffn.experts.%d.w2", e);
        tw_linear(l, p, n, c->expert_dtype, D, I);
        snprintf(n, sizeof(n), "ffn.experts.%d.w3", e);
        tw_linear(l, p, n, c->expert_dtype, I, D);
    }
    tw_linear(l, p, "ffn.shared_experts.w1", c->dtype, I, D);
    tw_linear(l, p, "ffn.shared_experts.w2", c->dtype, D, I);
    tw_linear(l, p, "ffn.shared_experts.w3", c->dtype, I, D);
}

TW_UNUSED static void tw_model(tw_list *l, const td_v4_config *c)
{
    char p[48];
    tw_fill(tw_add(l, "BF16", TW_SHAPE(c->vocab_size, c->dim), "embed.weight"));
    for (int i = 0; i < c->n_layers; i++) {
        snprintf(p, sizeof(p), "layers.%d.", i);
        tw_layer(l, c, p, c->compress_ratios[i], i < c->n_hash_layers);
    }
    tw_vec(l, "BF16", c->dim, "", "norm.weight");
    tw_linear(l, "", "head", TD_W_BF16, c->vocab_size, c->dim);
    tw_hc(l, c, "", "hc_head", c->hc_mult, 1);
    for (int m = 0; m < c->n_mtp_layers; m++) {
        snprintf(p, sizeof(p), "mtp.%d.", m);
        tw_layer(l, c, p, c->compress_ratios[c->n_layers + m], 0);
        tw_linear(l, p, "e_proj", c->dtype, c->dim, c->dim);
        tw_linear(l, p, "h_proj", c->dtype, c->dim, c->dim);
        tw_vec(l, "BF16", c->dim, p, "enorm.weight");
        tw_vec(l, "BF16", c->dim, p, "hnorm.weight");
        tw_vec(l, "BF16", c->dim, p, "norm.weight");
        tw_hc(l, c, p, "hc_head", c->hc_mult, 1);
    }
}

/* A small FP8/FP4 config covering every layer kind: layer 0 window-only
 * and hash-routed, 1 CSA and hash-routed, 2 HCA (ratio 16), MTP window. */
TW_UNUSED static const char tw_tiny_fp8_config[] =
    "{\"model_type\":\"deepseek_v4\",\"vocab_size\":256,\"hidden_size\":128,"
    "\"num_hidden_layers\":3,\"num_nextn_predict_layers\":1,\"num_attention_heads\":4,"
    "\"head_dim\":128,\"qk_rope_head_dim\":64,\"q_lora_rank\":128,\"o_groups\":2,"
    "\"o_lora_rank\":64,\"sliding_window\":16,\"index_n_heads\":2,\"index_head_dim\":128,"
    "\"index_topk\":4,\"n_routed_experts\":4,\"num_experts_per_tok\":2,\"n_shared_experts\":1,"
    "\"moe_intermediate_size\":128,\"num_hash_layers\":2,\"hc_mult\":4,\"hc_sinkhorn_iters\":20,"
    "\"hc_eps\":1e-6,\"rms_norm_eps\":1e-6,\"rope_theta\":10000,\"compress_rope_theta\":160000,"
    "\"rope_scaling\":{\"type\":\"yarn\",\"factor\":16,\"original_max_position_embeddings\":65536,"
    "\"beta_fast\":32,\"beta_slow\":1},\"routed_scaling_factor\":1.5,\"swiglu_limit\":10.0,"
    "\"max_position_embeddings\":4096,\"bos_token_id\":0,\"eos_token_id\":1,"
    "\"scoring_func\":\"sqrtsoftplus\",\"topk_method\":\"noaux_tc\","
    "\"quantization_config\":{\"activation_scheme\":\"dynamic\",\"fmt\":\"e4m3\","
    "\"quant_method\":\"fp8\",\"scale_fmt\":\"ue8m0\",\"weight_block_size\":[128,128]},"
    "\"expert_dtype\":\"fp4\",\"compress_ratios\":[0,4,16,0]}";

/* The same shape of model, all bf16 (no quantization_config, no
 * expert_dtype), with widths that are not multiples of 128. */
TW_UNUSED static const char tw_tiny_bf16_config[] =
    "{\"model_type\":\"deepseek_v4\",\"vocab_size\":100,\"hidden_size\":64,"
    "\"num_hidden_layers\":3,\"num_nextn_predict_layers\":1,\"num_attention_heads\":2,"
    "\"head_dim\":128,\"qk_rope_head_dim\":64,\"q_lora_rank\":48,\"o_groups\":1,"
    "\"o_lora_rank\":32,\"sliding_window\":8,\"index_n_heads\":2,\"index_head_dim\":128,"
    "\"index_topk\":4,\"n_routed_experts\":3,\"num_experts_per_tok\":2,\"n_shared_experts\":1,"
    "\"moe_intermediate_size\":64,\"num_hash_layers\":1,\"hc_mult\":2,\"hc_sinkhorn_iters\":20,"
    "\"rope_theta\":10000,\"compress_rope_theta\":160000,"
    "\"rope_scaling\":{\"type\":\"yarn\",\"factor\":16,\"original_max_position_embeddings\":65536,"
    "\"beta_fast\":32,\"beta_slow\":1},\"routed_scaling_factor\":1.5,\"swiglu_limit\":10.0,"
    "\"max_position_embeddings\":4096,\"bos_token_id\":0,\"eos_token_id\":1,"
    "\"scoring_func\":\"sqrtsoftplus\",\"compress_ratios\":[4,8,0,0]}";

/* ---- files and directories ----------------------------------------------- */

TW_UNUSED static int tw_write_text(const char *dir, const char *file, const char *text)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    fwrite(text, 1, strlen(text), f);
    return fclose(f);
}

TW_UNUSED static char *tw_read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = '\0';
    fclose(f);
    return s;
}

TW_UNUSED static void tw_mkdtemp(char *buf, size_t len)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(buf, len, "%s/td_loader_test.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        exit(1);
    }
}

/* Removes a flat directory made by tw_mkdtemp. */
TW_UNUSED static void tw_rmdir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[1024];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            unlink(path);
        }
    closedir(d);
    rmdir(dir);
}

#endif
