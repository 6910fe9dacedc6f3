/* constrain/: masks and matchers over real vocabularies.
 *
 * Random walks pick a random allowed token until EOS and check that the
 * text parses (jansson for JSON, router/dsml.c for tool calls) and fits the
 * schema; on sampled states every token's advance must agree with the mask.
 * Runs on the tiny model's tokenizer and, when present, the V4 one (and
 * prints how long a mask takes on it). */
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

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static voc vocs[2];
static int nvocs = -1;

static void load_vocs(void)
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

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int ids_push(td_tok_ids *v, int32_t id)
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

static bool bit(const uint64_t *m, int32_t i) { return (m[i / 64] >> (i % 64)) & 1; }

/* ---- a validator for the supported subset ----------------------------------- */

static json_t *vroot;  /* the schema a $ref names into */

static bool valid(json_t *s, json_t *v)
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

static int32_t *hist;
static size_t nhist;

/* Whether advance agrees with the mask for a sample of ids (all of a small
 * vocabulary; else half of them allowed ones); advance's refusals leave the state unchanged, and an
 * accepted id is taken back by replaying the history. */
static void check_agree(td_cons_matcher *m, voc *x, const uint64_t *mask, const int32_t *ok,
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
static char *walk(td_cons_matcher *m, voc *x, uint64_t seed, bool agree, size_t *len)
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

static const char *const SCHEMAS[] = {
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

static void test_json_walks(void)
{
    load_vocs();
    for (int vi = 0; vi < nvocs; vi++) {
        voc *x = &vocs[vi];
        int seeds = vi == 0 ? 60 : 3;
        for (size_t si = 0; si < sizeof SCHEMAS / sizeof *SCHEMAS; si++) {
            const char *sc = SCHEMAS[si];
            td_cons_grammar *g;
            td_cons_matcher *m;
            char err[256];
            if (td_cons_grammar_json(&g, sc, sc ? strlen(sc) : 0, err, sizeof err)) {
                fprintf(stderr, "schema %zu: %s\n", si, err);
                td_test_failures++;
                continue;
            }
            TD_CHECK(!td_cons_matcher_create(&m, g, x->v, NULL, err, sizeof err));
            json_t *schema = sc ? json_loads(sc, 0, NULL) : json_pack("{ss}", "type", "object");
            vroot = schema;
            for (int seed = 0; seed < seeds; seed++) {
                size_t len;
                char *t = walk(m, x, (uint64_t)(seed + 1) * 7919 + si, seed < 2, &len);
                if (!t)
                    break;
                json_error_t je;
                json_t *v = json_loadb(t, len, JSON_DECODE_ANY, &je);
                if (!v || !valid(schema, v)) {
                    fprintf(stderr, "schema %zu seed %d: %s: %.*s\n", si, seed,
                            v ? "does not fit" : je.text, (int)len, t);
                    td_test_failures++;
                }
                json_decref(v);
                free(t);
            }
            json_decref(schema);
            td_cons_matcher_destroy(m);
            td_cons_grammar_destroy(g);
        }
    }
}

/* ---- tool calls --------------------------------------------------------------- */

static const char TOOLS[] =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":"
    "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},\"days\":"
    "{\"type\":\"integer\"},\"units\":{\"type\":\"array\",\"items\":{\"enum\":[\"C\",\"F\"]}}},"
    "\"required\":[\"city\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"search\",\"parameters\":"
    "{\"type\":\"object\",\"properties\":{\"query\":{\"type\":\"string\"},\"filter\":"
    "{\"anyOf\":[{\"type\":\"string\",\"enum\":[\"news\",\"web\"]},{\"type\":\"null\"}]},"
    "\"opts\":{}}}}},"
    "{\"type\":\"function\",\"name\":\"now\"}]";

typedef struct {
    json_t *tools;
    char name[128];
    td_tok_bytes args;
    int calls, bad, content;
    const char *force;
} calls_sink;

static json_t *params_of(json_t *tools, const char *name)
{
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        json_t *fn = json_object_get(t, "function");
        if (!fn)
            fn = t;
        if (!strcmp(json_string_value(json_object_get(fn, "name")), name))
            return json_object_get(fn, "parameters");
    }
    return NULL;
}

static void on_call(void *arg, const td_dsml_event *ev)
{
    calls_sink *s = arg;
    switch (ev->kind) {
    case TD_DSML_CALL_BEGIN:
        snprintf(s->name, sizeof s->name, "%.*s", (int)ev->len, ev->text);
        s->args.len = 0;
        break;
    case TD_DSML_CALL_ARGS:
        td_conv_bytes_append(&s->args, ev->text, ev->len);
        break;
    case TD_DSML_CALL_END: {
        json_t *v = json_loadb(s->args.data, s->args.len, 0, NULL);
        json_t *p = params_of(s->tools, s->name);
        if (!json_is_object(v) || (p && !valid(p, v)) || (!p && json_object_size(v)) ||
            (s->force && strcmp(s->force, s->name))) {
            fprintf(stderr, "call %s: bad arguments %.*s\n", s->name, (int)s->args.len,
                    s->args.data);
            s->bad++;
        }
        json_decref(v);
        s->calls++;
        break;
    }
    case TD_DSML_CALL_ABORT:
        s->bad++;
        break;
    default:
        s->content += ev->len > 0;
        break;
    }
}

static void tools_walks(const td_cons_tools_opts *o, int max_calls)
{
    load_vocs();
    json_t *tools = json_loads(TOOLS, 0, NULL);
    for (int vi = 0; vi < nvocs; vi++) {
        voc *x = &vocs[vi];
        td_cons_grammar *g;
        td_cons_matcher *m;
        char err[256];
        if (td_cons_grammar_tools(&g, TOOLS, strlen(TOOLS), o, err, sizeof err) ||
            td_cons_matcher_create(&m, g, x->v, NULL, err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            td_test_failures++;
            break;
        }
        int seeds = vi == 0 ? 40 : 3;
        for (int seed = 0; seed < seeds; seed++) {
            size_t len;
            char *t = walk(m, x, (uint64_t)seed * 31 + 5, seed < 2, &len);
            if (!t)
                break;
            static const char open[] = "\n\n<｜DSML｜tool_calls>\n";
            TD_CHECK(len > strlen(open) && !memcmp(t, open, strlen(open)));
            calls_sink s = {.tools = tools, .force = o ? o->force_name : NULL};
            td_dsml *p;
            td_dsml_opts po = {.thinking = false, .tools = true};
            td_dsml_result r;
            TD_CHECK(!td_dsml_create(&p, &po, on_call, &s));
            TD_CHECK(!td_dsml_feed(p, t, len));
            TD_CHECK(!td_dsml_finish(p, &r));
            td_dsml_destroy(p);
            if (s.bad || s.content || r.malformed || r.truncated || s.calls < 1 ||
                s.calls > max_calls) {
                fprintf(stderr, "seed %d: calls %d bad %d content %d malformed %d: %.*s\n",
                        seed, s.calls, s.bad, s.content, r.malformed, (int)len, t);
                td_test_failures++;
            }
            td_tok_bytes_free(&s.args);
            free(t);
        }
        td_cons_matcher_destroy(m);
        td_cons_grammar_destroy(g);
    }
    json_decref(tools);
}

static void test_tools_walks(void) { tools_walks(NULL, 1000); }

static void test_tools_forced(void)
{
    td_cons_tools_opts o = {.force_name = "search", .single = true};
    tools_walks(&o, 1);
}

/* What the chat encoder writes for calls must be accepted token by token. */
static void test_tools_encoder(void)
{
    load_vocs();
    for (int vi = 0; vi < nvocs; vi++) {
        voc *x = &vocs[vi];
        td_conv *c;
        td_conv_msg *msg;
        td_tok_bytes text = {0};
        char err[256];
        TD_CHECK(!td_conv_create(&c));
        TD_CHECK(!td_conv_add(c, TD_CONV_USER, &msg));
        TD_CHECK(!td_conv_set_content(msg, "hi", 2));
        TD_CHECK(!td_conv_add(c, TD_CONV_ASSISTANT, &msg));
        static const char a1[] = "{\"city\": \"Tokyo <b>\\n</x>\", \"days\": 3, \"units\": [\"C\"]}";
        static const char a2[] = "{\"query\": \"x\", \"filter\": null, \"opts\": {\"k\": [1.5, true]}}";
        TD_CHECK(!td_conv_add_call(msg, "c1", "get_weather", a1, strlen(a1)));
        TD_CHECK(!td_conv_add_call(msg, "c2", "now", "{}", 2));
        TD_CHECK(!td_conv_add_call(msg, "c3", "search", a2, strlen(a2)));
        TD_CHECK(!td_chat_render_text(c, &text, err, sizeof err));
        const char *at = strstr(text.data, "\n\n<｜DSML｜tool_calls>");
        TD_CHECK(at != NULL);
        td_cons_grammar *g;
        td_cons_matcher *m;
        TD_CHECK(!td_cons_grammar_tools(&g, TOOLS, strlen(TOOLS), NULL, err, sizeof err));
        TD_CHECK(!td_cons_matcher_create(&m, g, x->v, NULL, err, sizeof err));
        td_tok_ids ids = {0};
        if (at) {
            TD_CHECK(!td_tok_encode(x->tok, at, strlen(at), 0, &ids, err, sizeof err));
            for (size_t i = 0; i < ids.len; i++) {
                td_err e = td_cons_advance(m, ids.ids[i]);
                if (e) {
                    fprintf(stderr, "token %zu (%d) refused after: %s\n", i, ids.ids[i], at);
                    td_test_failures++;
                    break;
                }
            }
            TD_CHECK(ids.len && ids.ids[ids.len - 1] == x->eos);
            TD_CHECK(td_cons_done(m));
        }
        td_tok_ids_free(&ids);
        td_cons_matcher_destroy(m);
        td_cons_grammar_destroy(g);
        td_tok_bytes_free(&text);
        td_conv_destroy(c);
    }
}

/* Thinking first: anything up to </think>, then the grammar. */
static void test_thinking(void)
{
    load_vocs();
    voc *x = &vocs[0];
    td_cons_grammar *g;
    td_cons_matcher *m;
    char err[256];
    td_cons_matcher_opts o = {.thinking = true};
    TD_CHECK(!td_cons_grammar_json(&g, NULL, 0, err, sizeof err));
    TD_CHECK(!td_cons_matcher_create(&m, g, x->v, &o, err, sizeof err));
    static const char text[] = "Let me think {[\"</think>{\"a\": [1, {}]}";
    td_tok_ids ids = {0};
    TD_CHECK(!td_tok_encode(x->tok, text, strlen(text), 0, &ids, err, sizeof err));
    for (size_t i = 0; i < ids.len; i++)
        TD_CHECK(!td_cons_advance(m, ids.ids[i]));
    TD_CHECK(td_cons_done(m));
    /* logits masked: only EOS stays finite (and ids past the vocabulary go) */
    int32_t n = td_cons_vocab_size(x->v) + 3;
    float *lg = calloc((size_t)n, sizeof *lg);
    uint64_t *mask = calloc(td_cons_mask_words(x->v), sizeof *mask);
    td_cons_mask(m, mask);
    td_cons_mask_logits(mask, x->v, lg, n);
    for (int32_t i = 0; i < n; i++)
        TD_CHECK((isinf(lg[i]) != 0) == (i != x->eos));
    free(lg);
    free(mask);
    TD_CHECK(!td_cons_advance(m, x->eos));
    TD_CHECK(td_cons_advance(m, x->eos) == TD_EINVAL);
    TD_CHECK(td_cons_advance(m, -1) == TD_ERANGE);
    td_tok_ids_free(&ids);
    td_cons_matcher_destroy(m);
    td_cons_grammar_destroy(g);
}

/* ---- fixed texts: taken whole, or refused somewhere ---------------------------- */

/* Feeds text, tokenised (between \x02 marks as plain text: marker text
 * there becomes ordinary tokens), and returns whether every token was
 * taken and the grammar may end there. */
static bool takes(voc *x, td_cons_grammar *g, const char *text)
{
    td_cons_matcher *m;
    char err[256];
    td_tok_ids ids = {0};
    bool ok = !td_cons_matcher_create(&m, g, x->v, NULL, err, sizeof err);
    unsigned plain = 0;
    for (const char *p = text; ok && *p;) {
        const char *e = strchr(p, '\x02');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        ok = !td_tok_encode(x->tok, p, n, plain, &ids, err, sizeof err);
        plain ^= TD_TOK_PLAIN_TEXT;
        p += n + (e != NULL);
    }
    for (size_t i = 0; ok && i < ids.len; i++)
        ok = !td_cons_advance(m, ids.ids[i]);
    ok = ok && td_cons_done(m);
    td_tok_ids_free(&ids);
    td_cons_matcher_destroy(m);
    return ok;
}

static void test_texts(void)
{
    static const struct { int schema; const char *text; bool ok; } cases[] = {
        {1, "{\"name\": \"Bob\", \"age\": 3}", true},
        {1, "{\n  \"name\": \"B\\u00e9\\n\",\n  \"age\": -0,\n  \"nested\": {\"x\": 1.5e+10}\n}",
         true},
        {1, "{\"age\": 3, \"name\": \"Bob\"}", false},        /* order */
        {1, "{\"name\": \"Bob\"}", false},                    /* required */
        {1, "{\"name\": \"Bob\", \"age\": 3, \"x\": 1}", false}, /* extra */
        {1, "{\"name\": \"Bob\", \"age\": 1234567890123456}", false}, /* 16 digits */
        {1, "{\"name\": \"\\ud800\", \"age\": 3}", false},   /* lone surrogate */
        {1, "{\"name\": \"\\u0000\", \"age\": 3}", false},   /* NUL */
        {1, "{\"name\": \"a\tb\", \"age\": 3}", false},       /* control byte */
        {1, " {\"name\": \"Bob\", \"age\": 3}", false},        /* leading space */
        {1, "{\"name\": \"Bob\", \"age\": 3.5}", false},       /* integer */
        {1, "{\"name\": \"Bob\", \"age\": 3, \"tags\": [\"é\", \"c d\"]}", true},
        {1, "{\"name\": \"Bob\", \"age\": 3, \"tags\": [\"e\"]}", false},
        {3, "12", true},
        {3, "true", true},
        {3, "123", false},
        {4, "{\"a\":[1,2]}", true},
        {0, "{\"a\": [1, {\"b\": null}], \"c\": \"\x02｜DSML｜\x02\"}", true},
        {0, "[]", false},
    };
    load_vocs();
    for (int vi = 0; vi < nvocs; vi++) {
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            const char *sc = SCHEMAS[cases[i].schema];
            td_cons_grammar *g;
            char err[256];
            TD_CHECK(!td_cons_grammar_json(&g, sc, sc ? strlen(sc) : 0, err, sizeof err));
            if (takes(&vocs[vi], g, cases[i].text) != cases[i].ok) {
                fprintf(stderr, "json case %zu (%s): expected %s\n", i, cases[i].text,
                        cases[i].ok ? "taken" : "refused");
                td_test_failures++;
            }
            td_cons_grammar_destroy(g);
        }
    }
    /* DSML: raw values may hold '<' and "</x" but never the ｜DSML｜ text;
     * required parameters; EOS right after the block. */
#define HEAD "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
#define CITY(v) "<｜DSML｜parameter name=\"city\" string=\"true\">" v "</｜DSML｜parameter>"
#define TAIL "\n</｜DSML｜invoke>\n</｜DSML｜tool_calls><｜end▁of▁sentence｜>"
    static const struct { const char *text; bool ok; } tc[] = {
        {HEAD CITY("a < b </x> <") TAIL, true},
        {HEAD CITY("") "\n<｜DSML｜parameter name=\"days\" string=\"false\">-3</｜DSML｜parameter>"
         TAIL, true},
        {HEAD CITY("x \x02｜DSML｜\x02 y") TAIL, false},
        {HEAD CITY("x \x02｜DSM\x02 y") TAIL, true},
        {HEAD CITY("x") "\n<｜DSML｜parameter name=\"days\" string=\"true\">3</｜DSML｜parameter>"
         TAIL, false},                       /* days is an integer: JSON only */
        {HEAD "<｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>" TAIL,
         false},                             /* city is required */
        {HEAD CITY("x") TAIL "x", false},
        {"\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"now\">\n\n</｜DSML｜invoke>\n"
         "<｜DSML｜invoke name=\"search\">\n<｜DSML｜parameter name=\"filter\" string=\"true\">"
         "web</｜DSML｜parameter>\n<｜DSML｜parameter name=\"opts\" string=\"true\">any"
         "</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls><｜end▁of▁sentence｜>",
         true},
        {"\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"search\">\n"
         "<｜DSML｜parameter name=\"filter\" string=\"true\">blog</｜DSML｜parameter>\n"
         "</｜DSML｜invoke>\n</｜DSML｜tool_calls><｜end▁of▁sentence｜>", false},
    };
    for (int vi = 0; vi < nvocs; vi++) {
        for (size_t i = 0; i < sizeof tc / sizeof *tc; i++) {
            td_cons_grammar *g;
            char err[256];
            TD_CHECK(!td_cons_grammar_tools(&g, TOOLS, strlen(TOOLS), NULL, err, sizeof err));
            /* takes() wants done after the text; a text with EOS is done. */
            if (takes(&vocs[vi], g, tc[i].text) != tc[i].ok) {
                fprintf(stderr, "dsml case %zu: expected %s\n", i, tc[i].ok ? "taken" : "refused");
                td_test_failures++;
            }
            td_cons_grammar_destroy(g);
        }
    }
}

/* Every id of the vocabulary against the mask, at a few states. */
static void test_agree_full(void)
{
    static const struct { int grammar; const char *prefix, *then; } states[] = {
        {0, "", NULL},
        {0, "{\"k\": \"v", NULL},
        {0, "{\"k\": \"v", "ä"},
        {0, "{\"k\": [1, 2.5e", NULL},
        {1, "{\"name\": \"Bob\", ", NULL},
        {2, "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
            "<｜DSML｜parameter name=\"city\" string=\"true\">To </", NULL},
        {2, "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
            "<｜DSML｜parameter name=\"city\" string=\"true\">x</｜DSML｜parameter>", NULL},
        {2, "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"search\">\n"
            "<｜DSML｜parameter name=\"opts\" string=\"false\">{\"a\": \"b", NULL},
    };
    load_vocs();
    for (int vi = 0; vi < nvocs; vi++) {
        voc *x = &vocs[vi];
        td_cons_grammar *g[3];
        char err[256];
        TD_CHECK(!td_cons_grammar_json(&g[0], NULL, 0, err, sizeof err));
        TD_CHECK(!td_cons_grammar_json(&g[1], SCHEMAS[1], strlen(SCHEMAS[1]), err, sizeof err));
        TD_CHECK(!td_cons_grammar_tools(&g[2], TOOLS, strlen(TOOLS), NULL, err, sizeof err));
        uint64_t *mask = calloc(td_cons_mask_words(x->v), sizeof *mask);
        for (size_t si = 0; si < sizeof states / sizeof *states; si++) {
            td_cons_matcher *m;
            td_tok_ids ids = {0};
            TD_CHECK(!td_cons_matcher_create(&m, g[states[si].grammar], x->v, NULL, err, sizeof err));
            TD_CHECK(!td_tok_encode(x->tok, states[si].prefix, strlen(states[si].prefix), 0, &ids,
                                    err, sizeof err));
            int32_t id;
            if (states[si].then && !td_tok_token_to_id(x->tok, states[si].then,
                                                       strlen(states[si].then), &id))
                TD_CHECK(!ids_push(&ids, id));
            bool ok = true;
            for (size_t i = 0; i < ids.len && ok; i++)
                ok = !td_cons_advance(m, ids.ids[i]);
            TD_CHECK(ok);
            td_cons_mask(m, mask);
            int bad = 0;
            for (id = 0; id < td_cons_vocab_size(x->v) && ok && bad < 5; id++) {
                td_err e = td_cons_advance(m, id);
                if ((e == TD_OK) != bit(mask, id)) {
                    fprintf(stderr, "state %zu id %d: mask %d, advance %s\n", si, id,
                            bit(mask, id), td_strerror(e));
                    bad++;
                }
                if (e == TD_OK) {
                    td_cons_matcher_reset(m);
                    for (size_t i = 0; i < ids.len; i++)
                        TD_CHECK(!td_cons_advance(m, ids.ids[i]));
                }
            }
            td_test_failures += bad;
            td_tok_ids_free(&ids);
            td_cons_matcher_destroy(m);
        }
        free(mask);
        for (int k = 0; k < 3; k++)
            td_cons_grammar_destroy(g[k]);
    }
}

/* ---- refusals ---------------------------------------------------------------- */

static void test_bad_schemas(void)
{
    static const struct { const char *schema; td_err e; const char *says; } cases[] = {
        {"{\"type\":\"string\",\"minLength\":3}", TD_ENOTSUP, "\"minLength\""},
        {"{\"properties\":{\"a\":{\"minimum\":1}}}", TD_ENOTSUP,
         "#/properties/a: unsupported keyword \"minimum\""},
        {"{\"properties\":{\"a\":{\"$ref\":\"#/x\"}}}", TD_ENOTSUP, "$ref \"#/x\""},
        {"{\"properties\":{\"a\":{\"$ref\":\"#/$defs/no\"}}}", TD_EINVAL, "names nothing"},
        {"{\"$defs\":{\"n\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/n\"}}},"
         "\"$ref\":\"#/$defs/n\"}", TD_ENOTSUP, "deeper"},
        {"{\"$ref\":\"#\",\"type\":\"object\"}", TD_ENOTSUP, "beside $ref"},
        {"{\"type\":\"objekt\"}", TD_EINVAL, "\"objekt\""},
        {"{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"a\":{}}},{\"type\":\"object\"}]}",
         TD_ENOTSUP, "'{'"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{}},\"required\":[\"b\"]}", TD_EINVAL, "\"b\""},
        {"{\"type\":\"object\",\"properties\":{\"a\":{}},\"additionalProperties\":true}",
         TD_ENOTSUP, "additionalProperties"},
        {"{\"type\":\"array\",\"items\":[{}]}", TD_ENOTSUP, "items"},
        {"{\"enum\":[]}", TD_EINVAL, "enum"},
        {"[1]", TD_EINVAL, "not an object"},
        {"{\"type\":", TD_EINVAL, "schema"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        td_cons_grammar *g = NULL;
        char err[256] = "";
        td_err e = td_cons_grammar_json(&g, cases[i].schema, strlen(cases[i].schema), err, sizeof err);
        if (e != cases[i].e || !strstr(err, cases[i].says)) {
            fprintf(stderr, "case %zu: %s: %s\n", i, td_strerror(e), err);
            td_test_failures++;
        } else {
            fprintf(stderr, "refused (%s): %s\n", td_strerror(e), err);
        }
        if (!e)
            td_cons_grammar_destroy(g);
    }
    /* too deep */
    char deep[1024] = "";
    for (int i = 0; i < 30; i++)
        strcat(deep, "{\"type\":\"array\",\"items\":");
    strcat(deep, "{}");
    for (int i = 0; i < 30; i++)
        strcat(deep, "}");
    td_cons_grammar *g;
    char err[256];
    TD_CHECK_EQ_INT(td_cons_grammar_json(&g, deep, strlen(deep), err, sizeof err), TD_ENOTSUP);
    TD_CHECK(strstr(err, "deeper") != NULL);
    static const struct { const char *tools; const char *force; const char *says; } tc[] = {
        {"[{\"type\":\"function\",\"function\":{\"name\":\"a\"}}]", "b", "no function named \"b\""},
        {"[{\"type\":\"function\",\"function\":{\"name\":\"a\\\"b\"}}]", NULL, "function name"},
        {"[{\"function\":{\"name\":\"a\"}},{\"function\":{\"name\":\"a\"}}]", NULL, "twice"},
        {"[{\"function\":{\"name\":\"a\",\"parameters\":{\"type\":\"object\",\"properties\":"
         "{\"p\":{\"type\":\"string\",\"pattern\":\"x\"}}}}}]", NULL, "\"pattern\""},
        {"[]", NULL, "non-empty"},
    };
    for (size_t i = 0; i < sizeof tc / sizeof *tc; i++) {
        td_cons_tools_opts o = {.force_name = tc[i].force};
        err[0] = '\0';
        td_err e = td_cons_grammar_tools(&g, tc[i].tools, strlen(tc[i].tools), &o, err, sizeof err);
        if (!e || !strstr(err, tc[i].says)) {
            fprintf(stderr, "tools case %zu: %s: %s\n", i, td_strerror(e), err);
            td_test_failures++;
        }
        if (!e)
            td_cons_grammar_destroy(g);
    }
}

/* ---- cost (printed, not asserted) -------------------------------------------- */

/* The mask cost after prefix (and then the token spelt `then` in the
 * tokenizer's vocabulary, if given). */
static void time_state(voc *x, td_cons_grammar *g, const char *prefix, const char *then,
                       bool thinking, const char *what)
{
    td_cons_matcher *m;
    char err[256];
    td_cons_matcher_opts o = {.thinking = thinking};
    TD_CHECK(!td_cons_matcher_create(&m, g, x->v, &o, err, sizeof err));
    td_tok_ids ids = {0};
    TD_CHECK(!td_tok_encode(x->tok, prefix, strlen(prefix), 0, &ids, err, sizeof err));
    for (size_t i = 0; i < ids.len; i++)
        TD_CHECK(!td_cons_advance(m, ids.ids[i]));
    int32_t id;
    if (then) {
        TD_CHECK(!td_tok_token_to_id(x->tok, then, strlen(then), &id));
        TD_CHECK(!td_cons_advance(m, id));
    }
    uint64_t *mask = calloc(td_cons_mask_words(x->v), sizeof *mask);
    int reps = 10;
    double t0 = now_s();
    for (int i = 0; i < reps; i++)
        td_cons_mask(m, mask);
    double dt = (now_s() - t0) / reps;
    size_t allowed = 0;
    for (size_t w = 0; w < td_cons_mask_words(x->v); w++)
        allowed += (size_t)__builtin_popcountll(mask[w]);
    fprintf(stderr, "mask cost (%d ids): %-34s %8.1f us, %zu allowed\n",
            td_cons_vocab_size(x->v), what, dt * 1e6, allowed);
    free(mask);
    td_tok_ids_free(&ids);
    td_cons_matcher_destroy(m);
}

static void test_mask_cost(void)
{
    load_vocs();
    voc *x = &vocs[nvocs - 1];
    td_cons_grammar *gj, *gs, *gt;
    char err[256];
    TD_CHECK(!td_cons_grammar_json(&gj, NULL, 0, err, sizeof err));
    TD_CHECK(!td_cons_grammar_json(&gs, SCHEMAS[1], strlen(SCHEMAS[1]), err, sizeof err));
    TD_CHECK(!td_cons_grammar_tools(&gt, TOOLS, strlen(TOOLS), NULL, err, sizeof err));
    time_state(x, gj, "", NULL, false, "json_object: start");
    time_state(x, gj, "{\"k", NULL, false, "json_object: in a key");
    time_state(x, gj, "{\"k\": [1, 2", NULL, false, "json_object: in a number");
    time_state(x, gs, "{\"name\": \"Bo", NULL, false, "schema: in a string value");
    /* "ä" spells the byte 0xE4: the first of a 3-byte character */
    time_state(x, gs, "{\"name\": \"Bo", "ä", false, "schema: inside a UTF-8 character");
    time_state(x, gs, "{\"name\": \"Bo\\", NULL, false, "schema: after a backslash");
    time_state(x, gs, "{\"name\": \"Bob\", ", NULL, false, "schema: before a key");
    time_state(x, gt, "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
               "<｜DSML｜parameter name=\"city\" string=\"true\">Tok", NULL, false,
               "tools: in a raw string value");
    time_state(x, gt, "Hmm", NULL, true, "tools: thinking");
    td_cons_grammar_destroy(gj);
    td_cons_grammar_destroy(gs);
    td_cons_grammar_destroy(gt);
}

static void cleanup(void)
{
    for (int i = 0; i < nvocs; i++) {
        td_cons_vocab_destroy(vocs[i].v);
        td_tok_destroy(vocs[i].tok);
    }
    free(hist);
}

static void test_cleanup(void) { cleanup(); nvocs = -1; }

int main(int argc, char **argv)
{
    static const td_test_case cases[] = {
        {"bad_schemas", test_bad_schemas},
        {"thinking", test_thinking},
        {"texts", test_texts},
        {"agree_full", test_agree_full},
        {"tools_encoder", test_tools_encoder},
        {"json_walks", test_json_walks},
        {"tools_walks", test_tools_walks},
        {"tools_forced", test_tools_forced},
        {"mask_cost", test_mask_cost},
        {"cleanup", test_cleanup},
        {NULL, NULL},
    };
    int r = td_test_run(cases, argc, argv);
    if (nvocs > 0)
        cleanup();
    return r;
}
