/* KV-size arithmetic against the worked numbers of spec §3.2-3.3. */
#include <jansson.h>

#include "model/config.h"
#include "model/kvsize.h"
#include "tests/td_test.h"

static char flash_path[1024];

static const char *flash(void)
{
    const char *r = getenv("TD_SOURCE_ROOT");
    snprintf(flash_path, sizeof(flash_path), "%s/tests/data/configs/deepseek-v4-flash.config.json",
             r && *r ? r : ".");
    return flash_path;
}

static int load_flash(td_v4_config *c)
{
    char err[512];
    if (td_v4_config_load(c, flash(), err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static void test_records(void)
{
    td_v4_config c;
    TD_CHECK(load_flash(&c) == 0);
    TD_CHECK_EQ_INT(td_v4_kv_entry_bytes(&c), 584);      /* 448 + 128 + 7 + 1 */
    TD_CHECK_EQ_INT(td_v4_kv_index_key_bytes(&c), 68);   /* 64 + 4 */
    c.head_dim = 128;                                     /* tiny: 64 + 128 + 1 -> 200 */
    TD_CHECK_EQ_INT(td_v4_kv_entry_bytes(&c), 200);
}

static void test_flash_1m(void)
{
    td_v4_config c;
    td_v4_kv_bytes r;
    TD_CHECK(load_flash(&c) == 0);
    TD_CHECK_EQ_INT(td_v4_kv_size(&c, 1048576, &r), TD_OK);
    TD_CHECK_EQ_INT(r.window_only.layers + r.csa.layers + r.hca.layers, 43);
    TD_CHECK_EQ_INT(r.window_only.window_bytes + r.csa.window_bytes + r.hca.window_bytes,
                    3214336LL);
    TD_CHECK_EQ_INT(r.csa.compressed_bytes + r.csa.indexer_bytes, 3589275648LL);
    TD_CHECK_EQ_INT(r.csa.indexer_bytes, 21LL * 262144 * 68);
    TD_CHECK_EQ_INT(r.hca.compressed_bytes, 95682560LL);
    TD_CHECK_EQ_INT(r.hca.ratio, 128);
    TD_CHECK_EQ_INT(r.kv_bytes, 3688172544LL);
    TD_CHECK_EQ_INT(r.gqa_bytes, 184683593728LL);
    char pct[16];
    snprintf(pct, sizeof(pct), "%.2f", 100.0 * r.ratio);
    TD_CHECK_STR(pct, "2.00");
    TD_CHECK_EQ_INT(r.state_bytes, 12206080LL);           /* 21 x 81,920 + 20 x 524,288 */
    TD_CHECK_EQ_INT(r.total_with_state, 3688172544LL + 12206080LL);
    /* MTP block: one window-only layer, reported apart. */
    TD_CHECK_EQ_INT(r.mtp.layers, 1);
    TD_CHECK_EQ_INT(r.mtp.window_bytes, 128 * 584);
    TD_CHECK_EQ_INT(r.mtp.state_bytes, 0);
}

static void test_flash_128k(void)
{
    td_v4_config c;
    td_v4_kv_bytes r;
    TD_CHECK(load_flash(&c) == 0);
    TD_CHECK_EQ_INT(td_v4_kv_size(&c, 131072, &r), TD_OK);
    TD_CHECK_EQ_INT(r.csa.compressed_bytes + r.csa.indexer_bytes, 448659456LL);
    TD_CHECK_EQ_INT(r.hca.compressed_bytes, 11960320LL);
    TD_CHECK_EQ_INT(r.kv_bytes, 463834112LL);
    TD_CHECK_EQ_INT(r.gqa_bytes, 23085449216LL);
    char pct[16];
    snprintf(pct, sizeof(pct), "%.2f", 100.0 * r.ratio);
    TD_CHECK_STR(pct, "2.01");
}

/* V4-Pro: Flash's config with Pro's depth and layer pattern. */
static void test_pro(void)
{
    json_t *root = json_load_file(flash(), 0, NULL);
    json_t *ratios = json_array();
    json_array_append_new(ratios, json_integer(128));
    json_array_append_new(ratios, json_integer(128));
    for (int i = 0; i < 29; i++) {
        json_array_append_new(ratios, json_integer(4));
        json_array_append_new(ratios, json_integer(128));
    }
    json_array_append_new(ratios, json_integer(4));
    json_array_append_new(ratios, json_integer(0));
    json_object_set_new(root, "compress_ratios", ratios);
    json_object_set_new(root, "num_hidden_layers", json_integer(61));
    json_object_set_new(root, "hidden_size", json_integer(7168));
    char *s = json_dumps(root, 0);
    json_decref(root);
    td_v4_config c;
    char err[512];
    TD_CHECK_EQ_INT(td_v4_config_parse(&c, s, strlen(s), err, sizeof(err)), TD_OK);
    free(s);
    td_v4_kv_bytes r;
    TD_CHECK_EQ_INT(td_v4_kv_size(&c, 1048576, &r), TD_OK);
    TD_CHECK_EQ_INT(r.csa.layers, 30);
    TD_CHECK_EQ_INT(r.hca.layers, 31);
    TD_CHECK_EQ_INT(r.window_only.layers, 0);
    TD_CHECK_EQ_INT(r.kv_bytes, 5280404480LL);
    TD_CHECK_EQ_INT(r.gqa_bytes, 261993005056LL);
    TD_CHECK_EQ_INT(r.state_bytes, 18710528LL);
    TD_CHECK_EQ_INT(td_v4_kv_size(&c, 131072, &r), TD_OK);
    TD_CHECK_EQ_INT(r.kv_bytes, 664040448LL);
}

static void test_short_and_bad(void)
{
    td_v4_config c;
    td_v4_kv_bytes r;
    TD_CHECK(load_flash(&c) == 0);
    TD_CHECK_EQ_INT(td_v4_kv_size(&c, 0, &r), TD_OK);
    TD_CHECK_EQ_INT(r.kv_bytes, 0);
    TD_CHECK(r.ratio == 0.0);
    TD_CHECK_EQ_INT(r.state_bytes, 12206080LL);   /* fixed per sequence */
    /* 7 tokens: window only (no complete CSA block of 4 beyond the first) */
    TD_CHECK_EQ_INT(td_v4_kv_size(&c, 7, &r), TD_OK);
    TD_CHECK_EQ_INT(r.kv_bytes, 43LL * 7 * 584 + 21LL * 1 * (584 + 68));
    TD_CHECK_EQ_INT(td_v4_kv_size(&c, -1, &r), TD_ERANGE);
    TD_CHECK_EQ_INT(td_v4_kv_size(&c, TD_V4_KV_MAX_TOKENS + 1, &r), TD_ERANGE);
    TD_CHECK_EQ_INT(td_v4_kv_size(&c, TD_V4_KV_MAX_TOKENS, &r), TD_OK);
    TD_CHECK(r.kv_bytes > 0);
}

TD_TEST_MAIN({"records", test_records},
             {"flash_1m", test_flash_1m},
             {"flash_128k", test_flash_128k},
             {"pro", test_pro},
             {"short_and_bad", test_short_and_bad})
