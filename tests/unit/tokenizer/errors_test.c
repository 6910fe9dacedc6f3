/* Loading bad tokenizer.json files: each must fail with the right code and
 * a message naming the problem, never crash. The cases are mutations of the
 * tiny model's tokenizer.json made with jansson. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "tests/td_test.h"
#include "tokenizer/tokenizer.h"

#define TINY_TOK TD_SOURCE_ROOT "/models/tiny-v4/tokenizer.json"

static json_t *tiny_json(void)
{
    json_error_t jerr;
    json_t *root = json_load_file(TINY_TOK, 0, &jerr);
    if (!root)
        fprintf(stderr, "%s: %s\n", TINY_TOK, jerr.text);
    return root;
}

/* Loads a JSON tree through td_tok_load_buffer; returns the code and
 * leaves the message in err. Destroys a tokenizer that loaded. */
static td_err try_load(json_t *root, char *err, size_t errlen)
{
    char *text = json_dumps(root, JSON_COMPACT);
    TD_CHECK(text != NULL);
    if (!text)
        return TD_ENOMEM;
    td_tok *tok = NULL;
    err[0] = '\0';
    td_err rc = td_tok_load_buffer(&tok, text, strlen(text), err, errlen);
    TD_CHECK((rc == TD_OK) == (tok != NULL));
    td_tok_destroy(tok);
    free(text);
    return rc;
}

static json_t *at(json_t *root, const char *a, const char *b)
{
    json_t *v = json_object_get(root, a);
    return b ? json_object_get(v, b) : v;
}

/* Each case mutates a fresh copy of the tiny tokenizer. */
typedef struct {
    const char *name;
    void (*mutate)(json_t *root);
    td_err want;
    const char *msg; /* a substring the message must contain */
} bad_case;

static void no_model(json_t *r) { json_object_del(r, "model"); }
static void wordpiece(json_t *r) { json_object_set_new(at(r, "model", NULL), "type", json_string("WordPiece")); }
static void vocab_array(json_t *r) { json_object_set_new(at(r, "model", NULL), "vocab", json_array()); }
static void no_merges(json_t *r) { json_object_del(at(r, "model", NULL), "merges"); }
static void merge_one_part(json_t *r) { json_array_set_new(at(r, "model", "merges"), 0, json_string("abc")); }
static void merge_three_parts(json_t *r) { json_array_set_new(at(r, "model", "merges"), 0, json_string("a b c")); }
static void merge_unknown(json_t *r) { json_array_set_new(at(r, "model", "merges"), 3, json_string("Ġ zzzzzz")); }
static void merge_result_unknown(json_t *r) { json_array_set_new(at(r, "model", "merges"), 3, json_string("q q")); }
static void merge_number(json_t *r) { json_array_set_new(at(r, "model", "merges"), 2, json_integer(7)); }
static void merge_pair_numbers(json_t *r)
{
    json_array_set_new(at(r, "model", "merges"), 2, json_pack("[ii]", 1, 2));
}
static void vocab_negative(json_t *r) { json_object_set_new(at(r, "model", "vocab"), "zz", json_integer(-3)); }
static void vocab_huge(json_t *r) { json_object_set_new(at(r, "model", "vocab"), "zz", json_integer(1LL << 40)); }
static void vocab_string_id(json_t *r) { json_object_set_new(at(r, "model", "vocab"), "zz", json_string("5")); }
static void vocab_dup_id(json_t *r) { json_object_set_new(at(r, "model", "vocab"), "zz", json_integer(5)); }
static void dropout(json_t *r) { json_object_set_new(at(r, "model", NULL), "dropout", json_real(0.1)); }
static void byte_fallback(json_t *r) { json_object_set_new(at(r, "model", NULL), "byte_fallback", json_true()); }
static void unk(json_t *r) { json_object_set_new(at(r, "model", NULL), "unk_token", json_string("<unk>")); }
static void nfc(json_t *r) { json_object_set_new(r, "normalizer", json_pack("{ss}", "type", "NFC")); }
static void no_pretok(json_t *r) { json_object_del(r, "pre_tokenizer"); }
static json_t *step(json_t *r, size_t i) { return json_array_get(at(r, "pre_tokenizer", "pretokenizers"), i); }
static void regex_changed(json_t *r)
{
    json_object_set_new(json_object_get(step(r, 0), "pattern"), "Regex", json_string("\\p{N}{1,4}"));
}
static void regex_string(json_t *r)
{
    json_object_set_new(step(r, 2), "pattern", json_pack("{ss}", "String", " "));
}
static void removed(json_t *r) { json_object_set_new(step(r, 1), "behavior", json_string("Removed")); }
static void inverted(json_t *r) { json_object_set_new(step(r, 1), "invert", json_true()); }
static void prefix_space(json_t *r) { json_object_set_new(step(r, 3), "add_prefix_space", json_true()); }
static void three_steps(json_t *r) { json_array_remove(at(r, "pre_tokenizer", "pretokenizers"), 3); }
static void no_decoder(json_t *r) { json_object_set_new(r, "decoder", json_null()); }
static void truncation(json_t *r) { json_object_set_new(r, "truncation", json_pack("{si}", "max_length", 8)); }
static void added_not_array(json_t *r) { json_object_set_new(r, "added_tokens", json_string("x")); }
static void added_no_content(json_t *r) { json_object_del(json_array_get(at(r, "added_tokens", NULL), 4), "content"); }
static void added_bad_id(json_t *r) { json_object_set_new(json_array_get(at(r, "added_tokens", NULL), 4), "id", json_integer(-1)); }
static void added_lstrip(json_t *r) { json_object_set_new(json_array_get(at(r, "added_tokens", NULL), 4), "lstrip", json_true()); }
static void added_special_str(json_t *r) { json_object_set_new(json_array_get(at(r, "added_tokens", NULL), 4), "special", json_string("yes")); }
static void empty_vocab(json_t *r)
{
    json_object_set_new(at(r, "model", NULL), "vocab", json_object());
    json_object_set_new(at(r, "model", NULL), "merges", json_array());
    json_object_set_new(r, "added_tokens", json_array());
}

static const bad_case cases[] = {
    {"no model", no_model, TD_ECORRUPT, "model"},
    {"WordPiece", wordpiece, TD_ENOTSUP, "BPE"},
    {"vocab array", vocab_array, TD_ECORRUPT, "model.vocab"},
    {"no merges", no_merges, TD_ECORRUPT, "model.merges"},
    {"merge one part", merge_one_part, TD_ECORRUPT, "merges[0]"},
    {"merge three parts", merge_three_parts, TD_ECORRUPT, "merges[0]"},
    {"merge unknown", merge_unknown, TD_ECORRUPT, "not in the vocabulary"},
    {"merge result unknown", merge_result_unknown, TD_ECORRUPT, "merged token"},
    {"merge number", merge_number, TD_ECORRUPT, "merges[2]"},
    {"merge pair numbers", merge_pair_numbers, TD_ECORRUPT, "merges[2]"},
    {"vocab negative", vocab_negative, TD_ECORRUPT, "zz"},
    {"vocab huge", vocab_huge, TD_ECORRUPT, "zz"},
    {"vocab string id", vocab_string_id, TD_ECORRUPT, "zz"},
    {"vocab duplicate id", vocab_dup_id, TD_ECORRUPT, "id 5"},
    {"dropout", dropout, TD_ENOTSUP, "dropout"},
    {"byte_fallback", byte_fallback, TD_ENOTSUP, "byte_fallback"},
    {"unk_token", unk, TD_ENOTSUP, "unk_token"},
    {"NFC normalizer", nfc, TD_ENOTSUP, "normalizer"},
    {"no pre_tokenizer", no_pretok, TD_ENOTSUP, "pre_tokenizer"},
    {"regex changed", regex_changed, TD_ENOTSUP, "{1,4}"},
    {"String pattern", regex_string, TD_ENOTSUP, "Regex"},
    {"Removed", removed, TD_ENOTSUP, "Isolated"},
    {"invert", inverted, TD_ENOTSUP, "invert"},
    {"add_prefix_space", prefix_space, TD_ENOTSUP, "add_prefix_space"},
    {"three steps", three_steps, TD_ENOTSUP, "pre_tokenizer"},
    {"no decoder", no_decoder, TD_ENOTSUP, "decoder"},
    {"truncation", truncation, TD_ENOTSUP, "truncation"},
    {"added not array", added_not_array, TD_ECORRUPT, "added_tokens"},
    {"added no content", added_no_content, TD_ECORRUPT, "added_tokens[4]"},
    {"added bad id", added_bad_id, TD_ECORRUPT, "added_tokens[4]"},
    {"added lstrip", added_lstrip, TD_ENOTSUP, "lstrip"},
    {"added special string", added_special_str, TD_ECORRUPT, "special"},
    {"empty vocab", empty_vocab, TD_ECORRUPT, "empty"},
};

static void test_bad_fields(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *root = tiny_json();
        TD_CHECK(root != NULL);
        if (!root)
            return;
        cases[i].mutate(root);
        char err[512];
        td_err rc = try_load(root, err, sizeof err);
        if (rc != cases[i].want || !strstr(err, cases[i].msg)) {
            fprintf(stderr, "case \"%s\": got %s, \"%s\"\n", cases[i].name,
                    td_strerror(rc), err);
            td_test_failures++;
        }
        json_decref(root);
    }
}

/* Accepted variants: merges as [a, b] arrays, the regex with \r\n escapes
 * instead of literal characters, no added_tokens at all. */
static void test_variants(void)
{
    json_t *root = tiny_json();
    TD_CHECK(root != NULL);
    if (!root)
        return;
    char err[512];
    TD_CHECK_EQ_INT(try_load(root, err, sizeof err), TD_OK);

    json_t *merges = at(root, "model", "merges");
    size_t i;
    json_t *m;
    json_array_foreach(merges, i, m) {
        const char *s = json_string_value(m);
        const char *sp = strchr(s, ' ');
        json_array_set_new(merges, i, json_pack("[s#s]", s, (int)(sp - s),
                                                sp + 1));
    }
    json_t *pattern = json_object_get(json_array_get(
        at(root, "pre_tokenizer", "pretokenizers"), 2), "pattern");
    const char *re = json_string_value(json_object_get(pattern, "Regex"));
    char escaped[512];
    size_t o = 0;
    for (const char *c = re; *c && o + 3 < sizeof escaped; c++) {
        if (*c == '\r' || *c == '\n') {
            escaped[o++] = '\\';
            escaped[o++] = *c == '\r' ? 'r' : 'n';
        } else {
            escaped[o++] = *c;
        }
    }
    escaped[o] = '\0';
    json_object_set_new(pattern, "Regex", json_string(escaped));

    char *text = json_dumps(root, JSON_COMPACT);
    td_tok *a = NULL, *b = NULL;
    TD_CHECK_EQ_INT(td_tok_load_buffer(&a, text, strlen(text), err,
                                       sizeof err), TD_OK);
    TD_CHECK_EQ_INT(td_tok_load(&b, TINY_TOK, err, sizeof err), TD_OK);
    const char *s = "Hello, the world!\r\n  <｜User｜>";
    td_tok_ids ia = {0}, ib = {0};
    if (a && b) {
        TD_CHECK_EQ_INT(td_tok_encode(a, s, strlen(s), 0, &ia, NULL, 0), TD_OK);
        TD_CHECK_EQ_INT(td_tok_encode(b, s, strlen(s), 0, &ib, NULL, 0), TD_OK);
        TD_CHECK(ia.len == ib.len && ia.len > 0 &&
                 !memcmp(ia.ids, ib.ids, ia.len * sizeof *ia.ids));
    }
    td_tok_ids_free(&ia);
    td_tok_ids_free(&ib);
    td_tok_destroy(a);
    td_tok_destroy(b);
    free(text);

    json_object_del(root, "added_tokens");
    TD_CHECK_EQ_INT(try_load(root, err, sizeof err), TD_OK);
    json_decref(root);
}

/* Not JSON, the wrong JSON, a missing file, every truncation of a file. */
static void test_bad_files(void)
{
    static const char *const texts[] = {"", "nul", "[]", "{}", "42",
                                        "{\"model\": 5}", "{\"model\""};
    char err[512];
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        td_tok *tok = (td_tok *)1;
        err[0] = '\0';
        td_err rc = td_tok_load_buffer(&tok, texts[i], strlen(texts[i]), err,
                                       sizeof err);
        TD_CHECK(rc != TD_OK && tok == NULL && err[0]);
    }
    td_tok *tok = NULL;
    TD_CHECK_EQ_INT(td_tok_load(&tok, "/nonexistent/tokenizer.json", err,
                                sizeof err), TD_ENOENT);
    TD_CHECK(strstr(err, "/nonexistent/tokenizer.json") != NULL);
    /* A small error buffer truncates the message, nothing more. */
    TD_CHECK_EQ_INT(td_tok_load(&tok, "/nonexistent/x", err, 4), TD_ENOENT);
    TD_CHECK_EQ_INT(td_tok_load(&tok, "/nonexistent/x", NULL, 0), TD_ENOENT);

    char *data;
    size_t len;
    TD_CHECK_EQ_INT(td_file_read(TINY_TOK, &data, &len, err, sizeof err),
                    TD_OK);
    for (size_t cut = 0; cut < len; cut += 97) {
        TD_CHECK(td_tok_load_buffer(&tok, data, cut, err, sizeof err) != TD_OK);
        TD_CHECK(tok == NULL);
    }
    free(data);
}

TD_TEST_MAIN({"bad_fields", test_bad_fields},
             {"variants", test_variants},
             {"bad_files", test_bad_files})
