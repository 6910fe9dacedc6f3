/* What the constrain/ tests share: the vocabularies (the tiny model's
 * tokenizer and, when present, the official V4 one), a validator for the
 * supported JSON Schema subset, random walks that pick allowed tokens until
 * EOS and check on sampled states that every token's advance agrees with
 * the mask, and the tools the tool-call tests declare. Each test file
 * includes it once (statics). */
#ifndef TD_TESTS_CONS_COMMON_H
#define TD_TESTS_CONS_COMMON_H

#define TD_UNUSED __attribute__((unused))

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "constrain/constrain.h"
#include "router/chat_encode.h"
#include "router/conv.h"
#include "router/dsml.h"
#include "tests/td_test.h"

#define TINY_TOK TD_SOURCE_ROOT "/models/tiny-v4/tokenizer.json"
#define V4_TOK TD_SOURCE_ROOT "/../shared/data/deepseek-v4-tokenizer/tokenizer.json"
#define EOS_TEXT "<｜end▁of▁sentence｜>"

typedef struct {
    td_tok *tok;
    td_cons_vocab *v;
    int32_t eos;
} voc;

static TD_UNUSED double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static TD_UNUSED voc vocs[2];
static TD_UNUSED int nvocs = -1;

static TD_UNUSED void load_vocs(void)
{
    if (nvocs >= 0)
        return;
    nvocs = 0;
    const char *paths[2] = {TINY_TOK, V4_TOK};
    for (int i = 0; i < 2; i++) {
        char err[256];
        voc *x = &vocs[nvocs];
        FILE *f = fopen(paths[i], "rb");
        if (!f)
            continue;
        fclose(f);
        double t0 = now_s();
        if (td_tok_load(&x->tok, paths[i], err, sizeof err) ||
            (t0 = now_s(), td_cons_vocab_create(&x->v, x->tok, err, sizeof err))) {
            fprintf(stderr, "%s: %s\n", paths[i], err);
            td_test_failures++;
            continue;
        }
        fprintf(stderr, "vocabulary of %d ids built in %.1f ms\n", td_cons_vocab_size(x->v),
                (now_s() - t0) * 1e3);
        TD_CHECK(!td_tok_token_to_id(x->tok, EOS_TEXT, strlen(EOS_TEXT), &x->eos));
        nvocs++;
    }
}

static TD_UNUSED uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static TD_UNUSED int ids_push(td_tok_ids *v, int32_t id)
{
    if (v->len == v->cap) {
        size_t nc = v->cap ? 2 * v->cap : 16;
        int32_t *p = realloc(v->ids, nc * sizeof *p);
        if (!p)
            return -1;
        v->ids = p;
        v->cap = nc;
    }
    v->ids[v->len++] = id;
    return 0;
}

static TD_UNUSED bool bit(const uint64_t *m, int32_t i) { return (m[i / 64] >> (i % 64)) & 1; }

/* ---- a validator for the supported subset ----------------------------------- */

static TD_UNUSED json_t *vroot;  /* the schema a $ref names into */

static TD_UNUSED bool valid(json_t *s, json_t *v)
{
    const char *ref = json_string_value(json_object_get(s, "$ref"));
    if (ref)
        s = !strcmp(ref, "#") ? vroot
            : json_object_get(json_object_get(vroot, "$defs"), ref + strlen("#/$defs/"));
    if (!s || json_is_true(s) || (json_is_object(s) && json_object_size(s) == 0))
        return true;
    json_t *en = json_object_get(s, "enum"), *cn = json_object_get(s, "const");
    json_t *any = json_object_get(s, "anyOf"), *type = json_object_get(s, "type");
    size_t i;
    json_t *x;
    if (cn)
        return json_equal(cn, v);
    if (en) {
        json_array_foreach(en, i, x) if (json_equal(x, v)) return true;
        return false;
    }
    if (any) {
        json_array_foreach(any, i, x) if (valid(x, v)) return true;
        return false;
    }
    const char *tn = json_is_object(v) ? "object" : json_is_array(v) ? "array"
        : json_is_string(v) ? "string" : json_is_integer(v) ? "integer"
        : json_is_real(v) ? "number" : json_is_boolean(v) ? "boolean" : "null";
    if (type) {
        bool ok = false;
        json_t *list = json_is_array(type) ? json_incref(type) : json_pack("[O]", type);
        json_array_foreach(list, i, x) {
            const char *t = json_string_value(x);
            ok |= !strcmp(t, tn) || (!strcmp(t, "number") && !strcmp(tn, "integer"));
        }
        json_decref(list);
        if (!ok)
            return false;
    }
    if (json_is_object(v)) {
        json_t *props = json_object_get(s, "properties"), *add = json_object_get(s, "additionalProperties");
        const char *k;
        json_array_foreach(json_object_get(s, "required"), i, x)
            if (!json_object_get(v, json_string_value(x))) return false;
        json_object_foreach(v, k, x) {
            json_t *ps = json_object_get(props, k);
            if (ps ? !valid(ps, x) : (props || json_is_false(add) || (add && !valid(add, x))))
                return false;
        }
    }
    if (json_is_array(v)) {
        json_array_foreach(v, i, x) if (!valid(json_object_get(s, "items"), x)) return false;
    }
    return true;
}

/* ---- random walks ------------------------------------------------------------ */

static TD_UNUSED int32_t *hist;
static TD_UNUSED size_t nhist;

/* Whether advance agrees with the mask for a sample of ids (all of a small
 * vocabulary; else half of them allowed ones); advance's refusals leave the state unchanged, and an
 * accepted id is taken back by replaying the history. */
static TD_UNUSED void check_agree(td_cons_matcher *m, voc *x, const uint64_t *mask, const int32_t *ok,
                        int32_t nok, uint64_t *rs)
{
    int32_t n = td_cons_vocab_size(x->v);
    int tries = n <= 1024 ? n : 400;
    for (int k = 0; k < tries; k++) {
        /* a large vocabulary: half any id, half allowed ones */
        int32_t id = n <= 1024 ? k : k % 2 ? ok[rng_next(rs) % (uint64_t)nok]
                                           : (int32_t)(rng_next(rs) % (uint64_t)n);
        td_err e = td_cons_advance(m, id);
        if ((e == TD_OK) != bit(mask, id)) {
            fprintf(stderr, "id %d: mask %d, advance %s\n", id, bit(mask, id), td_strerror(e));
            td_test_failures++;
            return;
        }
        if (e == TD_OK) {
            td_cons_matcher_reset(m);
            for (size_t i = 0; i < nhist; i++)
                TD_CHECK(!td_cons_advance(m, hist[i]));
        }
    }
}

/* Walks to EOS; returns the text before it (caller frees) or NULL. */
static TD_UNUSED char *walk(td_cons_matcher *m, voc *x, uint64_t seed, bool agree, size_t *len)
{
    int32_t n = td_cons_vocab_size(x->v);
    uint64_t *mask = calloc(td_cons_mask_words(x->v), sizeof *mask);
    int32_t *ok = malloc((size_t)n * sizeof *ok), *closing = malloc((size_t)n * sizeof *ok);
    int32_t *special = malloc((size_t)n * sizeof *ok);
    uint64_t rs = seed * 0x9E3779B97F4A7C15ull + 1;
    td_tok_ids ids = {0};
    hist = realloc(hist, 4096 * sizeof *hist);
    nhist = 0;
    td_cons_matcher_reset(m);
    char *text = NULL;
    for (int step = 0; step < 4000; step++) {
        td_cons_mask(m, mask);
        int32_t nok = 0, ncl = 0, nsp = 0;
        for (int32_t i = 0; i < n; i++) {
            if (!bit(mask, i))
                continue;
            ok[nok++] = i;
            const char *p;
            size_t pl;
            bool cl = false;
            if (td_tok_is_added(x->tok, i))
                special[nsp++] = i;
            else if (!td_tok_id_to_piece(x->tok, i, &p, &pl))
                for (size_t j = 0; j < pl; j++)
                    cl |= strchr("\"}]<>/,", p[j]) && p[j];
            if (cl)
                closing[ncl++] = i;
        }
        if (nok == 0) {
            fprintf(stderr, "walk %llu: dead end after %zu tokens\n", (unsigned long long)seed, nhist);
            td_test_failures++;
            goto out;
        }
        if (agree && rng_next(&rs) % 8 == 0)
            check_agree(m, x, mask, ok, nok, &rs);
        /* Drawn uniformly the walk would rarely end a string; lean towards
         * markers and closing punctuation, more so as it grows. */
        uint64_t dice = rng_next(&rs) % 100, lean = step > 100 ? 90 : 35;
        int32_t id = nsp && dice < lean ? special[rng_next(&rs) % (uint64_t)nsp]
                   : ncl && dice < lean ? closing[rng_next(&rs) % (uint64_t)ncl]
                   : ok[rng_next(&rs) % (uint64_t)nok];
        if (td_cons_advance(m, id)) {
            fprintf(stderr, "advance refused allowed id %d\n", id);
            td_test_failures++;
            goto out;
        }
        if (nhist < 4096)
            hist[nhist++] = id;
        if (id == x->eos) {
            TD_CHECK(td_cons_done(m));
            td_cons_mask(m, mask);
            for (size_t w = 0; w < td_cons_mask_words(x->v); w++)
                TD_CHECK(mask[w] == 0);
            td_tok_bytes b = {0};
            TD_CHECK(!td_tok_decode(x->tok, hist, nhist - 1, 0, &b, NULL, 0));
            *len = b.len;
            text = b.data ? b.data : calloc(1, 1);
            goto out;
        }
    }
    fprintf(stderr, "walk %llu: no EOS in 4000 tokens\n", (unsigned long long)seed);
    td_test_failures++;
out:
    td_tok_ids_free(&ids);
    free(mask);
    free(ok);
    free(closing);
    free(special);
    return text;
}

static TD_UNUSED const char *const SCHEMAS[] = {
    NULL,
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
    "\"age\":{\"type\":\"integer\"},\"tags\":{\"type\":\"array\",\"items\":"
    "{\"type\":\"string\",\"enum\":[\"a\",\"b\",\"c d\",\"é\"]}},\"ok\":{\"type\":\"boolean\"},"
    "\"nested\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\"},"
    "\"y\":{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"null\"}]}},\"required\":[\"x\"],"
    "\"additionalProperties\":false}},\"required\":[\"name\",\"age\"],"
    "\"additionalProperties\":false}",
    "{\"type\":\"array\",\"items\":{\"type\":[\"integer\",\"null\"]}}",
    "{\"enum\":[1,12,\"x\",null,true]}",
    "{\"const\":{\"a\":[1,2]}}",
    "{\"type\":\"object\",\"additionalProperties\":{\"type\":\"number\"}}",
    "{\"type\":\"string\"}",
    "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"},\"b\":{},"
    "\"c\":{\"type\":\"string\"}},\"required\":[\"c\"]}",
    "{\"$defs\":{\"pt\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"integer\"},"
    "\"y\":{\"type\":\"integer\"}},\"required\":[\"x\",\"y\"],\"additionalProperties\":false}},"
    "\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/$defs/pt\"},\"b\":{\"type\":"
    "\"array\",\"items\":{\"$ref\":\"#/$defs/pt\",\"description\":\"a point\"}}},"
    "\"required\":[\"a\"],\"additionalProperties\":false}",
};

/* ---- tool calls --------------------------------------------------------------- */

static TD_UNUSED const char TOOLS[] =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":"
    "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},\"days\":"
    "{\"type\":\"integer\"},\"units\":{\"type\":\"array\",\"items\":{\"enum\":[\"C\",\"F\"]}}},"
    "\"required\":[\"city\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"search\",\"parameters\":"
    "{\"type\":\"object\",\"properties\":{\"query\":{\"type\":\"string\"},\"filter\":"
    "{\"anyOf\":[{\"type\":\"string\",\"enum\":[\"news\",\"web\"]},{\"type\":\"null\"}]},"
    "\"opts\":{}}}}},"
    "{\"type\":\"function\",\"name\":\"now\"}]";

static TD_UNUSED void cleanup(void)
{
    for (int i = 0; i < nvocs; i++) {
        td_cons_vocab_destroy(vocs[i].v);
        td_tok_destroy(vocs[i].tok);
    }
    free(hist);
}

/* The last case of each file: frees the vocabularies (so a leak checker
 * sees what the cases left). */
static TD_UNUSED void test_cleanup(void)
{
    cleanup();
    nvocs = -1;
}

static TD_UNUSED int cons_main(const td_test_case *cases, int argc, char **argv)
{
    int r = td_test_run(cases, argc, argv);
    if (nvocs > 0)
        cleanup();
    return r;
}

#endif
