/* config.json (Hugging Face style, model_type "deepseek_v4") -> td_v4_config.
 *
 * Every field the forward pass reads is checked for presence, JSON type and
 * range here, and so are the cross-field constraints the kernels rely on
 * (block sizes of the FP8/FP4 paths, spec §8), so that later code can
 * index and divide without re-checking. Messages name the field:
 *   config.json: field "hidden_size" must be a positive integer
 * Codes: TD_ECORRUPT = not JSON, TD_EFORMAT = missing field, wrong JSON
 * type or an unsupported value, TD_ERANGE = a number out of range.
 */
#include "model/config.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"

/* Caps that keep every derived size (products below) inside int. */
#define DIM_MAX   (1 << 20)
#define VOCAB_MAX (1 << 24)

typedef struct {
    const char *label;    /* file name for messages */
    char *err;
    size_t errlen;
} pctx;

static const char *describe(long long min)
{
    return min == 1 ? "a positive integer" : min == 0 ? "a non-negative integer" : "an integer";
}

/* Reads obj[key] (shown as `field`) as an int in [min, max]. */
static td_err get_int(pctx *c, json_t *obj, const char *key, const char *field,
                      long long min, long long max, int *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return td_errf(c->err, c->errlen, TD_EFORMAT, "%s: missing field \"%s\"", c->label, field);
    if (!json_is_integer(v))
        return td_errf(c->err, c->errlen, TD_EFORMAT, "%s: field \"%s\" must be %s",
                       c->label, field, min == max ? "an integer" : describe(min));
    long long x = json_integer_value(v);
    if (min == max && x != min)
        return td_errf(c->err, c->errlen, TD_ERANGE, "%s: field \"%s\" must be %lld (got %lld)",
                       c->label, field, min, x);
    if (x < min)
        return td_errf(c->err, c->errlen, TD_ERANGE, "%s: field \"%s\" must be %s (got %lld)",
                       c->label, field, describe(min), x);
    if (x > max)
        return td_errf(c->err, c->errlen, TD_ERANGE, "%s: field \"%s\" = %lld is above the "
                       "supported maximum %lld", c->label, field, x, max);
    *out = (int)x;
    return TD_OK;
}

/* Reads a number (integer or real); positive = 1 requires > 0. When dflt
 * is non-NULL the field is optional. */
static td_err get_num(pctx *c, json_t *obj, const char *key, const char *field,
                      int positive, const float *dflt, float *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v && dflt) {
        *out = *dflt;
        return TD_OK;
    }
    if (!v)
        return td_errf(c->err, c->errlen, TD_EFORMAT, "%s: missing field \"%s\"", c->label, field);
    if (!json_is_number(v))
        return td_errf(c->err, c->errlen, TD_EFORMAT, "%s: field \"%s\" must be a %snumber",
                       c->label, field, positive ? "positive " : "");
    double x = json_number_value(v);
    if (positive && !(x > 0))
        return td_errf(c->err, c->errlen, TD_ERANGE, "%s: field \"%s\" must be a positive number "
                       "(got %g)", c->label, field, x);
    if (x > 3.0e38 || x < -3.0e38)
        return td_errf(c->err, c->errlen, TD_ERANGE, "%s: field \"%s\" does not fit a float",
                       c->label, field);
    *out = (float)x;
    return TD_OK;
}

/* A string field that must equal `want` (required or, with optional = 1,
 * checked only when present). */
static td_err want_str(pctx *c, json_t *obj, const char *key, const char *field,
                       const char *want, int optional)
{
    json_t *v = json_object_get(obj, key);
    if (!v && optional)
        return TD_OK;
    if (!v)
        return td_errf(c->err, c->errlen, TD_EFORMAT, "%s: missing field \"%s\"", c->label, field);
    if (!json_is_string(v))
        return td_errf(c->err, c->errlen, TD_EFORMAT, "%s: field \"%s\" must be a string",
                       c->label, field);
    if (strcmp(json_string_value(v), want))
        return td_errf(c->err, c->errlen, TD_EFORMAT, "%s: field \"%s\" is \"%s\"; only \"%s\" "
                       "is supported", c->label, field, json_string_value(v), want);
    return TD_OK;
}

/* A boolean that, when present, must have the value `want`. */
static td_err want_bool(pctx *c, json_t *obj, const char *key, int want)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return TD_OK;
    if (!json_is_boolean(v))
        return td_errf(c->err, c->errlen, TD_EFORMAT, "%s: field \"%s\" must be a boolean",
                       c->label, key);
    if (json_is_true(v) != want)
        return td_errf(c->err, c->errlen, TD_EFORMAT, "%s: field \"%s\" = %s is not supported",
                       c->label, key, want ? "false" : "true");
    return TD_OK;
}

/* quantization_config -> dtype. Absent means unquantised bf16 linears;
 * present, it must be the FP8 e4m3 128x128 power-of-two-scale scheme of
 * the V4 release, since that is the only layout the kernels take. */
static td_err parse_quant(pctx *c, json_t *root, td_wtype *dtype)
{
    json_t *q = json_object_get(root, "quantization_config");
    if (!q || json_is_null(q)) {
        *dtype = TD_W_BF16;
        return TD_OK;
    }
    if (!json_is_object(q))
        return td_errf(c->err, c->errlen, TD_EFORMAT,
                       "%s: field \"quantization_config\" must be an object", c->label);
    td_err rc;
    if ((rc = want_str(c, q, "quant_method", "quantization_config.quant_method", "fp8", 1)) ||
        (rc = want_str(c, q, "fmt", "quantization_config.fmt", "e4m3", 0)) ||
        (rc = want_str(c, q, "scale_fmt", "quantization_config.scale_fmt", "ue8m0", 1)) ||
        (rc = want_str(c, q, "activation_scheme", "quantization_config.activation_scheme",
                       "dynamic", 1)))
        return rc;
    json_t *b = json_object_get(q, "weight_block_size");
    if (!b)
        return td_errf(c->err, c->errlen, TD_EFORMAT,
                       "%s: missing field \"quantization_config.weight_block_size\"", c->label);
    if (!json_is_array(b) || json_array_size(b) != 2 ||
        !json_is_integer(json_array_get(b, 0)) || !json_is_integer(json_array_get(b, 1)))
        return td_errf(c->err, c->errlen, TD_EFORMAT, "%s: field "
                       "\"quantization_config.weight_block_size\" must be [128, 128]", c->label);
    if (json_integer_value(json_array_get(b, 0)) != 128 ||
        json_integer_value(json_array_get(b, 1)) != 128)
        return td_errf(c->err, c->errlen, TD_EFORMAT, "%s: field "
                       "\"quantization_config.weight_block_size\" must be [128, 128]", c->label);
    *dtype = TD_W_FP8;
    return TD_OK;
}

static td_err parse_expert_dtype(pctx *c, json_t *root, td_wtype dtype, td_wtype *out)
{
    json_t *v = json_object_get(root, "expert_dtype");
    *out = dtype;
    if (!v || json_is_null(v))
        return TD_OK;
    const char *s = json_string_value(v);
    if (!s)
        return td_errf(c->err, c->errlen, TD_EFORMAT,
                       "%s: field \"expert_dtype\" must be a string", c->label);
    if (!strcmp(s, "fp4"))
        *out = TD_W_FP4;
    else if (!strcmp(s, "fp8"))
        *out = TD_W_FP8;
    else if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16"))
        *out = TD_W_BF16;
    else
        return td_errf(c->err, c->errlen, TD_EFORMAT, "%s: field \"expert_dtype\" is \"%s\"; "
                       "supported: \"fp4\", \"fp8\", \"bf16\"", c->label, s);
    return TD_OK;
}

static td_err parse_ratios(pctx *c, json_t *root, td_v4_config *k)
{
    json_t *a = json_object_get(root, "compress_ratios");
    if (!a)
        return td_errf(c->err, c->errlen, TD_EFORMAT, "%s: missing field \"compress_ratios\"",
                       c->label);
    if (!json_is_array(a))
        return td_errf(c->err, c->errlen, TD_EFORMAT,
                       "%s: field \"compress_ratios\" must be an array of integers", c->label);
    for (size_t i = 0; i < json_array_size(a); i++)
        if (!json_is_integer(json_array_get(a, i)))
            return td_errf(c->err, c->errlen, TD_EFORMAT,
                           "%s: field \"compress_ratios\" must be an array of integers", c->label);
    int want = k->n_layers + k->n_mtp_layers;
    if ((long long)json_array_size(a) != want)
        return td_errf(c->err, c->errlen, TD_ERANGE, "%s: field \"compress_ratios\" has %zu "
                       "entries; num_hidden_layers + num_nextn_predict_layers = %d",
                       c->label, json_array_size(a), want);
    k->n_ratios = want;
    for (int i = 0; i < want; i++) {
        long long r = json_integer_value(json_array_get(a, (size_t)i));
        if (r < 0 || r > DIM_MAX)
            return td_errf(c->err, c->errlen, TD_ERANGE, "%s: compress_ratios[%d] = %lld out "
                           "of range [0, %d]", c->label, i, r, DIM_MAX);
        /* Tokens of an incomplete block are seen only through the window
         * (spec §2.7), so a block longer than the window would hide them. */
        if (r > k->window)
            return td_errf(c->err, c->errlen, TD_ERANGE, "%s: compress_ratios[%d] = %lld exceeds "
                           "sliding_window %d", c->label, i, r, k->window);
        k->compress_ratios[i] = (int)r;
    }
    return TD_OK;
}

/* Constraints between fields: block sizes of the quantised paths and
 * derived widths (spec §8). */
static td_err check_derived(pctx *c, const td_v4_config *k)
{
#define BAD(code, ...) td_errf(c->err, c->errlen, code, __VA_ARGS__)
    if (k->head_dim <= k->rope_dim)
        return BAD(TD_ERANGE, "%s: field \"head_dim\" (%d) must be greater than "
                   "qk_rope_head_dim (%d)", c->label, k->head_dim, k->rope_dim);
    if (k->rope_dim % 2)
        return BAD(TD_ERANGE, "%s: field \"qk_rope_head_dim\" (%d) must be even (RoPE pairs)",
                   c->label, k->rope_dim);
    if ((k->head_dim - k->rope_dim) % 64)
        return BAD(TD_ERANGE, "%s: head_dim - qk_rope_head_dim = %d nope dims must be a "
                   "multiple of 64 (FP8 KV blocks)", c->label, k->head_dim - k->rope_dim);
    int dI = k->index_head_dim;
    if (dI < 64 || (dI & (dI - 1)))
        return BAD(TD_ERANGE, "%s: field \"index_head_dim\" (%d) must be a power of two >= 64 "
                   "(Hadamard, FP4 blocks of 32)", c->label, dI);
    if (dI <= k->rope_dim)
        return BAD(TD_ERANGE, "%s: field \"index_head_dim\" (%d) must be greater than "
                   "qk_rope_head_dim (%d)", c->label, dI, k->rope_dim);
    if (k->n_heads % k->o_groups)
        return BAD(TD_ERANGE, "%s: field \"o_groups\" (%d) must divide num_attention_heads (%d)",
                   c->label, k->o_groups, k->n_heads);
    if (k->n_activated_experts > k->n_routed_experts)
        return BAD(TD_ERANGE, "%s: field \"num_experts_per_tok\" (%d) exceeds n_routed_experts "
                   "(%d)", c->label, k->n_activated_experts, k->n_routed_experts);
    if (k->n_hash_layers > k->n_layers)
        return BAD(TD_ERANGE, "%s: field \"num_hash_layers\" (%d) exceeds num_hidden_layers (%d)",
                   c->label, k->n_hash_layers, k->n_layers);
    if (k->bos_id >= k->vocab_size || k->eos_id >= k->vocab_size)
        return BAD(TD_ERANGE, "%s: bos_token_id/eos_token_id must be below vocab_size (%d)",
                   c->label, k->vocab_size);
    /* Derived widths are ints in td_weight; keep them well inside. */
    long long lim = INT_MAX / 4;
    if ((long long)k->n_heads * k->head_dim > lim ||
        (long long)k->o_groups * k->o_lora_rank > lim ||
        (long long)k->index_n_heads * k->index_head_dim > lim ||
        (long long)(2 + k->hc_mult) * k->hc_mult * k->hc_mult * k->dim > lim)
        return BAD(TD_ERANGE, "%s: derived widths (heads x head_dim, o_groups x o_lora_rank, "
                   "index heads x dim, hc_mult x hidden_size) too large", c->label);
    /* FP8 activations are quantised in blocks of 128 along the input of
     * every FP8/FP4 linear (spec §2.12). */
    struct { const char *what; long long w; int quantised; } in[] = {
        {"hidden_size", k->dim, k->dtype != TD_W_BF16 || k->expert_dtype != TD_W_BF16},
        {"q_lora_rank", k->q_lora_rank, k->dtype != TD_W_BF16},
        {"o_groups x o_lora_rank", (long long)k->o_groups * k->o_lora_rank, k->dtype != TD_W_BF16},
        {"moe_intermediate_size", k->moe_inter_dim,
         k->dtype != TD_W_BF16 || k->expert_dtype != TD_W_BF16},
    };
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++)
        if (in[i].quantised && in[i].w % 128)
            return BAD(TD_ERANGE, "%s: %s (%lld) must be a multiple of 128: it is the input "
                       "width of FP8/FP4 linears", c->label, in[i].what, in[i].w);
    return TD_OK;
#undef BAD
}

static td_err parse_root(pctx *c, json_t *root, td_v4_config *k)
{
    td_err rc;
    if (!json_is_object(root))
        return td_errf(c->err, c->errlen, TD_EFORMAT, "%s: not a JSON object", c->label);
    if ((rc = want_str(c, root, "model_type", "model_type", "deepseek_v4", 0)))
        return rc;
    const float eps_dflt = 1e-6f;
    struct { const char *key; int *out; long long min, max; } ints[] = {
        {"vocab_size", &k->vocab_size, 1, VOCAB_MAX},
        {"hidden_size", &k->dim, 1, DIM_MAX},
        {"num_hidden_layers", &k->n_layers, 1, DIM_MAX},
        {"num_attention_heads", &k->n_heads, 1, DIM_MAX},
        {"head_dim", &k->head_dim, 1, DIM_MAX},
        {"qk_rope_head_dim", &k->rope_dim, 1, DIM_MAX},
        {"q_lora_rank", &k->q_lora_rank, 1, DIM_MAX},
        {"o_groups", &k->o_groups, 1, DIM_MAX},
        {"o_lora_rank", &k->o_lora_rank, 1, DIM_MAX},
        {"sliding_window", &k->window, 1, DIM_MAX},
        {"index_n_heads", &k->index_n_heads, 1, DIM_MAX},
        {"index_head_dim", &k->index_head_dim, 1, DIM_MAX},
        {"index_topk", &k->index_topk, 1, DIM_MAX},
        {"n_routed_experts", &k->n_routed_experts, 1, DIM_MAX},
        {"num_experts_per_tok", &k->n_activated_experts, 1, DIM_MAX},
        {"n_shared_experts", &k->n_shared_experts, 1, 1},
        {"moe_intermediate_size", &k->moe_inter_dim, 1, DIM_MAX},
        {"num_hash_layers", &k->n_hash_layers, 0, DIM_MAX},
        {"hc_mult", &k->hc_mult, 1, 64},
        {"hc_sinkhorn_iters", &k->hc_sinkhorn_iters, 1, INT_MAX},
        {"max_position_embeddings", &k->max_position, 1, INT_MAX},
        {"bos_token_id", &k->bos_id, 0, INT_MAX},
        {"eos_token_id", &k->eos_id, 0, INT_MAX},
    };
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
        if ((rc = get_int(c, root, ints[i].key, ints[i].key, ints[i].min, ints[i].max,
                          ints[i].out)))
            return rc;
    /* Optional: a checkpoint without an MTP block has no entry for it. */
    if (json_object_get(root, "num_nextn_predict_layers")) {
        if ((rc = get_int(c, root, "num_nextn_predict_layers", "num_nextn_predict_layers",
                          0, 16, &k->n_mtp_layers)))
            return rc;
    } else {
        k->n_mtp_layers = 0;
    }
    if (k->n_layers + k->n_mtp_layers > TD_V4_MAX_LAYERS)
        return td_errf(c->err, c->errlen, TD_ERANGE, "%s: num_hidden_layers + "
                       "num_nextn_predict_layers = %d exceeds the supported %d", c->label,
                       k->n_layers + k->n_mtp_layers, TD_V4_MAX_LAYERS);
    if ((rc = get_num(c, root, "hc_eps", "hc_eps", 1, &eps_dflt, &k->hc_eps)) ||
        (rc = get_num(c, root, "rms_norm_eps", "rms_norm_eps", 1, &eps_dflt, &k->norm_eps)) ||
        (rc = get_num(c, root, "rope_theta", "rope_theta", 1, NULL, &k->rope_theta)) ||
        (rc = get_num(c, root, "compress_rope_theta", "compress_rope_theta", 1, NULL,
                      &k->compress_rope_theta)) ||
        (rc = get_num(c, root, "routed_scaling_factor", "routed_scaling_factor", 1, NULL,
                      &k->route_scale)) ||
        (rc = get_num(c, root, "swiglu_limit", "swiglu_limit", 1, NULL, &k->swiglu_limit)))
        return rc;

    json_t *rs = json_object_get(root, "rope_scaling");
    if (!rs)
        return td_errf(c->err, c->errlen, TD_EFORMAT, "%s: missing field \"rope_scaling\"",
                       c->label);
    if (!json_is_object(rs))
        return td_errf(c->err, c->errlen, TD_EFORMAT,
                       "%s: field \"rope_scaling\" must be an object", c->label);
    if ((rc = want_str(c, rs, "type", "rope_scaling.type", "yarn", 1)) ||
        (rc = get_num(c, rs, "factor", "rope_scaling.factor", 1, NULL, &k->rope_factor)) ||
        (rc = get_int(c, rs, "original_max_position_embeddings",
                      "rope_scaling.original_max_position_embeddings", 1, INT_MAX,
                      &k->original_seq_len)) ||
        (rc = get_num(c, rs, "beta_fast", "rope_scaling.beta_fast", 1, NULL, &k->beta_fast)) ||
        (rc = get_num(c, rs, "beta_slow", "rope_scaling.beta_slow", 1, NULL, &k->beta_slow)))
        return rc;

    if ((rc = want_str(c, root, "scoring_func", "scoring_func", "sqrtsoftplus", 0)) ||
        (rc = want_str(c, root, "topk_method", "topk_method", "noaux_tc", 1)) ||
        (rc = want_str(c, root, "hidden_act", "hidden_act", "silu", 1)) ||
        (rc = want_bool(c, root, "tie_word_embeddings", 0)) ||
        (rc = want_bool(c, root, "attention_bias", 0)))
        return rc;
    json_t *kvh = json_object_get(root, "num_key_value_heads");
    if (kvh && (!json_is_integer(kvh) || json_integer_value(kvh) != 1))
        return td_errf(c->err, c->errlen, TD_EFORMAT,
                       "%s: field \"num_key_value_heads\" must be 1 (one shared K=V head)",
                       c->label);

    if ((rc = parse_quant(c, root, &k->dtype)) ||
        (rc = parse_expert_dtype(c, root, k->dtype, &k->expert_dtype)) ||
        (rc = parse_ratios(c, root, k)))
        return rc;
    return check_derived(c, k);
}

static td_err parse_labeled(td_v4_config *cfg, const char *json, size_t len,
                            const char *label, char *err, size_t errlen)
{
    pctx c = {label, err, errlen};
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return td_errf(err, errlen, TD_ECORRUPT, "%s: not valid JSON: %s (line %d, column %d)",
                       label, jerr.text, jerr.line, jerr.column);
    /* Parse into a scratch copy: on error *cfg is left unchanged. */
    td_v4_config *k = calloc(1, sizeof(*k));
    if (!k) {
        json_decref(root);
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    }
    td_err rc = parse_root(&c, root, k);
    if (!rc)
        *cfg = *k;
    free(k);
    json_decref(root);
    return rc;
}

td_err td_v4_config_parse(td_v4_config *cfg, const char *json, size_t len,
                          char *err, size_t errlen)
{
    return parse_labeled(cfg, json, len, "config.json", err, errlen);
}

td_err td_v4_config_load(td_v4_config *cfg, const char *path, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    td_err rc = td_file_read(path, &text, &len, err, errlen);
    if (rc)
        return rc;
    rc = parse_labeled(cfg, text, len, path, err, errlen);
    free(text);
    return rc;
}
