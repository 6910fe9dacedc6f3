/* config.json parsing: the official V4-Flash config, the tiny configs, and
 * one test per kind of rejected input (message and code). */
#include <jansson.h>

#include "model/config.h"
#include "tests/td_test.h"
#include "loader_test_util.h"

static char flash_path[1024];

static const char *flash(void)
{
    const char *r = getenv("TD_SOURCE_ROOT");
    snprintf(flash_path, sizeof(flash_path), "%s/tests/data/configs/deepseek-v4-flash.config.json",
             r && *r ? r : ".");
    return flash_path;
}

static void test_flash(void)
{
    td_v4_config c;
    char err[512];
    td_err rc = td_v4_config_load(&c, flash(), err, sizeof(err));
    if (rc)
        fprintf(stderr, "%s\n", err);
    TD_CHECK_EQ_INT(rc, TD_OK);
    if (rc)
        return;
    TD_CHECK_EQ_INT(c.vocab_size, 129280);
    TD_CHECK_EQ_INT(c.dim, 4096);
    TD_CHECK_EQ_INT(c.n_layers, 43);
    TD_CHECK_EQ_INT(c.n_mtp_layers, 1);
    TD_CHECK_EQ_INT(c.n_heads, 64);
    TD_CHECK_EQ_INT(c.head_dim, 512);
    TD_CHECK_EQ_INT(c.rope_dim, 64);
    TD_CHECK_EQ_INT(c.q_lora_rank, 1024);
    TD_CHECK_EQ_INT(c.o_groups, 8);
    TD_CHECK_EQ_INT(c.o_lora_rank, 1024);
    TD_CHECK_EQ_INT(c.window, 128);
    TD_CHECK_EQ_INT(c.index_n_heads, 64);
    TD_CHECK_EQ_INT(c.index_head_dim, 128);
    TD_CHECK_EQ_INT(c.index_topk, 512);
    TD_CHECK_EQ_INT(c.n_routed_experts, 256);
    TD_CHECK_EQ_INT(c.n_activated_experts, 6);
    TD_CHECK_EQ_INT(c.n_shared_experts, 1);
    TD_CHECK_EQ_INT(c.moe_inter_dim, 2048);
    TD_CHECK_EQ_INT(c.n_hash_layers, 3);
    TD_CHECK_EQ_INT(c.hc_mult, 4);
    TD_CHECK_EQ_INT(c.hc_sinkhorn_iters, 20);
    TD_CHECK(c.hc_eps == 1e-6f && c.norm_eps == 1e-6f);
    TD_CHECK(c.rope_theta == 10000.0f && c.compress_rope_theta == 160000.0f);
    TD_CHECK(c.rope_factor == 16.0f && c.beta_fast == 32.0f && c.beta_slow == 1.0f);
    TD_CHECK_EQ_INT(c.original_seq_len, 65536);
    TD_CHECK(c.route_scale == 1.5f && c.swiglu_limit == 10.0f);
    TD_CHECK_EQ_INT(c.max_position, 1048576);
    TD_CHECK_EQ_INT(c.bos_id, 0);
    TD_CHECK_EQ_INT(c.eos_id, 1);
    TD_CHECK_EQ_INT(c.dtype, TD_W_FP8);
    TD_CHECK_EQ_INT(c.expert_dtype, TD_W_FP4);
    TD_CHECK_EQ_INT(c.n_ratios, 44);
    int csa = 0, hca = 0, win = 0;
    for (int i = 0; i < 43; i++)
        csa += c.compress_ratios[i] == 4, hca += c.compress_ratios[i] == 128,
            win += c.compress_ratios[i] == 0;
    TD_CHECK(csa == 21 && hca == 20 && win == 2);
    TD_CHECK_EQ_INT(c.compress_ratios[43], 0);
}

static void test_tiny(void)
{
    td_v4_config c;
    char err[512];
    TD_CHECK_EQ_INT(td_v4_config_parse(&c, tw_tiny_fp8_config, strlen(tw_tiny_fp8_config), err,
                                       sizeof(err)), TD_OK);
    TD_CHECK_EQ_INT(c.n_ratios, 4);
    TD_CHECK_EQ_INT(c.compress_ratios[2], 16);
    TD_CHECK_EQ_INT(c.dtype, TD_W_FP8);
    TD_CHECK_EQ_INT(td_v4_config_parse(&c, tw_tiny_bf16_config, strlen(tw_tiny_bf16_config), err,
                                       sizeof(err)), TD_OK);
    TD_CHECK_EQ_INT(c.dtype, TD_W_BF16);
    TD_CHECK_EQ_INT(c.expert_dtype, TD_W_BF16);
    TD_CHECK(c.hc_eps == 1e-6f);   /* default when absent */
}

/* Flash with one edit: key (a.b for one level of nesting) set to the JSON
 * text `value`, or removed when value is NULL. Returns the parse result. */
static td_err edited(const char *key, const char *value, char *err, size_t errlen)
{
    json_t *root = json_load_file(flash(), 0, NULL);
    json_t *obj = root;
    char k[128];
    snprintf(k, sizeof(k), "%s", key);
    char *dot = strchr(k, '.');
    if (dot) {
        *dot = '\0';
        obj = json_object_get(root, k);
        memmove(k, dot + 1, strlen(dot + 1) + 1);
    }
    if (value)
        json_object_set_new(obj, k, json_loads(value, JSON_DECODE_ANY, NULL));
    else
        json_object_del(obj, k);
    char *s = json_dumps(root, 0);
    json_decref(root);
    td_v4_config c;
    memset(&c, 0x5a, sizeof(c));
    err[0] = '\0';
    td_err rc = td_v4_config_parse(&c, s, strlen(s), err, errlen);
    free(s);
    if (rc) {   /* on error the struct is untouched */
        const unsigned char *p = (const unsigned char *)&c;
        int same = 1;
        for (size_t i = 0; i < sizeof(c); i++)
            same &= p[i] == 0x5a;
        TD_CHECK(same);
    }
    return rc;
}

#define EXPECT(key, value, code, msg)                                        \
    do {                                                                     \
        char e_[512];                                                        \
        TD_CHECK_EQ_INT(edited(key, value, e_, sizeof(e_)), code);           \
        if (!strstr(e_, msg)) {                                              \
            fprintf(stderr, "%s=%s: \"%s\" lacks \"%s\"\n", key,             \
                    value ? value : "(removed)", e_, msg);                   \
            td_test_failures++;                                              \
        }                                                                    \
    } while (0)

static void test_bad_json(void)
{
    td_v4_config c;
    char err[512];
    const char *bad = "{\"model_type\": \"deepseek_v4\", \"hidden_size\": 4096,,}";
    TD_CHECK_EQ_INT(td_v4_config_parse(&c, bad, strlen(bad), err, sizeof(err)), TD_ECORRUPT);
    TD_CHECK(strstr(err, "config.json: not valid JSON") != NULL);
    TD_CHECK(strstr(err, "line 1") != NULL);
    TD_CHECK_EQ_INT(td_v4_config_parse(&c, "", 0, err, sizeof(err)), TD_ECORRUPT);
    TD_CHECK_EQ_INT(td_v4_config_parse(&c, "[]", 2, err, sizeof(err)), TD_EFORMAT);
    TD_CHECK_EQ_INT(td_v4_config_load(&c, "/nonexistent/config.json", err, sizeof(err)),
                    TD_ENOENT);
}

static void test_missing_field(void)
{
    EXPECT("hidden_size", NULL, TD_EFORMAT, "config.json: missing field \"hidden_size\"");
    EXPECT("compress_ratios", NULL, TD_EFORMAT, "missing field \"compress_ratios\"");
    EXPECT("rope_scaling.beta_fast", NULL, TD_EFORMAT,
           "missing field \"rope_scaling.beta_fast\"");
    EXPECT("scoring_func", NULL, TD_EFORMAT, "missing field \"scoring_func\"");
    EXPECT("model_type", NULL, TD_EFORMAT, "missing field \"model_type\"");
    TD_CHECK_EQ_INT(edited("topk_method", NULL, (char[512]){0}, 512), TD_OK);  /* optional */
}

static void test_wrong_type(void)
{
    EXPECT("hidden_size", "\"4096\"", TD_EFORMAT,
           "config.json: field \"hidden_size\" must be a positive integer");
    EXPECT("hidden_size", "4096.0", TD_EFORMAT, "field \"hidden_size\" must be a positive integer");
    EXPECT("num_hash_layers", "true", TD_EFORMAT,
           "field \"num_hash_layers\" must be a non-negative integer");
    EXPECT("rope_theta", "\"10000\"", TD_EFORMAT, "field \"rope_theta\" must be a positive number");
    EXPECT("compress_ratios", "[0, \"4\"]", TD_EFORMAT, "field \"compress_ratios\" must be an array");
    EXPECT("rope_scaling", "16", TD_EFORMAT, "field \"rope_scaling\" must be an object");
    EXPECT("scoring_func", "1", TD_EFORMAT, "field \"scoring_func\" must be a string");
    EXPECT("quantization_config", "[]", TD_EFORMAT, "\"quantization_config\" must be an object");
}

static void test_ranges(void)
{
    EXPECT("hidden_size", "0", TD_ERANGE, "field \"hidden_size\" must be a positive integer (got 0)");
    EXPECT("hidden_size", "-4096", TD_ERANGE, "field \"hidden_size\"");
    EXPECT("vocab_size", "99999999999", TD_ERANGE, "field \"vocab_size\" = 99999999999 is above");
    EXPECT("head_dim", "64", TD_ERANGE, "\"head_dim\" (64) must be greater than qk_rope_head_dim (64)");
    EXPECT("head_dim", "480", TD_ERANGE, "416 nope dims must be a multiple of 64");
    EXPECT("index_head_dim", "96", TD_ERANGE, "\"index_head_dim\" (96) must be a power of two");
    EXPECT("index_head_dim", "32", TD_ERANGE, "\"index_head_dim\" (32) must be a power of two >= 64");
    EXPECT("hc_mult", "0", TD_ERANGE, "field \"hc_mult\" must be a positive integer");
    EXPECT("n_shared_experts", "2", TD_ERANGE, "field \"n_shared_experts\" must be 1 (got 2)");
    EXPECT("num_experts_per_tok", "300", TD_ERANGE, "\"num_experts_per_tok\" (300) exceeds");
    EXPECT("num_hash_layers", "44", TD_ERANGE, "\"num_hash_layers\" (44) exceeds");
    EXPECT("o_groups", "7", TD_ERANGE, "\"o_groups\" (7) must divide");
    EXPECT("hidden_size", "4000", TD_ERANGE, "hidden_size (4000) must be a multiple of 128");
    EXPECT("q_lora_rank", "1000", TD_ERANGE, "q_lora_rank (1000) must be a multiple of 128");
    EXPECT("moe_intermediate_size", "2000", TD_ERANGE, "moe_intermediate_size (2000) must be a multiple");
    EXPECT("compress_ratios", "[0, 4]", TD_ERANGE, "\"compress_ratios\" has 2 entries");
    EXPECT("num_nextn_predict_layers", "0", TD_ERANGE, "\"compress_ratios\" has 44 entries");
    EXPECT("eos_token_id", "129280", TD_ERANGE, "must be below vocab_size");
    EXPECT("rms_norm_eps", "0", TD_ERANGE, "\"rms_norm_eps\" must be a positive number");
    EXPECT("num_hidden_layers", "200", TD_ERANGE, "exceeds the supported 128");
    EXPECT("sliding_window", "64", TD_ERANGE, "compress_ratios[3] = 128 exceeds sliding_window 64");
}

static void test_unsupported(void)
{
    EXPECT("model_type", "\"deepseek_v3\"", TD_EFORMAT, "\"model_type\" is \"deepseek_v3\"");
    EXPECT("scoring_func", "\"softmax\"", TD_EFORMAT, "only \"sqrtsoftplus\" is supported");
    EXPECT("topk_method", "\"group_limited\"", TD_EFORMAT, "field \"topk_method\"");
    EXPECT("quantization_config.fmt", "\"e5m2\"", TD_EFORMAT, "quantization_config.fmt");
    EXPECT("quantization_config.weight_block_size", "[64, 64]", TD_EFORMAT,
           "must be [128, 128]");
    EXPECT("quantization_config.weight_block_size", NULL, TD_EFORMAT,
           "missing field \"quantization_config.weight_block_size\"");
    EXPECT("expert_dtype", "\"int4\"", TD_EFORMAT, "\"expert_dtype\" is \"int4\"");
    EXPECT("tie_word_embeddings", "true", TD_EFORMAT, "tie_word_embeddings");
    EXPECT("num_key_value_heads", "8", TD_EFORMAT, "num_key_value_heads");
    EXPECT("rope_scaling.type", "\"linear\"", TD_EFORMAT, "rope_scaling.type");
}

static void test_dtype_rules(void)
{
    /* no quantization_config: bf16 linears; expert_dtype still fp4 */
    char err[512];
    TD_CHECK_EQ_INT(edited("quantization_config", NULL, err, sizeof(err)), TD_OK);
    TD_CHECK_EQ_INT(edited("quantization_config", "null", err, sizeof(err)), TD_OK);
    td_v4_config c;
    json_t *root = json_load_file(flash(), 0, NULL);
    json_object_del(root, "expert_dtype");
    char *s = json_dumps(root, 0);
    TD_CHECK_EQ_INT(td_v4_config_parse(&c, s, strlen(s), err, sizeof(err)), TD_OK);
    TD_CHECK_EQ_INT(c.expert_dtype, TD_W_FP8);      /* absent: same as dtype */
    free(s);
    json_object_del(root, "quantization_config");
    s = json_dumps(root, 0);
    TD_CHECK_EQ_INT(td_v4_config_parse(&c, s, strlen(s), err, sizeof(err)), TD_OK);
    TD_CHECK_EQ_INT(c.dtype, TD_W_BF16);
    TD_CHECK_EQ_INT(c.expert_dtype, TD_W_BF16);
    free(s);
    json_decref(root);
}

TD_TEST_MAIN({"flash", test_flash},
             {"tiny", test_tiny},
             {"bad_json", test_bad_json},
             {"missing_field", test_missing_field},
             {"wrong_type", test_wrong_type},
             {"ranges", test_ranges},
             {"unsupported", test_unsupported},
             {"dtype_rules", test_dtype_rules})
