/* The tokenizer against reference vectors from Hugging Face tokenizers
 * (tools/tokenizer-vectors), for the tiny model's tokenizer (always) and the
 * official V4 one (when /work/shared is beside the repository). */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "tests/td_test.h"
#include "tokenizer/tokenizer.h"

#define TINY_TOK TD_SOURCE_ROOT "/models/tiny-v4/tokenizer.json"
#define V4_TOK TD_SOURCE_ROOT \
    "/../shared/data/deepseek-v4-tokenizer/tokenizer.json"
#define TINY_VEC TD_SOURCE_ROOT "/tests/data/tokenizer/tiny_vectors.json"
#define V4_VEC TD_SOURCE_ROOT "/tests/data/tokenizer/v4_vectors.json"

static td_tok *load(const char *path)
{
    td_tok *tok = NULL;
    char err[512];
    if (td_tok_load(&tok, path, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return NULL;
    }
    return tok;
}

static bool file_exists(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f)
        fclose(f);
    return f != NULL;
}

static bool ids_equal(const td_tok_ids *got, json_t *want)
{
    if (got->len != json_array_size(want))
        return false;
    for (size_t i = 0; i < got->len; i++)
        if (got->ids[i] != json_integer_value(json_array_get(want, i)))
            return false;
    return true;
}

static void check_encode(const td_tok *tok, json_t *v)
{
    const char *text = json_string_value(json_object_get(v, "text"));
    size_t len = json_string_length(json_object_get(v, "text"));
    json_t *want = json_object_get(v, "ids");
    td_tok_ids got = {0};
    char err[256];
    TD_CHECK_EQ_INT(td_tok_encode(tok, text, len, 0, &got, err, sizeof err),
                    TD_OK);
    if (!ids_equal(&got, want)) {
        fprintf(stderr, "encode mismatch for \"%.60s\" (%zu bytes): got %zu "
                "ids, want %zu\n", text, len, got.len, json_array_size(want));
        td_test_failures++;
    }
    /* Every input is valid UTF-8, so decoding gives the text back. */
    td_tok_bytes back = {0};
    TD_CHECK_EQ_INT(td_tok_decode(tok, got.ids, got.len, 0, &back, err,
                                  sizeof err), TD_OK);
    if (back.len != len || (len && memcmp(back.data, text, len))) {
        fprintf(stderr, "round trip mismatch for \"%.60s\"\n", text);
        td_test_failures++;
    }
    td_tok_bytes_free(&back);
    td_tok_ids_free(&got);
}

/* Whether s[0..n) is valid UTF-8 (strict: no overlongs or surrogates). */
static bool valid_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char b = s[i];
        size_t len = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2
                   : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4
                   : 0;
        if (!len || i + len > n)
            return false;
        unsigned cp = len == 1 ? b : b & (0x7f >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        static const unsigned min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

static void append(td_tok_bytes *b, const char *p, size_t n)
{
    char *grown = realloc(b->data, b->len + n + 1);
    TD_CHECK(grown != NULL);
    if (!grown)
        return;
    b->data = grown;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

/* The streaming decoder, fed one id at a time, must print exactly HF's
 * lossy decode (split characters become U+FFFD), always in whole
 * characters. */
static void check_decode(const td_tok *tok, json_t *v)
{
    json_t *ids = json_object_get(v, "ids");
    const char *want = json_string_value(json_object_get(v, "text"));
    size_t want_len = json_string_length(json_object_get(v, "text"));
    unsigned flags = json_is_true(json_object_get(v, "skip_special"))
                         ? TD_TOK_SKIP_SPECIAL : 0;
    td_tok_stream s;
    td_tok_stream_init(&s, tok, flags);
    td_tok_bytes all = {0};
    char err[256];
    const char *text;
    size_t len;
    for (size_t i = 0; i < json_array_size(ids); i++) {
        int32_t id = (int32_t)json_integer_value(json_array_get(ids, i));
        TD_CHECK_EQ_INT(td_tok_stream_push(&s, id, &text, &len, err,
                                           sizeof err), TD_OK);
        TD_CHECK(valid_utf8((const unsigned char *)text, len));
        append(&all, text, len);
    }
    td_tok_stream_flush(&s, &text, &len);
    append(&all, text, len);
    if (all.len != want_len || (want_len && memcmp(all.data, want, want_len))) {
        fprintf(stderr, "stream decode mismatch (%zu ids): got \"%s\" want "
                "\"%s\"\n", json_array_size(ids), all.data ? all.data : "",
                want);
        td_test_failures++;
    }
    td_tok_stream_free(&s);
    free(all.data);
}

static void run_file(const char *tok_path, const char *vec_path)
{
    td_tok *tok = load(tok_path);
    TD_CHECK(tok != NULL);
    json_error_t jerr;
    json_t *root = json_load_file(vec_path, JSON_ALLOW_NUL, &jerr);
    if (!root)
        fprintf(stderr, "%s: %s\n", vec_path, jerr.text);
    TD_CHECK(root != NULL);
    if (!tok || !root)
        goto out;
    json_t *enc = json_object_get(root, "encode");
    json_t *dec = json_object_get(root, "decode");
    TD_CHECK(json_array_size(enc) >= 150);
    TD_CHECK(json_array_size(dec) >= 50);
    int before = td_test_failures;
    size_t i;
    json_t *v;
    json_array_foreach(enc, i, v)
        check_encode(tok, v);
    json_array_foreach(dec, i, v)
        check_decode(tok, v);
    fprintf(stderr, "%s: %zu encode, %zu decode vectors, %d failures\n",
            vec_path, json_array_size(enc), json_array_size(dec),
            td_test_failures - before);
out:
    json_decref(root);
    td_tok_destroy(tok);
}

static void test_tiny_vectors(void)
{
    run_file(TINY_TOK, TINY_VEC);
}

static void test_v4_vectors(void)
{
    if (!file_exists(V4_TOK))
        TD_SKIP("%s not found", V4_TOK);
    run_file(V4_TOK, V4_VEC);
}

static void expect_ids(const td_tok *tok, const char *text,
                       const int32_t *want, size_t n)
{
    td_tok_ids got = {0};
    char err[256];
    TD_CHECK_EQ_INT(td_tok_encode(tok, text, strlen(text), 0, &got, err,
                                  sizeof err), TD_OK);
    bool same = got.len == n && memcmp(got.ids, want, n * sizeof *want) == 0;
    if (!same) {
        fprintf(stderr, "spec vector \"%s\": got", text);
        for (size_t i = 0; i < got.len; i++)
            fprintf(stderr, " %d", got.ids[i]);
        fprintf(stderr, "\n");
    }
    TD_CHECK(same);
    td_tok_ids_free(&got);
}

#define EXPECT(tok, text, ...)                                               \
    do {                                                                     \
        static const int32_t want_[] = {__VA_ARGS__};                        \
        expect_ids(tok, text, want_, sizeof want_ / sizeof *want_);          \
    } while (0)

/* docs: spec/v4-architecture.md section 7.2 */
static void test_spec_vectors(void)
{
    if (!file_exists(V4_TOK))
        TD_SKIP("%s not found", V4_TOK);
    td_tok *tok = load(V4_TOK);
    TD_CHECK(tok != NULL);
    if (!tok)
        return;
    EXPECT(tok, "Hello! 毕老师！1 + 1 = 2 ĠÑĤÐ²ÑĬÑĢ", 19923, 3, 223, 5464,
           5008, 1175, 19, 940, 223, 19, 438, 223, 20, 6113, 257, 76589, 131,
           100, 76032, 1628, 76589, 131, 108, 76589, 131, 98);
    EXPECT(tok, "Hello, world!", 19923, 14, 2058, 3);
    EXPECT(tok, "The year 2026 has 365 days.", 671, 1141, 223, 939, 24, 769,
           223, 15551, 3137, 16);
    EXPECT(tok, "1234567", 6895, 18009, 25);
    EXPECT(tok, "你好，世界！", 30594, 303, 3427, 1175);
    EXPECT(tok, "<｜User｜>你好<｜Assistant｜><think>推理</think>答案"
           "<｜end▁of▁sentence｜>", 128803, 30594, 128804, 128821, 36101,
           128822, 7624, 1);

    /* Section 7.2's id table, sampled. */
    static const struct {
        const char *s;
        int32_t id;
        bool special;
    } table[] = {
        {"<｜begin▁of▁sentence｜>", 0, true},
        {"<｜end▁of▁sentence｜>", 1, true},
        {"<｜▁pad▁｜>", 2, true},
        {"<｜place▁holder▁no▁0｜>", 128000, true},
        {"<｜place▁holder▁no▁799｜>", 128799, true},
        {"<｜fim▁hole｜>", 128800, false},
        {"<｜User｜>", 128803, false},
        {"<｜Assistant｜>", 128804, false},
        {"<|EOT|>", 128805, false},
        {"<think>", 128821, false},
        {"</think>", 128822, false},
        {"｜DSML｜", 128825, false},
        {"<｜latest_reminder｜>", 128828, false},
        {"<｜read_url｜>", 128845, false},
        {"<｜end_of_query｜>", 128846, true},
        {"<|place_holder_mm_span_0021|>", 128847, true},
        {"<|place_holder_mm_span_0435|>", 129261, true},
        {"<｜/table>｜", 129265, false},
        {"<｜image｜>", 129279, true},
        {"Ġt", 259, false},
        {"!", 3, false},
        {"Ń", 258, false},
    };
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
        int32_t id = -1;
        TD_CHECK_EQ_INT(td_tok_token_to_id(tok, table[i].s, strlen(table[i].s),
                                           &id), TD_OK);
        TD_CHECK_EQ_INT(id, table[i].id);
        TD_CHECK_EQ_INT(td_tok_is_special(tok, id), table[i].special);
    }
    TD_CHECK_EQ_INT(td_tok_vocab_size(tok), 129280);
    TD_CHECK(td_tok_is_added(tok, 128825));
    TD_CHECK(!td_tok_is_added(tok, 259));
    const char *piece;
    size_t len;
    TD_CHECK_EQ_INT(td_tok_id_to_piece(tok, 259, &piece, &len), TD_OK);
    TD_CHECK(len == 2 && memcmp(piece, " t", 2) == 0);
    TD_CHECK_EQ_INT(td_tok_id_to_piece(tok, 128803, &piece, &len), TD_OK);
    TD_CHECK(len == strlen("<｜User｜>") && !memcmp(piece, "<｜User｜>", len));

    /* "<｜DSML｜tool_calls>": "<" + ｜DSML｜ + ordinary tokens. */
    td_tok_ids ids = {0};
    const char *dsml = "<｜DSML｜tool_calls>";
    TD_CHECK_EQ_INT(td_tok_encode(tok, dsml, strlen(dsml), 0, &ids, NULL, 0),
                    TD_OK);
    TD_CHECK(ids.len >= 3 && ids.ids[1] == 128825);
    td_tok_ids_free(&ids);
    td_tok_destroy(tok);
}

TD_TEST_MAIN({"tiny_vectors", test_tiny_vectors},
             {"v4_vectors", test_v4_vectors},
             {"spec_vectors", test_spec_vectors})
