/* Binds every tensor of a V4 checkpoint (spec §4.2) to td_v4_weights.
 *
 * Each tensor's presence, dtype and exact shape is checked against the
 * config before any pointer is handed out, and a tensor the config does not
 * explain is an error too: a checkpoint that disagrees with its config
 * (wrong compress_ratios, wrong num_hash_layers) must fail here, with the
 * tensor named, rather than compute garbage later. */
#include "model/weights.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/safetensors.h"

typedef struct {
    const td_v4_config *cfg;
    td_safetensors *st;
    td_v4_weights *w;
    unsigned char *used;        /* [td_st_count] tensors bound so far */
    char *err;
    size_t errlen;
    char name[256];             /* name of the tensor being looked at */
} loader;

#define BIT(dt) (1u << (dt))

static int cdiv(int a, int b) { return (a + b - 1) / b; }

static void fmt_dims(char *buf, size_t len, const int64_t *shape, int ndim)
{
    size_t off = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < ndim && off < len; d++)
        off += (size_t)snprintf(buf + off, len - off, "%s%lld", d ? ", " : "",
                                (long long)shape[d]);
    if (off < len)
        snprintf(buf + off, len - off, "]");
}

static const td_st_tensor *lookup(loader *L, const char *prefix, const char *suffix)
{
    snprintf(L->name, sizeof(L->name), "%s%s", prefix, suffix);
    return td_st_find(L->st, L->name);
}

/* Finds prefix+suffix and checks dtype (one of `dtypes`, a BIT() mask; the
 * lowest, or I8, is named in messages) and exact shape. */
static td_err expect(loader *L, const td_st_tensor **out, const char *prefix,
                     const char *suffix, unsigned dtypes, const int64_t *shape, int ndim)
{
    const td_st_tensor *t = lookup(L, prefix, suffix);
    if (!t)
        return td_errf(L->err, L->errlen, TD_ENOENT, "missing tensor %s", L->name);
    if (!(dtypes & BIT(t->dtype))) {
        /* packed FP4 also accepts U8, but the release writes I8: name that */
        int want = (dtypes & BIT(TD_ST_I8)) ? TD_ST_I8 : __builtin_ctz(dtypes);
        return td_errf(L->err, L->errlen, TD_ESHAPE, "%s: dtype %s expected %s", L->name,
                       td_st_dtype_name(t->dtype), td_st_dtype_name((td_st_dtype)want));
    }
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++)
        same = t->shape[d] == shape[d];
    if (!same) {
        char got[128], want[128];
        fmt_dims(got, sizeof(got), t->shape, t->ndim);
        fmt_dims(want, sizeof(want), shape, ndim);
        return td_errf(L->err, L->errlen, TD_ESHAPE, "%s: shape %s expected %s", L->name, got,
                       want);
    }
    /* Callers read F32/BF16/I64 through typed pointers; safetensors writers
     * align data, a hand-made file might not. */
    size_t es = td_st_dtype_size(t->dtype);
    if ((uintptr_t)t->data % es)
        return td_errf(L->err, L->errlen, TD_EFORMAT, "%s: data not aligned to %zu bytes",
                       L->name, es);
    L->used[t - td_st_at(L->st, 0)] = 1;
    *out = t;
    return TD_OK;
}

#define SHAPE(...) (const int64_t[]){__VA_ARGS__}, \
    (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t))

static td_err f32_vec(loader *L, const float **p, const char *prefix, const char *suffix, int n)
{
    const td_st_tensor *t;
    td_err rc = expect(L, &t, prefix, suffix, BIT(TD_ST_F32), SHAPE(n));
    if (!rc)
        *p = t->data;
    return rc;
}

static td_err bf16_vec(loader *L, const uint16_t **p, const char *prefix, const char *suffix,
                       int n)
{
    const td_st_tensor *t;
    td_err rc = expect(L, &t, prefix, suffix, BIT(TD_ST_BF16), SHAPE(n));
    if (!rc)
        *p = t->data;
    return rc;
}

/* A linear layer `stem`.weight [n][k] (+ `stem`.scale) stored as `type`. */
static td_err linear(loader *L, td_weight *w, const char *prefix, const char *stem,
                     td_wtype type, int n, int k)
{
    char wname[160], sname[160];
    snprintf(wname, sizeof(wname), "%s.weight", stem);
    snprintf(sname, sizeof(sname), "%s.scale", stem);
    const td_st_tensor *t, *s = NULL;
    td_err rc;
    memset(w, 0, sizeof(*w));
    switch (type) {
    case TD_W_FP8:
        if ((rc = expect(L, &t, prefix, wname, BIT(TD_ST_F8_E4M3), SHAPE(n, k))) ||
            (rc = expect(L, &s, prefix, sname, BIT(TD_ST_F8_E8M0),
                         SHAPE(cdiv(n, 128), cdiv(k, 128)))))
            return rc;
        break;
    case TD_W_FP4:
        /* two e2m1 values per byte, low nibble first; I8 in the release */
        if ((rc = expect(L, &t, prefix, wname, BIT(TD_ST_I8) | BIT(TD_ST_U8), SHAPE(n, k / 2))) ||
            (rc = expect(L, &s, prefix, sname, BIT(TD_ST_F8_E8M0), SHAPE(n, k / 32))))
            return rc;
        break;
    case TD_W_BF16:
        if ((rc = expect(L, &t, prefix, wname, BIT(TD_ST_BF16), SHAPE(n, k))))
            return rc;
        break;
    case TD_W_F32:
    default:
        if ((rc = expect(L, &t, prefix, wname, BIT(TD_ST_F32), SHAPE(n, k))))
            return rc;
        break;
    }
    w->type = type;
    w->n = n;
    w->k = k;
    w->data = t->data;
    w->scale = s ? s->data : NULL;
    return TD_OK;
}

/* ---- wo_a: FP8 -> bf16 once, as the official convert.py ---------------- */

/* dst[r][c] = bf16(e4m3(q[r][c]) * 2^(s[r/128][c/128] - 127)). The product
 * of a 4-bit-significand value and a power of two is exact in fp32, so the
 * only rounding is the final bf16 one, as in the reference. */
static void dequant_fp8(uint16_t *dst, const uint8_t *q, const uint8_t *s, int n, int k)
{
    float lut[256];
    for (int b = 0; b < 256; b++)
        lut[b] = td_e4m3_to_f32((uint8_t)b);
    int kb = cdiv(k, 128);
    for (int r = 0; r < n; r++) {
        const uint8_t *srow = s + (size_t)(r / 128) * (size_t)kb;
        const uint8_t *qrow = q + (size_t)r * (size_t)k;
        uint16_t *drow = dst + (size_t)r * (size_t)k;
        for (int c0 = 0; c0 < k; c0 += 128) {
            uint8_t sb = srow[c0 / 128];
            float sc = sb == 0xff ? NAN : ldexpf(1.0f, (int)sb - 127);
            int c1 = c0 + 128 < k ? c0 + 128 : k;
            for (int c = c0; c < c1; c++)
                drow[c] = td_f32_to_bf16(lut[qrow[c]] * sc);
        }
    }
}

static td_err wo_a(loader *L, td_weight *w, const char *prefix, int n, int k)
{
    /* A checkpoint already converted (wo_a bf16, no scale) is accepted too. */
    const td_st_tensor *t = lookup(L, prefix, "attn.wo_a.weight");
    td_wtype type = L->cfg->dtype;
    if (type == TD_W_FP8 && t && t->dtype == TD_ST_BF16)
        type = TD_W_BF16;
    td_err rc = linear(L, w, prefix, "attn.wo_a", type, n, k);
    if (rc || type == TD_W_BF16)
        return rc;
    uint16_t *buf = malloc((size_t)n * (size_t)k * sizeof(uint16_t));
    if (!buf)
        return td_errf(L->err, L->errlen, TD_ENOMEM, "%sattn.wo_a: out of memory (%d x %d bf16)",
                       prefix, n, k);
    dequant_fp8(buf, w->data, w->scale, n, k);
    L->w->owned[L->w->n_owned++] = buf;
    w->type = TD_W_BF16;
    w->data = buf;
    w->scale = NULL;
    return TD_OK;
}

/* ---- modules ----------------------------------------------------------- */

/* hc_{which}_fn [mix][hc*D], _base [mix], _scale [nscale], all F32. */
static td_err hc(loader *L, td_v4_hc *h, const char *prefix, const char *which, int mix,
                 int nscale)
{
    const int hcd = L->cfg->hc_mult * L->cfg->dim;
    char n[64];
    const td_st_tensor *t;
    td_err rc;
    snprintf(n, sizeof(n), "%s_fn", which);
    if ((rc = expect(L, &t, prefix, n, BIT(TD_ST_F32), SHAPE(mix, hcd))))
        return rc;
    h->fn = t->data;
    snprintf(n, sizeof(n), "%s_base", which);
    if ((rc = f32_vec(L, &h->base, prefix, n, mix)))
        return rc;
    snprintf(n, sizeof(n), "%s_scale", which);
    return f32_vec(L, &h->scale, prefix, n, nscale);
}

/* Gated pooling compressor `stem` (spec §2.7): c = 2 halves when ratio 4. */
static td_err compressor(loader *L, td_v4_compressor *c, const char *prefix, const char *stem,
                         int d, int ratio)
{
    const int D = L->cfg->dim, ov = ratio == 4, cd = (ov ? 2 : 1) * d;
    char n[96];
    const td_st_tensor *t;
    td_err rc;
    c->d = d;
    c->ratio = ratio;
    c->overlap = ov;
    snprintf(n, sizeof(n), "%s.ape", stem);
    if ((rc = expect(L, &t, prefix, n, BIT(TD_ST_F32), SHAPE(ratio, cd))))
        return rc;
    c->ape = t->data;
    snprintf(n, sizeof(n), "%s.wkv", stem);
    if ((rc = linear(L, &c->wkv, prefix, n, TD_W_BF16, cd, D)))
        return rc;
    snprintf(n, sizeof(n), "%s.wgate", stem);
    if ((rc = linear(L, &c->wgate, prefix, n, TD_W_BF16, cd, D)))
        return rc;
    snprintf(n, sizeof(n), "%s.norm.weight", stem);
    return bf16_vec(L, &c->norm, prefix, n, d);
}

static td_err attention(loader *L, td_v4_layer *ly, const char *prefix)
{
    const td_v4_config *k = L->cfg;
    const int D = k->dim, H = k->n_heads, hd = k->head_dim, G = k->o_groups;
    const td_wtype dt = k->dtype;
    td_err rc;
    if ((rc = f32_vec(L, &ly->attn_sink, prefix, "attn.attn_sink", H)) ||
        (rc = linear(L, &ly->wq_a, prefix, "attn.wq_a", dt, k->q_lora_rank, D)) ||
        (rc = bf16_vec(L, &ly->q_norm, prefix, "attn.q_norm.weight", k->q_lora_rank)) ||
        (rc = linear(L, &ly->wq_b, prefix, "attn.wq_b", dt, H * hd, k->q_lora_rank)) ||
        (rc = linear(L, &ly->wkv, prefix, "attn.wkv", dt, hd, D)) ||
        (rc = bf16_vec(L, &ly->kv_norm, prefix, "attn.kv_norm.weight", hd)) ||
        (rc = wo_a(L, &ly->wo_a, prefix, G * k->o_lora_rank, H * hd / G)) ||
        (rc = linear(L, &ly->wo_b, prefix, "attn.wo_b", dt, D, G * k->o_lora_rank)))
        return rc;
    if (ly->ratio > 0 &&
        (rc = compressor(L, &ly->compressor, prefix, "attn.compressor", hd, ly->ratio)))
        return rc;
    if (td_v4_is_csa(ly->ratio)) {
        const int nI = k->index_n_heads, dI = k->index_head_dim;
        if ((rc = linear(L, &ly->idx_wq_b, prefix, "attn.indexer.wq_b", dt, nI * dI,
                         k->q_lora_rank)) ||
            (rc = linear(L, &ly->idx_weights_proj, prefix, "attn.indexer.weights_proj",
                         TD_W_BF16, nI, D)) ||
            (rc = compressor(L, &ly->idx_compressor, prefix, "attn.indexer.compressor", dI, 4)))
            return rc;
    }
    return TD_OK;
}

static td_err moe(loader *L, td_v4_layer *ly, const char *prefix)
{
    const td_v4_config *k = L->cfg;
    const int D = k->dim, E = k->n_routed_experts, I = k->moe_inter_dim;
    const td_st_tensor *t;
    td_err rc;
    if ((rc = linear(L, &ly->gate, prefix, "ffn.gate", TD_W_BF16, E, D)))
        return rc;
    if (ly->hash) {
        const int topk = k->n_activated_experts;
        if ((rc = expect(L, &t, prefix, "ffn.gate.tid2eid", BIT(TD_ST_I64),
                         SHAPE(k->vocab_size, topk))))
            return rc;
        /* Routing indexes experts with these ids: check them once here. */
        const int64_t *ids = t->data;
        for (size_t i = 0; i < (size_t)k->vocab_size * (size_t)topk; i++)
            if (ids[i] < 0 || ids[i] >= E)
                return td_errf(L->err, L->errlen, TD_ERANGE,
                               "%s: entry [%zu][%zu] = %lld outside [0, %d)", L->name,
                               i / (size_t)topk, i % (size_t)topk, (long long)ids[i], E);
        ly->tid2eid = ids;
    } else if ((rc = f32_vec(L, &ly->gate_bias, prefix, "ffn.gate.bias", E))) {
        return rc;
    }
    ly->experts = calloc((size_t)E, sizeof(*ly->experts));
    if (!ly->experts)
        return td_errf(L->err, L->errlen, TD_ENOMEM, "out of memory (experts)");
    char n[96];
    for (int e = 0; e < E; e++) {
        td_v4_expert *x = &ly->experts[e];
        snprintf(n, sizeof(n), "ffn.experts.%d.w1", e);
        if ((rc = linear(L, &x->w1, prefix, n, k->expert_dtype, I, D)))
            return rc;
        snprintf(n, sizeof(n), "ffn.experts.%d.w2", e);
        if ((rc = linear(L, &x->w2, prefix, n, k->expert_dtype, D, I)))
            return rc;
        snprintf(n, sizeof(n), "ffn.experts.%d.w3", e);
        if ((rc = linear(L, &x->w3, prefix, n, k->expert_dtype, I, D)))
            return rc;
    }
    if ((rc = linear(L, &ly->shared.w1, prefix, "ffn.shared_experts.w1", k->dtype, I, D)) ||
        (rc = linear(L, &ly->shared.w2, prefix, "ffn.shared_experts.w2", k->dtype, D, I)) ||
        (rc = linear(L, &ly->shared.w3, prefix, "ffn.shared_experts.w3", k->dtype, I, D)))
        return rc;
    return TD_OK;
}

/* One block (main layer or the MTP block's layer) under `prefix`. */
static td_err layer(loader *L, td_v4_layer *ly, const char *prefix, int ratio, int hash)
{
    const td_v4_config *k = L->cfg;
    const int mix = (2 + k->hc_mult) * k->hc_mult;
    td_err rc;
    ly->ratio = ratio;
    ly->hash = hash;
    if ((rc = hc(L, &ly->hc_attn, prefix, "hc_attn", mix, 3)) ||
        (rc = hc(L, &ly->hc_ffn, prefix, "hc_ffn", mix, 3)) ||
        (rc = bf16_vec(L, &ly->attn_norm, prefix, "attn_norm.weight", k->dim)) ||
        (rc = bf16_vec(L, &ly->ffn_norm, prefix, "ffn_norm.weight", k->dim)) ||
        (rc = attention(L, ly, prefix)))
        return rc;
    return moe(L, ly, prefix);
}

static td_err mtp(loader *L, td_v4_mtp *m, const char *prefix, int ratio)
{
    const td_v4_config *k = L->cfg;
    const int D = k->dim;
    td_err rc;
    if ((rc = layer(L, &m->block, prefix, ratio, 0)) ||
        (rc = linear(L, &m->e_proj, prefix, "e_proj", k->dtype, D, D)) ||
        (rc = linear(L, &m->h_proj, prefix, "h_proj", k->dtype, D, D)) ||
        (rc = bf16_vec(L, &m->enorm, prefix, "enorm.weight", D)) ||
        (rc = bf16_vec(L, &m->hnorm, prefix, "hnorm.weight", D)) ||
        (rc = bf16_vec(L, &m->norm, prefix, "norm.weight", D)))
        return rc;
    return hc(L, &m->hc_head, prefix, "hc_head", k->hc_mult, 1);
}

/* convert.py skips mtp.N.embed* / mtp.N.head* (shared with the main model),
 * so a checkpoint may carry them; nothing else may go unexplained. */
static int tolerated_extra(const char *name)
{
    if (strncmp(name, "mtp.", 4))
        return 0;
    const char *p = name + 4;
    while (*p >= '0' && *p <= '9')
        p++;
    return p > name + 4 && *p == '.' &&
           (!strncmp(p + 1, "embed.", 6) || !strncmp(p + 1, "head.", 5));
}

static td_err bind_all(loader *L)
{
    const td_v4_config *k = L->cfg;
    td_v4_weights *w = L->w;
    const td_st_tensor *t;
    char prefix[48];
    td_err rc;
    if ((rc = expect(L, &t, "", "embed.weight", BIT(TD_ST_BF16), SHAPE(k->vocab_size, k->dim))))
        return rc;
    w->embed = t->data;
    for (int i = 0; i < k->n_layers; i++) {
        snprintf(prefix, sizeof(prefix), "layers.%d.", i);
        if ((rc = layer(L, &w->layers[i], prefix, k->compress_ratios[i], i < k->n_hash_layers)))
            return rc;
    }
    if ((rc = bf16_vec(L, &w->norm, "", "norm.weight", k->dim)) ||
        (rc = linear(L, &w->head, "", "head", TD_W_BF16, k->vocab_size, k->dim)) ||
        (rc = hc(L, &w->hc_head, "", "hc_head", k->hc_mult, 1)))
        return rc;
    for (int i = 0; i < k->n_mtp_layers; i++) {
        snprintf(prefix, sizeof(prefix), "mtp.%d.", i);
        if ((rc = mtp(L, &w->mtp[i], prefix, k->compress_ratios[k->n_layers + i])))
            return rc;
    }
    for (size_t i = 0; i < td_st_count(L->st); i++) {
        const char *name = td_st_at(L->st, i)->name;
        if (!L->used[i] && !tolerated_extra(name))
            return td_errf(L->err, L->errlen, TD_ECORRUPT,
                           "unexpected tensor %s: the config does not call for it "
                           "(check compress_ratios, num_hash_layers, num_hidden_layers)", name);
    }
    return TD_OK;
}

static void free_layer(td_v4_layer *ly)
{
    free(ly->experts);
}

void td_v4_weights_destroy(td_v4_weights *w)
{
    if (!w)
        return;
    if (w->layers)
        for (int i = 0; i < w->cfg.n_layers; i++)
            free_layer(&w->layers[i]);
    if (w->mtp)
        for (int i = 0; i < w->cfg.n_mtp_layers; i++)
            free_layer(&w->mtp[i].block);
    for (int i = 0; i < w->n_owned; i++)
        free(w->owned[i]);
    free(w->owned);
    free(w->layers);
    free(w->mtp);
    td_st_close(w->st);
    free(w);
}

td_err td_v4_weights_load(td_v4_weights **out, const char *model_dir, char *err, size_t errlen)
{
    *out = NULL;
    char path[4096];
    int n = snprintf(path, sizeof(path), "%s/config.json", model_dir);
    if (n < 0 || (size_t)n >= sizeof(path))
        return td_errf(err, errlen, TD_ERANGE, "%s: path too long", model_dir);
    td_v4_weights *w = calloc(1, sizeof(*w));
    if (!w)
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    td_err rc = td_v4_config_load(&w->cfg, path, err, errlen);
    if (rc)
        goto fail;
    const td_v4_config *k = &w->cfg;
    w->layers = calloc((size_t)k->n_layers, sizeof(*w->layers));
    w->mtp = k->n_mtp_layers ? calloc((size_t)k->n_mtp_layers, sizeof(*w->mtp)) : NULL;
    w->owned = calloc((size_t)(k->n_layers + k->n_mtp_layers), sizeof(*w->owned));
    if (!w->layers || (k->n_mtp_layers && !w->mtp) || !w->owned) {
        rc = td_errf(err, errlen, TD_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = td_st_open_dir(&w->st, model_dir, err, errlen)))
        goto fail;
    loader L = {.cfg = k, .st = w->st, .w = w, .err = err, .errlen = errlen};
    L.used = calloc(td_st_count(w->st) + 1, 1);
    if (!L.used) {
        rc = td_errf(err, errlen, TD_ENOMEM, "out of memory");
        goto fail;
    }
    rc = bind_all(&L);
    free(L.used);
    if (rc)
        goto fail;
    *out = w;
    return TD_OK;
fail:
    td_v4_weights_destroy(w);
    return rc;
}
