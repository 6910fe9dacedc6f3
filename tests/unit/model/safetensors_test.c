/* safetensors reader: round trip through the test writer, lookup, and one
 * check per header validation (in memory, as the fuzz target drives it). */
#include "model/safetensors.h"
#include "tests/td_test.h"
#include "loader_test_util.h"

static int contains(const char *s, const char *sub)
{
    if (!strstr(s, sub)) {
        fprintf(stderr, "message \"%s\" lacks \"%s\"\n", s, sub);
        return 0;
    }
    return 1;
}

static void test_round_trip(void)
{
    tw_list l = {0};
    tw_tensor *a = tw_add(&l, "F32", TW_SHAPE(2, 3), "a");
    for (int i = 0; i < 6; i++)
        ((float *)a->data)[i] = (float)i + 0.5f;
    tw_tensor *b = tw_add(&l, "BF16", TW_SHAPE(5), "b.weight");
    b->data[0] = 0x80;
    b->data[1] = 0x3f;
    tw_add(&l, "I64", TW_SHAPE(0, 6), "empty");
    tw_add(&l, "U8", 0, NULL, "scalar")->data[0] = 7;
    tw_add(&l, "F8_E8M0", TW_SHAPE(1, 1), "s")->data[0] = 127;

    char dir[512], p[600], err[512];
    tw_mkdtemp(dir, sizeof(dir));
    snprintf(p, sizeof(p), "%s/x.safetensors", dir);
    TD_CHECK(tw_write(&l, p) == 0);
    td_safetensors *st = NULL;
    td_err rc = td_st_open_file(&st, p, err, sizeof(err));
    if (rc)
        fprintf(stderr, "%s\n", err);
    TD_CHECK_EQ_INT(rc, TD_OK);
    if (!rc) {
        TD_CHECK_EQ_INT(td_st_count(st), 5);
        const td_st_tensor *t = td_st_find(st, "a");
        TD_CHECK(t && t->dtype == TD_ST_F32 && t->ndim == 2 && t->shape[0] == 2 &&
                 t->shape[1] == 3 && t->nbytes == 24);
        TD_CHECK(t && ((const float *)t->data)[5] == 5.5f);
        t = td_st_find(st, "b.weight");
        TD_CHECK(t && t->dtype == TD_ST_BF16 && t->nbytes == 10 &&
                 ((const uint16_t *)t->data)[0] == 0x3f80);
        t = td_st_find(st, "empty");
        TD_CHECK(t && t->nbytes == 0 && t->ndim == 2);
        t = td_st_find(st, "scalar");
        TD_CHECK(t && t->ndim == 0 && t->nbytes == 1 && *(const uint8_t *)t->data == 7);
        TD_CHECK(td_st_find(st, "s") != NULL);
        TD_CHECK(td_st_find(st, "c") == NULL);
        TD_CHECK(td_st_find(st, "") == NULL);
        TD_CHECK(contains(td_st_file_name(st, 0), "x.safetensors"));
    }
    td_st_close(st);
    tw_free(&l);
    tw_rmdir(dir);
}

static void test_many_names(void)
{
    tw_list l = {0};
    for (int i = 0; i < 3000; i++)
        tw_add(&l, "F32", TW_SHAPE(1), "layers.%d.ffn.experts.%d.w1.weight", i % 61, i);
    char dir[512], p[600], err[512], name[96];
    tw_mkdtemp(dir, sizeof(dir));
    snprintf(p, sizeof(p), "%s/model.safetensors", dir);
    TD_CHECK(tw_write(&l, p) == 0);
    td_safetensors *st = NULL;
    TD_CHECK_EQ_INT(td_st_open_dir(&st, dir, err, sizeof(err)), TD_OK);
    int found = 0;
    for (int i = 0; st && i < 3000; i++) {
        snprintf(name, sizeof(name), "layers.%d.ffn.experts.%d.w1.weight", i % 61, i);
        const td_st_tensor *t = td_st_find(st, name);
        found += t && !strcmp(t->name, name) && t == td_st_at(st, (size_t)i);
    }
    TD_CHECK_EQ_INT(found, 3000);
    td_st_close(st);
    tw_free(&l);
    tw_rmdir(dir);
}

/* An image: 8-byte length, header text, then `data` zero bytes. */
static td_err parse(const char *header, size_t data, char *err, size_t errlen)
{
    size_t hl = strlen(header), n = 8 + hl + data;
    unsigned char *buf = calloc(1, n);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    td_safetensors *st = NULL;
    err[0] = '\0';
    td_err rc = td_st_open_memory(&st, buf, n, "t.safetensors", err, errlen);
    TD_CHECK((rc == TD_OK) == (st != NULL));
    td_st_close(st);
    free(buf);
    return rc;
}

static void test_header_checks(void)
{
    char err[512];
    TD_CHECK_EQ_INT(parse("{}", 0, err, sizeof(err)), TD_OK);
    TD_CHECK_EQ_INT(parse("{\"__metadata__\":{\"format\":\"pt\"},"
                          "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}  ",
                          8, err, sizeof(err)), TD_OK);
    TD_CHECK_EQ_INT(parse("{\"a\":", 0, err, sizeof(err)), TD_ECORRUPT);
    TD_CHECK(contains(err, "t.safetensors: header is not valid JSON"));
    TD_CHECK_EQ_INT(parse("[1,2]", 0, err, sizeof(err)), TD_ECORRUPT);
    TD_CHECK(contains(err, "not a JSON object"));
    TD_CHECK_EQ_INT(parse("{\"__metadata__\":3}", 0, err, sizeof(err)), TD_ECORRUPT);
    TD_CHECK_EQ_INT(parse("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, err,
                          sizeof(err)), TD_ECORRUPT);
    TD_CHECK(contains(err, "tensor \"a\": header entry needs dtype"));
    TD_CHECK_EQ_INT(parse("{\"a\":{\"dtype\":\"Q4_K\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                          4, err, sizeof(err)), TD_EFORMAT);
    TD_CHECK(contains(err, "tensor \"a\": unknown dtype \"Q4_K\""));
    TD_CHECK_EQ_INT(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
                          4, err, sizeof(err)), TD_ECORRUPT);
    TD_CHECK_EQ_INT(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}",
                          4, err, sizeof(err)), TD_ECORRUPT);
    TD_CHECK_EQ_INT(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}",
                          4, err, sizeof(err)), TD_ECORRUPT);
    TD_CHECK_EQ_INT(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}",
                          4, err, sizeof(err)), TD_ECORRUPT);
    /* offsets beyond the data section */
    TD_CHECK_EQ_INT(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                          4, err, sizeof(err)), TD_ECORRUPT);
    TD_CHECK(contains(err, "beyond the data section (4 bytes"));
    /* offsets inconsistent with dtype x shape */
    TD_CHECK_EQ_INT(parse("{\"a\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,8]}}",
                          8, err, sizeof(err)), TD_ECORRUPT);
    TD_CHECK(contains(err, "hold 8 bytes, but BF16 [3] needs 6"));
    /* a shape whose byte count overflows */
    TD_CHECK_EQ_INT(parse("{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],"
                          "\"data_offsets\":[0,8]}}", 8, err, sizeof(err)), TD_ECORRUPT);
    /* overlapping tensors */
    TD_CHECK_EQ_INT(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                          "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                          12, err, sizeof(err)), TD_ECORRUPT);
    TD_CHECK(contains(err, "overlap"));
    /* duplicate names within one header */
    TD_CHECK_EQ_INT(parse("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                          "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
                          2, err, sizeof(err)), TD_ECORRUPT);
    /* too many dimensions */
    TD_CHECK_EQ_INT(parse("{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                          "\"data_offsets\":[0,1]}}", 1, err, sizeof(err)), TD_EFORMAT);
}

static void test_length_checks(void)
{
    char err[512];
    td_safetensors *st = NULL;
    unsigned char small[5] = {0};
    TD_CHECK_EQ_INT(td_st_open_memory(&st, small, sizeof(small), "t", err, sizeof(err)),
                    TD_ECORRUPT);
    TD_CHECK(contains(err, "t: truncated file (5 bytes"));
    unsigned char beyond[16] = {200, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    TD_CHECK_EQ_INT(td_st_open_memory(&st, beyond, sizeof(beyond), "t", err, sizeof(err)),
                    TD_ECORRUPT);
    TD_CHECK(contains(err, "t: header length 200 beyond the end of the file (16 bytes)"));
    unsigned char huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    TD_CHECK_EQ_INT(td_st_open_memory(&st, huge, sizeof(huge), "t", err, sizeof(err)),
                    TD_ECORRUPT);
    TD_CHECK(st == NULL);
}

static void test_dir_errors(void)
{
    char dir[512], p[600], err[512];
    td_safetensors *st = NULL;
    tw_mkdtemp(dir, sizeof(dir));
    TD_CHECK_EQ_INT(td_st_open_dir(&st, dir, err, sizeof(err)), TD_ENOENT);
    /* One name in two shards. */
    tw_list l = {0};
    tw_add(&l, "F32", TW_SHAPE(1), "x");
    tw_add(&l, "F32", TW_SHAPE(1), "x");
    snprintf(p, sizeof(p), "%s/a.safetensors", dir);
    TD_CHECK(tw_write_range(&l, 0, 1, p) == 0);
    snprintf(p, sizeof(p), "%s/b.safetensors", dir);
    TD_CHECK(tw_write_range(&l, 1, 2, p) == 0);
    TD_CHECK(tw_write_text(dir, "model.safetensors.index.json",
                           "{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"b.safetensors\"}}")
             == 0);
    TD_CHECK_EQ_INT(td_st_open_dir(&st, dir, err, sizeof(err)), TD_ECORRUPT);
    TD_CHECK(contains(err, "tensor \"x\" appears in both"));
    TD_CHECK(tw_write_text(dir, "model.safetensors.index.json", "{\"weight_map\":[]}") == 0);
    TD_CHECK_EQ_INT(td_st_open_dir(&st, dir, err, sizeof(err)), TD_ECORRUPT);
    TD_CHECK(contains(err, "no \"weight_map\" object"));
    TD_CHECK(tw_write_text(dir, "model.safetensors.index.json", "{") == 0);
    TD_CHECK_EQ_INT(td_st_open_dir(&st, dir, err, sizeof(err)), TD_ECORRUPT);
    /* An empty shard file. */
    TD_CHECK(tw_write_text(dir, "model.safetensors", "") == 0);
    TD_CHECK_EQ_INT(td_st_open_dir(&st, dir, err, sizeof(err)), TD_ECORRUPT);
    TD_CHECK(contains(err, "empty file"));
    TD_CHECK(st == NULL);
    tw_free(&l);
    tw_rmdir(dir);
}

static void test_dtypes(void)
{
    td_st_dtype d;
    TD_CHECK(td_st_dtype_parse("F8_E4M3", &d) == 0 && d == TD_ST_F8_E4M3);
    TD_CHECK(td_st_dtype_parse("F8_E8M0", &d) == 0 && td_st_dtype_size(d) == 1);
    TD_CHECK(td_st_dtype_parse("I64", &d) == 0 && td_st_dtype_size(d) == 8);
    TD_CHECK(td_st_dtype_parse("bf16", &d) == -1);
    TD_CHECK_STR(td_st_dtype_name(TD_ST_BF16), "BF16");
    for (int i = 0; i < TD_ST_DTYPE_COUNT; i++)
        TD_CHECK(td_st_dtype_parse(td_st_dtype_name((td_st_dtype)i), &d) == 0 && (int)d == i);
}

TD_TEST_MAIN({"round_trip", test_round_trip},
             {"many_names", test_many_names},
             {"header_checks", test_header_checks},
             {"length_checks", test_length_checks},
             {"dir_errors", test_dir_errors},
             {"dtypes", test_dtypes})
