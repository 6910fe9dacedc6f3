/* Loading a Hugging Face tokenizer.json of the DeepSeek-V4 shape.
 *
 * Everything that would change how text is tokenised is checked against
 * what this module implements, and anything else is refused with a message
 * naming the field: silently tokenising differently from the reference
 * would corrupt every prompt. Fields that only affect offsets or training
 * (trim_offsets, the post_processor, dropout = null) are accepted. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "tokenizer/tok_internal.h"

/* Ids must fit the flag and offset tables; 16M is far past any vocab. */
#define MAX_IDS (1 << 24)

/* The three Split regexes, as they read after JSON unescaping. */
static const char pattern_numbers[] = "\\p{N}{1,3}";
static const char pattern_cjk[] = "[一-龥぀-ゟ゠-ヿ]+";
static const char pattern_words[] =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+"
    "|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
    "| ?[\\p{P}\\p{S}]+[\r\n]*"
    "|\\s*[\r\n]+"
    "|\\s+(?!\\S)"
    "|\\s+";

/* Error context for one load. */
typedef struct {
    char *err;
    size_t errlen;
} loader;

#define FAIL(ld, code, ...) td_errf((ld)->err, (ld)->errlen, (code), __VA_ARGS__)

static const char *type_of(json_t *obj)
{
    const char *t = json_string_value(json_object_get(obj, "type"));
    return t ? t : "(none)";
}

/* A boolean field that must have the given value when present. */
static td_err want_bool(loader *ld, json_t *obj, const char *where,
                        const char *key, bool want)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return TD_OK;
    if (!json_is_boolean(v))
        return FAIL(ld, TD_ECORRUPT, "%s.%s: not a boolean", where, key);
    if (json_is_true(v) != want)
        return FAIL(ld, TD_ENOTSUP, "%s.%s = %s is not supported", where, key,
                    want ? "false" : "true");
    return TD_OK;
}

/* The regex spelling with the escapes \r and \n turned into the characters
 * they stand for, so both spellings of the same class compare equal. */
static char *unescape_crlf(const char *s)
{
    char *out = malloc(strlen(s) + 1), *o = out;
    if (!out)
        return NULL;
    while (*s) {
        if (s[0] == '\\' && (s[1] == 'r' || s[1] == 'n')) {
            *o++ = s[1] == 'r' ? '\r' : '\n';
            s += 2;
        } else if (s[0] == '\\' && s[1]) {
            *o++ = *s++;
            *o++ = *s++;
        } else {
            *o++ = *s++;
        }
    }
    *o = '\0';
    return out;
}

static td_err check_split(loader *ld, json_t *step, int i, const char *want)
{
    char where[64];
    snprintf(where, sizeof where, "pre_tokenizer.pretokenizers[%d]", i);
    if (strcmp(type_of(step), "Split"))
        return FAIL(ld, TD_ENOTSUP, "%s: type %s, expected Split", where,
                    type_of(step));
    const char *re = json_string_value(
        json_object_get(json_object_get(step, "pattern"), "Regex"));
    if (!re)
        return FAIL(ld, TD_ENOTSUP, "%s.pattern: expected a Regex", where);
    char *norm = unescape_crlf(re);
    if (!norm)
        return FAIL(ld, TD_ENOMEM, "%s: out of memory", where);
    bool same = strcmp(norm, want) == 0;
    free(norm);
    if (!same)
        return FAIL(ld, TD_ENOTSUP,
                    "%s.pattern.Regex is not the DeepSeek-V4 pattern this "
                    "tokenizer implements (found \"%.80s\")", where, re);
    const char *beh = json_string_value(json_object_get(step, "behavior"));
    if (!beh || strcmp(beh, "Isolated"))
        return FAIL(ld, TD_ENOTSUP, "%s.behavior: %s, expected Isolated",
                    where, beh ? beh : "(none)");
    return want_bool(ld, step, where, "invert", false);
}

static td_err check_pipeline(loader *ld, json_t *root)
{
    json_t *norm = json_object_get(root, "normalizer");
    if (norm && !json_is_null(norm)) {
        json_t *list = json_object_get(norm, "normalizers");
        if (strcmp(type_of(norm), "Sequence") || !json_is_array(list) ||
            json_array_size(list) != 0)
            return FAIL(ld, TD_ENOTSUP,
                        "normalizer: only none or an empty Sequence is "
                        "supported (found type %s)", type_of(norm));
    }

    json_t *pre = json_object_get(root, "pre_tokenizer");
    json_t *steps = json_object_get(pre, "pretokenizers");
    if (!pre || strcmp(type_of(pre), "Sequence") || !json_is_array(steps) ||
        json_array_size(steps) != 4)
        return FAIL(ld, TD_ENOTSUP,
                    "pre_tokenizer: expected a Sequence of 3 Splits and "
                    "ByteLevel (the DeepSeek-V4 pre-tokenizer)");
    static const char *const want[3] = {pattern_numbers, pattern_cjk,
                                        pattern_words};
    td_err rc;
    for (int i = 0; i < 3; i++)
        if ((rc = check_split(ld, json_array_get(steps, i), i, want[i])))
            return rc;
    json_t *bl = json_array_get(steps, 3);
    if (strcmp(type_of(bl), "ByteLevel"))
        return FAIL(ld, TD_ENOTSUP,
                    "pre_tokenizer.pretokenizers[3]: type %s, expected "
                    "ByteLevel", type_of(bl));
    if ((rc = want_bool(ld, bl, "pre_tokenizer.pretokenizers[3]",
                        "add_prefix_space", false)) ||
        (rc = want_bool(ld, bl, "pre_tokenizer.pretokenizers[3]",
                        "use_regex", false)))
        return rc;

    json_t *dec = json_object_get(root, "decoder");
    if (!dec || strcmp(type_of(dec), "ByteLevel"))
        return FAIL(ld, TD_ENOTSUP, "decoder: type %s, expected ByteLevel",
                    dec ? type_of(dec) : "(none)");
    static const char *const unset[2] = {"truncation", "padding"};
    for (int i = 0; i < 2; i++) {
        json_t *v = json_object_get(root, unset[i]);
        if (v && !json_is_null(v))
            return FAIL(ld, TD_ENOTSUP, "%s: must be null", unset[i]);
    }
    return TD_OK;
}

static td_err check_model(loader *ld, json_t *model)
{
    if (!json_is_object(model))
        return FAIL(ld, TD_ECORRUPT, "model: missing or not an object");
    if (strcmp(type_of(model), "BPE"))
        return FAIL(ld, TD_ENOTSUP, "model.type: %s, expected BPE",
                    type_of(model));
    static const char *const nulls[] = {"dropout", "unk_token",
                                        "continuing_subword_prefix",
                                        "end_of_word_suffix"};
    for (size_t i = 0; i < sizeof nulls / sizeof *nulls; i++) {
        json_t *v = json_object_get(model, nulls[i]);
        bool empty = json_is_string(v) && json_string_length(v) == 0;
        if (v && !json_is_null(v) && !empty)
            return FAIL(ld, TD_ENOTSUP, "model.%s: only null is supported",
                        nulls[i]);
    }
    td_err rc = want_bool(ld, model, "model", "byte_fallback", false);
    if (rc)
        return rc;
    json_t *im = json_object_get(model, "ignore_merges");
    if (im && !json_is_null(im) && !json_is_boolean(im))
        return FAIL(ld, TD_ECORRUPT, "model.ignore_merges: not a boolean");
    if (!json_is_object(json_object_get(model, "vocab")))
        return FAIL(ld, TD_ECORRUPT, "model.vocab: missing or not an object");
    if (!json_is_array(json_object_get(model, "merges")))
        return FAIL(ld, TD_ECORRUPT, "model.merges: missing or not an array");
    return TD_OK;
}

/* An id field: an integer in [0, MAX_IDS). */
static td_err get_id(loader *ld, json_t *v, const char *where, int32_t *id)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) >= MAX_IDS)
        return FAIL(ld, TD_ECORRUPT, "%s: id is not an integer in [0, %d)",
                    where, MAX_IDS);
    *id = (int32_t)json_integer_value(v);
    return TD_OK;
}

/* The spelling of each id, pointing into the JSON tree, while loading. */
typedef struct {
    const char **str;
    size_t *len;
} spellings;

static td_err load_vocab(loader *ld, td_tok *tok, json_t *vocab,
                         spellings *sp)
{
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        /* max_id_of has checked every id. */
        int32_t id = (int32_t)json_integer_value(v);
        size_t len = strlen(key);
        if (tok->id_flags[id] & TOK_ID_VALID)
            return FAIL(ld, TD_ECORRUPT,
                        "model.vocab: id %d is given to two tokens", id);
        tok->id_flags[id] |= TOK_ID_VALID;
        sp->str[id] = key;
        sp->len[id] = len;
        if (tok_strmap_put(&tok->vocab, key, len, id, NULL) < 0)
            return FAIL(ld, TD_ENOMEM, "model.vocab: out of memory");
    }
    return TD_OK;
}

/* Splits merges[i] ("a b" or ["a", "b"]) into its two token spellings. */
static td_err merge_parts(loader *ld, json_t *m, size_t i, const char **a,
                          size_t *alen, const char **b, size_t *blen)
{
    if (json_is_string(m)) {
        const char *s = json_string_value(m);
        const char *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' ') || sp == s || !sp[1])
            return FAIL(ld, TD_ECORRUPT,
                        "model.merges[%zu]: \"%.60s\" is not two tokens "
                        "separated by one space", i, s);
        *a = s, *alen = (size_t)(sp - s);
        *b = sp + 1, *blen = strlen(sp + 1);
        return TD_OK;
    }
    if (json_is_array(m) && json_array_size(m) == 2 &&
        json_is_string(json_array_get(m, 0)) &&
        json_is_string(json_array_get(m, 1))) {
        *a = json_string_value(json_array_get(m, 0));
        *alen = json_string_length(json_array_get(m, 0));
        *b = json_string_value(json_array_get(m, 1));
        *blen = json_string_length(json_array_get(m, 1));
        return TD_OK;
    }
    return FAIL(ld, TD_ECORRUPT,
                "model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", i);
}

static td_err load_merges(loader *ld, td_tok *tok, json_t *merges)
{
    size_t n = json_array_size(merges);
    if (n >= INT32_MAX)
        return FAIL(ld, TD_ECORRUPT, "model.merges: too many merges");
    char *buf = NULL;
    size_t cap = 0;
    td_err rc = TD_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        const char *a = NULL, *b = NULL;
        size_t alen = 0, blen = 0;
        int32_t ida, idb, idm;
        if ((rc = merge_parts(ld, json_array_get(merges, i), i, &a, &alen, &b,
                              &blen)))
            break;
        if (!tok_strmap_get(&tok->vocab, a, alen, &ida) ||
            !tok_strmap_get(&tok->vocab, b, blen, &idb)) {
            rc = FAIL(ld, TD_ECORRUPT,
                      "model.merges[%zu]: \"%.40s\" is not in the vocabulary",
                      i, tok_strmap_get(&tok->vocab, a, alen, &ida) ? b : a);
            break;
        }
        if (alen + blen > cap) {
            cap = 2 * (alen + blen);
            char *nb = realloc(buf, cap);
            if (!nb) {
                rc = FAIL(ld, TD_ENOMEM, "model.merges: out of memory");
                break;
            }
            buf = nb;
        }
        memcpy(buf, a, alen);
        memcpy(buf + alen, b, blen);
        if (!tok_strmap_get(&tok->vocab, buf, alen + blen, &idm)) {
            rc = FAIL(ld, TD_ECORRUPT,
                      "model.merges[%zu]: the merged token \"%.*s\" is not "
                      "in the vocabulary", i, (int)(alen + blen > 60 ? 60 :
                      alen + blen), buf);
            break;
        }
        /* A repeated pair keeps its last rank, as in HF's merge map. */
        uint64_t key = (uint64_t)(uint32_t)ida << 32 | (uint32_t)idb;
        if (tok_pairmap_put(&tok->merges, key, (int32_t)i, idm) < 0)
            rc = FAIL(ld, TD_ENOMEM, "model.merges: out of memory");
    }
    free(buf);
    return rc;
}

static td_err load_added(loader *ld, td_tok *tok, json_t *added,
                         spellings *sp)
{
    size_t i;
    json_t *t;
    json_array_foreach(added, i, t) {
        char where[64];
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        json_t *content = json_object_get(t, "content");
        if (!json_is_object(t) || !json_is_string(content))
            return FAIL(ld, TD_ECORRUPT, "%s: expected an object with a "
                        "string content", where);
        int32_t id = 0;
        td_err rc = get_id(ld, json_object_get(t, "id"), where, &id);
        static const char *const flags[] = {"lstrip", "rstrip", "single_word"};
        for (int k = 0; !rc && k < 3; k++)
            rc = want_bool(ld, t, where, flags[k], false);
        if (rc)
            return rc;
        json_t *special = json_object_get(t, "special");
        json_t *normalized = json_object_get(t, "normalized");
        if ((special && !json_is_boolean(special)) ||
            (normalized && !json_is_boolean(normalized)))
            return FAIL(ld, TD_ECORRUPT, "%s: special/normalized must be "
                        "booleans", where);
        bool is_special = json_is_true(special);
        /* HF's default: special tokens are matched on the raw text. */
        bool is_norm = normalized ? json_is_true(normalized) : !is_special;

        const char *s = json_string_value(content);
        size_t len = json_string_length(content);
        tok->id_flags[id] = TOK_ID_VALID | TOK_ID_ADDED |
                            (is_special ? TOK_ID_SPECIAL : 0);
        sp->str[id] = s;
        sp->len[id] = len;
        if (tok_strmap_put(&tok->added, s, len, id, NULL) < 0 ||
            tok_trie_add(&tok->trie[is_norm], (const uint8_t *)s, len, id))
            return FAIL(ld, TD_ENOMEM, "added_tokens: out of memory");
    }
    return TD_OK;
}

/* ByteLevel decoding of one spelling: map each character back through the
 * byte table; a token with any character outside the table (an added token
 * such as "<｜User｜>") is its own UTF-8 bytes, as in HF's decoder. */
static size_t spell_to_bytes(const char *s, size_t n, const int16_t *cp_byte,
                             char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        i += tok_utf8_next((const uint8_t *)s + i, n - i, &cp);
        if (cp < 0 || cp >= 324 || cp_byte[cp] < 0) {
            memcpy(out, s, n);
            return n;
        }
        out[o++] = (char)cp_byte[cp];
    }
    return o;
}

static td_err build_pieces(loader *ld, td_tok *tok, const spellings *sp)
{
    int16_t cp_byte[324];
    memset(cp_byte, 0xff, sizeof cp_byte);
    for (int b = 0; b < 256; b++)
        cp_byte[tok_byte_to_cp((uint8_t)b)] = (int16_t)b;

    size_t total = 0;
    for (int32_t id = 0; id < tok->n_ids; id++)
        total += sp->len[id];
    tok->piece_off = malloc(((size_t)tok->n_ids + 1) * sizeof *tok->piece_off);
    tok->piece_data = malloc(total + 1);
    if (!tok->piece_off || !tok->piece_data)
        return FAIL(ld, TD_ENOMEM, "out of memory");
    size_t off = 0;
    for (int32_t id = 0; id < tok->n_ids; id++) {
        tok->piece_off[id] = off;
        if (sp->str[id])
            off += spell_to_bytes(sp->str[id], sp->len[id], cp_byte,
                                  tok->piece_data + off);
        if (tok->ignore_merges && (tok->id_flags[id] & TOK_ID_VALID) &&
            !(tok->id_flags[id] & TOK_ID_ADDED) &&
            tok_strmap_put(&tok->raw_vocab, tok->piece_data +
                           tok->piece_off[id], off - tok->piece_off[id], id,
                           NULL) < 0)
            return FAIL(ld, TD_ENOMEM, "out of memory");
    }
    tok->piece_off[tok->n_ids] = off;
    tok->piece_data[off] = '\0';
    return TD_OK;
}

/* The largest id in model.vocab and added_tokens, -1 if there is none. */
static td_err max_id_of(loader *ld, json_t *vocab, json_t *added,
                        int32_t *max)
{
    const char *key;
    json_t *v, *t;
    size_t i;
    td_err rc;
    *max = -1;
    json_object_foreach(vocab, key, v) {
        int32_t id;
        char where[96];
        snprintf(where, sizeof where, "model.vocab[\"%.40s\"]", key);
        if ((rc = get_id(ld, v, where, &id)))
            return rc;
        if (id > *max)
            *max = id;
    }
    json_array_foreach(added, i, t) {
        int32_t id;
        char where[64];
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        if ((rc = get_id(ld, json_object_get(t, "id"), where, &id)))
            return rc;
        if (id > *max)
            *max = id;
    }
    return TD_OK;
}

static td_err load_tree(loader *ld, td_tok *tok, json_t *root)
{
    if (!json_is_object(root))
        return FAIL(ld, TD_ECORRUPT, "top level is not a JSON object");
    td_err rc;
    json_t *model = json_object_get(root, "model");
    if ((rc = check_pipeline(ld, root)) || (rc = check_model(ld, model)))
        return rc;
    json_t *vocab = json_object_get(model, "vocab");
    json_t *added = json_object_get(root, "added_tokens");
    if (!added)
        added = json_array(); /* absent: none (json_array_* accept NULL) */
    else if (!json_is_array(added))
        return FAIL(ld, TD_ECORRUPT, "added_tokens: not an array");
    else
        json_incref(added);
    tok->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));

    int32_t max = -1;
    spellings sp = {0};
    if ((rc = max_id_of(ld, vocab, added, &max)))
        goto out;
    if (max < 0) {
        rc = FAIL(ld, TD_ECORRUPT, "model.vocab: empty");
        goto out;
    }
    tok->n_ids = max + 1;
    tok->id_flags = calloc((size_t)tok->n_ids, 1);
    sp.str = calloc((size_t)tok->n_ids, sizeof *sp.str);
    sp.len = calloc((size_t)tok->n_ids, sizeof *sp.len);
    if (!tok->id_flags || !sp.str || !sp.len) {
        rc = FAIL(ld, TD_ENOMEM, "out of memory for %d ids", tok->n_ids);
        goto out;
    }
    if ((rc = load_vocab(ld, tok, vocab, &sp)) ||
        (rc = load_merges(ld, tok, json_object_get(model, "merges"))) ||
        (rc = load_added(ld, tok, added, &sp)) ||
        (rc = build_pieces(ld, tok, &sp)))
        goto out;
    for (int b = 0; b < 256; b++) {
        char u[4];
        uint32_t cp = tok_byte_to_cp((uint8_t)b);
        size_t n = cp < 0x80 ? (u[0] = (char)cp, 1)
                             : (u[0] = (char)(0xc0 | cp >> 6),
                                u[1] = (char)(0x80 | (cp & 0x3f)), 2);
        if (!tok_strmap_get(&tok->vocab, u, n, &tok->byte_id[b]))
            tok->byte_id[b] = -1;
    }
    for (int c = 0; c < 128; c++)
        tok->ascii_class[c] = (uint16_t)tok_char_class(c);
out:
    free(sp.str);
    free(sp.len);
    json_decref(added);
    return rc;
}

td_err td_tok_load_buffer(td_tok **out, const char *json, size_t len,
                          char *err, size_t errlen)
{
    loader ld = {err, errlen};
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    if (!root)
        return FAIL(&ld, TD_ECORRUPT, "JSON error at line %d column %d: %s",
                    jerr.line, jerr.column, jerr.text);
    td_tok *tok = calloc(1, sizeof *tok);
    td_err rc = tok ? load_tree(&ld, tok, root)
                    : FAIL(&ld, TD_ENOMEM, "out of memory");
    json_decref(root);
    if (rc) {
        td_tok_destroy(tok);
        return rc;
    }
    *out = tok;
    return TD_OK;
}

td_err td_tok_load(td_tok **out, const char *path, char *err, size_t errlen)
{
    char *data = NULL, msg[512] = "";
    size_t len = 0;
    *out = NULL;
    td_err rc = td_file_read(path, &data, &len, msg, sizeof msg);
    if (rc) /* the message names the path already */
        return td_errf(err, errlen, rc, "tokenizer: %s", msg);
    rc = td_tok_load_buffer(out, data, len, msg, sizeof msg);
    free(data);
    if (rc)
        return td_errf(err, errlen, rc, "tokenizer %s: %s", path, msg);
    return TD_OK;
}

void td_tok_destroy(td_tok *tok)
{
    if (!tok)
        return;
    free(tok->id_flags);
    free(tok->piece_off);
    free(tok->piece_data);
    tok_strmap_free(&tok->vocab);
    tok_strmap_free(&tok->added);
    tok_strmap_free(&tok->raw_vocab);
    tok_pairmap_free(&tok->merges);
    tok_trie_free(&tok->trie[0]);
    tok_trie_free(&tok->trie[1]);
    free(tok);
}
