/* td_v4_weights_load: a valid tiny model loads and binds; each kind of
 * broken input (config or checkpoint) fails with its own code and a message
 * naming the problem. The broken inputs start from models/tiny-v4 when it
 * exists (the independently generated tiny model), otherwise from a model
 * generated here, and change one thing. */
#include <jansson.h>
#include <unistd.h>

#include "model/weights.h"
#include "tests/td_test.h"
#include "loader_test_util.h"

static char tiny_dir[1024];

static const char *src_root(void)
{
    const char *r = getenv("TD_SOURCE_ROOT");
    return r && *r ? r : ".";
}

static int have_tiny_v4(void)
{
    char p[1100];
    snprintf(tiny_dir, sizeof(tiny_dir), "%s/models/tiny-v4", src_root());
    snprintf(p, sizeof(p), "%s/model.safetensors", tiny_dir);
    if (access(p, R_OK))
        return 0;
    snprintf(p, sizeof(p), "%s/config.json", tiny_dir);
    return access(p, R_OK) == 0;
}

/* The base for corruption tests: config text + tensors. */
typedef struct {
    char *config;
    td_v4_config cfg;
    tw_list l;
} base_model;

static int base_load(base_model *b)
{
    char err[512], p[1100];
    memset(b, 0, sizeof(*b));
    if (have_tiny_v4()) {
        snprintf(p, sizeof(p), "%s/config.json", tiny_dir);
        b->config = tw_read_text(p);
        snprintf(p, sizeof(p), "%s/model.safetensors", tiny_dir);
        if (!b->config || tw_read(&b->l, p))
            return -1;
    } else {
        b->config = strdup(tw_tiny_fp8_config);
    }
    if (td_v4_config_parse(&b->cfg, b->config, strlen(b->config), err, sizeof(err))) {
        fprintf(stderr, "base config: %s\n", err);
        return -1;
    }
    if (!b->l.n)
        tw_model(&b->l, &b->cfg);
    return 0;
}

static void base_free(base_model *b)
{
    free(b->config);
    tw_free(&b->l);
}

/* Writes config + one model.safetensors into a fresh temp dir and loads it. */
static td_err try_load(const char *config, const tw_list *l, char *err, size_t errlen,
                       td_v4_weights **out)
{
    char dir[512], p[600];
    tw_mkdtemp(dir, sizeof(dir));
    snprintf(p, sizeof(p), "%s/model.safetensors", dir);
    TD_CHECK(tw_write_text(dir, "config.json", config) == 0);
    TD_CHECK(tw_write(l, p) == 0);
    td_v4_weights *w = NULL;
    err[0] = '\0';
    td_err rc = td_v4_weights_load(&w, dir, err, errlen);
    if (out)
        *out = w;
    else
        td_v4_weights_destroy(w);
    if (rc)
        TD_CHECK(w == NULL);
    tw_rmdir(dir);
    return rc;
}

static int contains(const char *s, const char *sub)
{
    if (!strstr(s, sub)) {
        fprintf(stderr, "message \"%s\" lacks \"%s\"\n", s, sub);
        return 0;
    }
    return 1;
}

/* ---- valid models -------------------------------------------------------- */

static void test_generated_fp8(void)
{
    char err[512];
    td_v4_config c;
    TD_CHECK_EQ_INT(td_v4_config_parse(&c, tw_tiny_fp8_config, strlen(tw_tiny_fp8_config),
                                       err, sizeof(err)), TD_OK);
    tw_list l = {0};
    tw_model(&l, &c);
    /* Known wo_a bytes in layer 0 to check the bf16 dequantisation:
     * tile (0,0) scale 2^1, tile (0,1) scale 2^-1. */
    tw_tensor *q = tw_find(&l, "layers.0.attn.wo_a.weight");
    tw_tensor *s = tw_find(&l, "layers.0.attn.wo_a.scale");
    TD_CHECK(q && s && q->shape[1] == 256 && s->shape[1] == 2);
    q->data[0] = 0x38;      /* 1.0   -> 2.0    = bf16 0x4000 */
    q->data[1] = 0x01;      /* 2^-9  -> 2^-8   = bf16 0x3b80 */
    q->data[2] = 0xb9;      /* -1.125 -> -2.25 = bf16 0xc010 */
    q->data[128] = 0x40;    /* 2.0   -> 1.0    = bf16 0x3f80 */
    s->data[0] = 128;
    s->data[1] = 126;

    td_v4_weights *w;
    td_err rc = try_load(tw_tiny_fp8_config, &l, err, sizeof(err), &w);
    if (rc)
        fprintf(stderr, "load: %s\n", err);
    TD_CHECK_EQ_INT(rc, TD_OK);
    tw_free(&l);
    if (rc)
        return;
    TD_CHECK_EQ_INT(w->cfg.n_layers, 3);
    TD_CHECK(w->embed && w->norm && w->head.data && w->hc_head.fn);
    TD_CHECK_EQ_INT(w->head.type, TD_W_BF16);
    const td_v4_layer *L0 = &w->layers[0], *L1 = &w->layers[1], *L2 = &w->layers[2];
    TD_CHECK(L0->hash && L0->tid2eid && !L0->gate_bias && L0->ratio == 0);
    TD_CHECK(L1->hash && L1->tid2eid && L1->ratio == 4 && L1->idx_wq_b.data);
    TD_CHECK(L1->compressor.overlap == 1 && L1->compressor.d == 128);
    TD_CHECK(L1->idx_compressor.d == 128 && L1->idx_compressor.ratio == 4);
    TD_CHECK(!L2->hash && L2->gate_bias && !L2->tid2eid && L2->ratio == 16);
    TD_CHECK(L2->compressor.overlap == 0 && L2->compressor.wkv.n == 128);
    TD_CHECK(!L2->idx_wq_b.data && !L0->compressor.ape);
    TD_CHECK_EQ_INT(L0->wq_a.type, TD_W_FP8);
    TD_CHECK(L0->wq_a.scale != NULL);
    TD_CHECK_EQ_INT(L0->experts[3].w2.type, TD_W_FP4);
    TD_CHECK_EQ_INT(L0->experts[3].w2.n, 128);
    TD_CHECK_EQ_INT(L0->experts[3].w2.k, 128);
    TD_CHECK(L0->experts[3].w2.scale != NULL);
    TD_CHECK_EQ_INT(L0->shared.w1.type, TD_W_FP8);
    TD_CHECK_EQ_INT(L0->wo_a.type, TD_W_BF16);
    TD_CHECK(L0->wo_a.scale == NULL);
    TD_CHECK_EQ_INT(L0->wo_a.n, 128);
    TD_CHECK_EQ_INT(L0->wo_a.k, 256);
    const uint16_t *wo = L0->wo_a.data;
    TD_CHECK_EQ_INT(wo[0], 0x4000);
    TD_CHECK_EQ_INT(wo[1], 0x3b80);
    TD_CHECK_EQ_INT(wo[2], 0xc010);
    TD_CHECK_EQ_INT(wo[128], 0x3f80);
    TD_CHECK_EQ_INT(w->n_owned, 4);          /* 3 layers + MTP */
    TD_CHECK(w->mtp && w->mtp[0].block.gate_bias && !w->mtp[0].block.hash);
    TD_CHECK(w->mtp[0].e_proj.data && w->mtp[0].hc_head.scale && w->mtp[0].enorm);
    TD_CHECK_EQ_INT(w->mtp[0].block.ratio, 0);
    td_v4_weights_destroy(w);
}

static void test_generated_bf16(void)
{
    char err[512];
    td_v4_config c;
    TD_CHECK_EQ_INT(td_v4_config_parse(&c, tw_tiny_bf16_config, strlen(tw_tiny_bf16_config),
                                       err, sizeof(err)), TD_OK);
    TD_CHECK_EQ_INT(c.dtype, TD_W_BF16);
    TD_CHECK_EQ_INT(c.expert_dtype, TD_W_BF16);
    tw_list l = {0};
    tw_model(&l, &c);
    td_v4_weights *w;
    td_err rc = try_load(tw_tiny_bf16_config, &l, err, sizeof(err), &w);
    if (rc)
        fprintf(stderr, "load: %s\n", err);
    TD_CHECK_EQ_INT(rc, TD_OK);
    tw_free(&l);
    if (rc)
        return;
    TD_CHECK_EQ_INT(w->layers[0].wq_a.type, TD_W_BF16);
    TD_CHECK(w->layers[0].wq_a.scale == NULL);
    TD_CHECK_EQ_INT(w->layers[0].experts[2].w1.type, TD_W_BF16);
    TD_CHECK_EQ_INT(w->layers[1].ratio, 8);
    TD_CHECK_EQ_INT(w->n_owned, 0);           /* wo_a bound in place */
    TD_CHECK_EQ_INT(w->layers[0].wo_a.k, 256);
    td_v4_weights_destroy(w);
}

static void test_tiny_v4(void)
{
    if (!have_tiny_v4())
        TD_SKIP("models/tiny-v4 not present");
    char err[512];
    td_v4_weights *w = NULL;
    td_err rc = td_v4_weights_load(&w, tiny_dir, err, sizeof(err));
    if (rc)
        fprintf(stderr, "%s: %s\n", tiny_dir, err);
    TD_CHECK_EQ_INT(rc, TD_OK);
    if (rc)
        return;
    const td_v4_config *c = &w->cfg;
    for (int i = 0; i < c->n_layers; i++) {
        const td_v4_layer *ly = &w->layers[i];
        TD_CHECK_EQ_INT(ly->ratio, c->compress_ratios[i]);
        TD_CHECK_EQ_INT(ly->hash, i < c->n_hash_layers);
        TD_CHECK((ly->tid2eid != NULL) == (i < c->n_hash_layers));
        TD_CHECK((ly->compressor.ape != NULL) == (ly->ratio > 0));
        TD_CHECK((ly->idx_wq_b.data != NULL) == (ly->ratio == 4));
        TD_CHECK_EQ_INT(ly->wo_a.type, TD_W_BF16);
    }
    TD_CHECK_EQ_INT(w->n_owned, c->dtype == TD_W_FP8 ? c->n_layers + c->n_mtp_layers : 0);
    td_v4_weights_destroy(w);
}

/* The MTP block's embed/head copies are tolerated (convert.py skips them). */
static void test_mtp_extras_tolerated(void)
{
    base_model b;
    TD_CHECK(base_load(&b) == 0);
    tw_fill(tw_add(&b.l, "BF16", TW_SHAPE(b.cfg.vocab_size, b.cfg.dim), "mtp.0.embed.weight"));
    char err[512];
    TD_CHECK_EQ_INT(try_load(b.config, &b.l, err, sizeof(err), NULL), TD_OK);
    base_free(&b);
}

/* ---- broken checkpoints -------------------------------------------------- */

static void test_missing_tensor(void)
{
    base_model b;
    TD_CHECK(base_load(&b) == 0);
    char name[128], want[160], err[512];
    snprintf(name, sizeof(name), "layers.%d.ffn.gate.bias", b.cfg.n_layers - 1);
    TD_CHECK(tw_remove(&b.l, name) == 0);
    TD_CHECK_EQ_INT(try_load(b.config, &b.l, err, sizeof(err), NULL), TD_ENOENT);
    snprintf(want, sizeof(want), "missing tensor %s", name);
    TD_CHECK_STR(err, want);
    base_free(&b);
}

static void test_misshaped_tensor(void)
{
    base_model b;
    TD_CHECK(base_load(&b) == 0);
    tw_tensor *t = tw_find(&b.l, "layers.1.attn.wkv.weight");
    TD_CHECK(t != NULL);
    if (!t)
        return;
    t->shape[1] = 2 * b.cfg.dim;
    tw_size(t);
    char want[160], err[512];
    snprintf(want, sizeof(want), "layers.1.attn.wkv.weight: shape [%d, %d] expected [%d, %d]",
             b.cfg.head_dim, 2 * b.cfg.dim, b.cfg.head_dim, b.cfg.dim);
    TD_CHECK_EQ_INT(try_load(b.config, &b.l, err, sizeof(err), NULL), TD_ESHAPE);
    TD_CHECK_STR(err, want);
    base_free(&b);
}

static void test_wrong_dtype(void)
{
    base_model b;
    TD_CHECK(base_load(&b) == 0);
    tw_tensor *t = tw_find(&b.l, "layers.0.attn_norm.weight");
    TD_CHECK(t != NULL);
    if (!t)
        return;
    snprintf(t->dtype, sizeof(t->dtype), "F32");
    tw_size(t);
    char err[512];
    TD_CHECK_EQ_INT(try_load(b.config, &b.l, err, sizeof(err), NULL), TD_ESHAPE);
    TD_CHECK_STR(err, "layers.0.attn_norm.weight: dtype F32 expected BF16");
    base_free(&b);

    /* packed FP4 expert weight written as e4m3 bytes */
    TD_CHECK(base_load(&b) == 0);
    t = tw_find(&b.l, "layers.1.ffn.experts.1.w2.weight");
    TD_CHECK(t != NULL);
    if (!t)
        return;
    snprintf(t->dtype, sizeof(t->dtype), "F8_E4M3");
    TD_CHECK_EQ_INT(try_load(b.config, &b.l, err, sizeof(err), NULL), TD_ESHAPE);
    TD_CHECK_STR(err, "layers.1.ffn.experts.1.w2.weight: dtype F8_E4M3 expected I8");
    base_free(&b);
}

static void test_tid2eid_out_of_range(void)
{
    base_model b;
    TD_CHECK(base_load(&b) == 0);
    tw_tensor *t = tw_find(&b.l, "layers.0.ffn.gate.tid2eid");
    TD_CHECK(t != NULL);
    if (!t)
        return;
    ((int64_t *)t->data)[3 * b.cfg.n_activated_experts + 1] = b.cfg.n_routed_experts;
    char err[512];
    TD_CHECK_EQ_INT(try_load(b.config, &b.l, err, sizeof(err), NULL), TD_ERANGE);
    TD_CHECK(contains(err, "layers.0.ffn.gate.tid2eid: entry [3][1]"));
    ((int64_t *)t->data)[3 * b.cfg.n_activated_experts + 1] = -1;
    TD_CHECK_EQ_INT(try_load(b.config, &b.l, err, sizeof(err), NULL), TD_ERANGE);
    base_free(&b);
}

/* A compressor in a window-only layer means config and checkpoint disagree. */
static void test_unexpected_tensor(void)
{
    base_model b;
    TD_CHECK(base_load(&b) == 0);
    tw_fill(tw_add(&b.l, "F32", TW_SHAPE(4, 256), "layers.0.attn.compressor.ape"));
    char err[512];
    TD_CHECK_EQ_INT(try_load(b.config, &b.l, err, sizeof(err), NULL), TD_ECORRUPT);
    TD_CHECK(contains(err, "unexpected tensor layers.0.attn.compressor.ape"));
    base_free(&b);
}

static void test_unknown_dtype(void)
{
    base_model b;
    TD_CHECK(base_load(&b) == 0);
    tw_tensor *t = tw_find(&b.l, "layers.0.attn.kv_norm.weight");
    snprintf(t->dtype, sizeof(t->dtype), "F9");
    char err[512];
    TD_CHECK_EQ_INT(try_load(b.config, &b.l, err, sizeof(err), NULL), TD_EFORMAT);
    TD_CHECK(contains(err, "tensor \"layers.0.attn.kv_norm.weight\": unknown dtype \"F9\""));
    base_free(&b);
}

static void test_offsets_out_of_range(void)
{
    base_model b;
    TD_CHECK(base_load(&b) == 0);
    tw_tensor *t = tw_find(&b.l, "norm.weight");
    t->has_offsets = 1;
    t->off[0] = (int64_t)1 << 40;
    t->off[1] = t->off[0] + (int64_t)t->nbytes;
    char err[512];
    TD_CHECK_EQ_INT(try_load(b.config, &b.l, err, sizeof(err), NULL), TD_ECORRUPT);
    TD_CHECK(contains(err, "tensor \"norm.weight\": data_offsets [1099511627776, "));
    TD_CHECK(contains(err, "beyond the data section"));
    /* In range but not what dtype x shape needs. */
    t->off[0] = 0;
    t->off[1] = (int64_t)t->nbytes - 2;
    TD_CHECK_EQ_INT(try_load(b.config, &b.l, err, sizeof(err), NULL), TD_ECORRUPT);
    TD_CHECK(contains(err, "tensor \"norm.weight\": data_offsets"));
    base_free(&b);
}

/* Writes the base model, then damages the file with `how`. */
static td_err load_damaged(base_model *b, int how, char *err, size_t errlen)
{
    char dir[512], p[600];
    tw_mkdtemp(dir, sizeof(dir));
    snprintf(p, sizeof(p), "%s/model.safetensors", dir);
    TD_CHECK(tw_write_text(dir, "config.json", b->config) == 0);
    TD_CHECK(tw_write(&b->l, p) == 0);
    struct stat sb;
    TD_CHECK(stat(p, &sb) == 0);
    if (how == 0) {
        TD_CHECK(truncate(p, sb.st_size / 2) == 0);          /* cut in the data */
    } else if (how == 1) {
        TD_CHECK(truncate(p, 5) == 0);                       /* cut in the length */
    } else {
        FILE *f = fopen(p, "r+b");                           /* length past EOF */
        uint64_t n = (uint64_t)sb.st_size + 100;
        unsigned char b8[8];
        for (int i = 0; i < 8; i++)
            b8[i] = (unsigned char)(n >> (8 * i));
        fwrite(b8, 1, 8, f);
        fclose(f);
    }
    td_v4_weights *w = NULL;
    td_err rc = td_v4_weights_load(&w, dir, err, errlen);
    TD_CHECK(w == NULL);
    tw_rmdir(dir);
    return rc;
}

static void test_truncated_file(void)
{
    base_model b;
    TD_CHECK(base_load(&b) == 0);
    char err[512];
    TD_CHECK_EQ_INT(load_damaged(&b, 0, err, sizeof(err)), TD_ECORRUPT);
    TD_CHECK(contains(err, "beyond the data section"));
    TD_CHECK(contains(err, "file truncated?"));
    TD_CHECK_EQ_INT(load_damaged(&b, 1, err, sizeof(err)), TD_ECORRUPT);
    TD_CHECK(contains(err, "truncated file (5 bytes"));
    base_free(&b);
}

static void test_header_length_beyond_file(void)
{
    base_model b;
    TD_CHECK(base_load(&b) == 0);
    char err[512];
    TD_CHECK_EQ_INT(load_damaged(&b, 2, err, sizeof(err)), TD_ECORRUPT);
    TD_CHECK(contains(err, "model.safetensors: header length"));
    TD_CHECK(contains(err, "beyond the end of the file"));
    base_free(&b);
}

/* ---- broken configs ------------------------------------------------------ */

/* Base config with key set to value (NULL: removed). */
static char *config_with(const char *text, const char *key, json_t *value)
{
    json_t *root = json_loads(text, 0, NULL);
    if (value)
        json_object_set_new(root, key, value);
    else
        json_object_del(root, key);
    char *s = json_dumps(root, 0);
    json_decref(root);
    return s;
}

static void test_config_errors(void)
{
    base_model b;
    TD_CHECK(base_load(&b) == 0);
    char err[512];
    TD_CHECK_EQ_INT(try_load("{\"model_type\": \"deepseek_v4\",", &b.l, err, sizeof(err), NULL),
                    TD_ECORRUPT);
    TD_CHECK(contains(err, "config.json: not valid JSON"));

    char *s = config_with(b.config, "hidden_size", NULL);
    TD_CHECK_EQ_INT(try_load(s, &b.l, err, sizeof(err), NULL), TD_EFORMAT);
    TD_CHECK(contains(err, "config.json: missing field \"hidden_size\""));
    free(s);

    s = config_with(b.config, "hidden_size", json_string("128"));
    TD_CHECK_EQ_INT(try_load(s, &b.l, err, sizeof(err), NULL), TD_EFORMAT);
    TD_CHECK(contains(err, "config.json: field \"hidden_size\" must be a positive integer"));
    free(s);

    /* A config that disagrees with the checkpoint names the first tensor. */
    s = config_with(b.config, "num_hash_layers", json_integer(0));
    TD_CHECK_EQ_INT(try_load(s, &b.l, err, sizeof(err), NULL), TD_ENOENT);
    TD_CHECK(contains(err, "missing tensor layers.0.ffn.gate.bias"));
    free(s);
    base_free(&b);
}

static void test_no_checkpoint(void)
{
    char dir[512], err[512];
    tw_mkdtemp(dir, sizeof(dir));
    TD_CHECK(tw_write_text(dir, "config.json", tw_tiny_fp8_config) == 0);
    td_v4_weights *w = NULL;
    TD_CHECK_EQ_INT(td_v4_weights_load(&w, dir, err, sizeof(err)), TD_ENOENT);
    TD_CHECK(contains(err, "neither model.safetensors nor model.safetensors.index.json"));
    TD_CHECK(w == NULL);
    tw_rmdir(dir);
    tw_mkdtemp(dir, sizeof(dir));
    TD_CHECK_EQ_INT(td_v4_weights_load(&w, dir, err, sizeof(err)), TD_ENOENT);
    TD_CHECK(contains(err, "config.json"));
    tw_rmdir(dir);
}

/* ---- sharded checkpoints ------------------------------------------------- */

static void write_index(const char *dir, const tw_list *l, int split, const char *second)
{
    size_t cap = 256 + (size_t)l->n * 256, len = 0;
    char *s = malloc(cap);
    len += (size_t)snprintf(s, cap, "{\"metadata\":{\"total_size\":0},\"weight_map\":{");
    for (int i = 0; i < l->n; i++)
        len += (size_t)snprintf(s + len, cap - len, "%s\"%s\":\"%s\"", i ? "," : "",
                                l->v[i].name,
                                i < split ? "model-00001-of-00002.safetensors" : second);
    snprintf(s + len, cap - len, "}}");
    tw_write_text(dir, "model.safetensors.index.json", s);
    free(s);
}

static void test_sharded(void)
{
    base_model b;
    TD_CHECK(base_load(&b) == 0);
    char dir[512], p[600], err[512];
    tw_mkdtemp(dir, sizeof(dir));
    int split = b.l.n / 2;
    TD_CHECK(tw_write_text(dir, "config.json", b.config) == 0);
    snprintf(p, sizeof(p), "%s/model-00001-of-00002.safetensors", dir);
    TD_CHECK(tw_write_range(&b.l, 0, split, p) == 0);
    snprintf(p, sizeof(p), "%s/model-00002-of-00002.safetensors", dir);
    TD_CHECK(tw_write_range(&b.l, split, b.l.n, p) == 0);

    write_index(dir, &b.l, split, "model-00002-of-00002.safetensors");
    td_v4_weights *w = NULL;
    td_err rc = td_v4_weights_load(&w, dir, err, sizeof(err));
    if (rc)
        fprintf(stderr, "sharded: %s\n", err);
    TD_CHECK_EQ_INT(rc, TD_OK);
    td_v4_weights_destroy(w);

    /* The index names the wrong shard for the second half. */
    write_index(dir, &b.l, b.l.n - 1, "model-00002-of-00002.safetensors");
    TD_CHECK_EQ_INT(td_v4_weights_load(&w, dir, err, sizeof(err)), TD_ECORRUPT);
    TD_CHECK(contains(err, "is listed in model-00001-of-00002.safetensors but not there"));

    /* A shard name may not leave the model directory. */
    write_index(dir, &b.l, split, "../model-00002-of-00002.safetensors");
    TD_CHECK_EQ_INT(td_v4_weights_load(&w, dir, err, sizeof(err)), TD_ECORRUPT);
    TD_CHECK(contains(err, "must be a file name in the model directory"));

    /* A shard that is not there. */
    write_index(dir, &b.l, split, "model-00003-of-00002.safetensors");
    TD_CHECK_EQ_INT(td_v4_weights_load(&w, dir, err, sizeof(err)), TD_ENOENT);
    TD_CHECK(contains(err, "model-00003-of-00002.safetensors"));
    tw_rmdir(dir);
    base_free(&b);
}

TD_TEST_MAIN({"generated_fp8", test_generated_fp8},
             {"generated_bf16", test_generated_bf16},
             {"tiny_v4", test_tiny_v4},
             {"mtp_extras_tolerated", test_mtp_extras_tolerated},
             {"missing_tensor", test_missing_tensor},
             {"misshaped_tensor", test_misshaped_tensor},
             {"wrong_dtype", test_wrong_dtype},
             {"tid2eid_out_of_range", test_tid2eid_out_of_range},
             {"unexpected_tensor", test_unexpected_tensor},
             {"unknown_dtype", test_unknown_dtype},
             {"offsets_out_of_range", test_offsets_out_of_range},
             {"truncated_file", test_truncated_file},
             {"header_length_beyond_file", test_header_length_beyond_file},
             {"config_errors", test_config_errors},
             {"no_checkpoint", test_no_checkpoint},
             {"sharded", test_sharded})
