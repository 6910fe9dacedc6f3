/* constrain/: masks and matchers over real vocabularies.
 *
 * Random walks pick a random allowed token until EOS and check that the
 * text parses (jansson for JSON, router/dsml.c for tool calls) and fits the
 * schema; on sampled states every token's advance must agree with the mask.
 * Runs on the tiny model's tokenizer and, when present, the V4 one (and
 * prints how long a mask takes on it). Tool calls and thinking:
 * cons_tools_test.c; the helpers both use: cons_common.h. */
#include "tests/unit/constrain/cons_common.h"

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

int main(int argc, char **argv)
{
    static const td_test_case cases[] = {
        {"bad_schemas", test_bad_schemas},
        {"texts", test_texts},
        {"agree_full", test_agree_full},
        {"json_walks", test_json_walks},
        {"mask_cost", test_mask_cost},
        {"cleanup", test_cleanup},
        {NULL, NULL},
    };
    return cons_main(cases, argc, argv);
}
