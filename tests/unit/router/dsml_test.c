/* The incremental output parser (router/dsml.c).
 *
 * Each recorded output is parsed whole, then split at every position into
 * two pieces, then into three, then byte by byte: the events must add up to
 * the same reasoning, content and tool calls every time, every event's text
 * must be whole UTF-8, and a call's argument fragments must concatenate to
 * valid JSON equal to the expected object.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/conv.h"
#include "router/dsml.h"
#include "tests/td_test.h"
#include "tests/unit/router/enc_test_util.h"  /* the DSML macros */

/* Expectations below leave trailing fields zero. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define MAXC 8

typedef struct {
    td_tok_bytes reasoning, content;
    td_tok_bytes name[MAXC], args[MAXC];
    bool ended[MAXC], aborted[MAXC];
    int ncalls;
    bool bad_order, bad_utf8;
    td_dsml_result r;
} collected;

static bool utf8_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t need = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!need || i + need > n)
            return false;
        for (size_t k = 1; k < need; k++)
            if (((unsigned char)s[i + k] & 0xC0) != 0x80)
                return false;
        i += need;
    }
    return true;
}

static void on_event(void *arg, const td_dsml_event *ev)
{
    collected *c = arg;
    if (ev->len && !utf8_ok(ev->text, ev->len))
        c->bad_utf8 = true;
    int i = ev->index;
    switch (ev->kind) {
    case TD_DSML_REASONING:
        td_conv_bytes_append(&c->reasoning, ev->text, ev->len);
        break;
    case TD_DSML_CONTENT:
        td_conv_bytes_append(&c->content, ev->text, ev->len);
        break;
    case TD_DSML_CALL_BEGIN:
        if (i != c->ncalls || i >= MAXC) {
            c->bad_order = true;
            return;
        }
        c->ncalls++;
        td_conv_bytes_append(&c->name[i], ev->text, ev->len);
        break;
    case TD_DSML_CALL_ARGS:
        if (i >= c->ncalls || c->ended[i] || c->aborted[i])
            c->bad_order = true;
        else
            td_conv_bytes_append(&c->args[i], ev->text, ev->len);
        break;
    case TD_DSML_CALL_END:
    case TD_DSML_CALL_ABORT:
        if (i >= c->ncalls || c->ended[i] || c->aborted[i])
            c->bad_order = true;
        else if (ev->kind == TD_DSML_CALL_END)
            c->ended[i] = true;
        else
            c->aborted[i] = true;
        break;
    }
}

static void collected_free(collected *c)
{
    td_tok_bytes_free(&c->reasoning);
    td_tok_bytes_free(&c->content);
    for (int i = 0; i < MAXC; i++) {
        td_tok_bytes_free(&c->name[i]);
        td_tok_bytes_free(&c->args[i]);
    }
}

static const char *str(const td_tok_bytes *b) { return b->data ? b->data : ""; }

/* Parses text cut at the given positions (ascending, ncut of them). */
static void run(const char *text, bool thinking, bool tools, const size_t *cuts, int ncut,
                collected *c)
{
    memset(c, 0, sizeof *c);
    td_dsml *p;
    td_dsml_opts o = {.thinking = thinking, .tools = tools};
    TD_CHECK(td_dsml_create(&p, &o, on_event, c) == TD_OK);
    size_t n = strlen(text), at = 0;
    for (int k = 0; k <= ncut; k++) {
        size_t end = k < ncut ? cuts[k] : n;
        TD_CHECK(td_dsml_feed(p, text + at, end - at) == TD_OK);
        at = end;
    }
    TD_CHECK(td_dsml_finish(p, &c->r) == TD_OK);
    td_dsml_destroy(p);
}

static bool same(const collected *a, const collected *b)
{
    if (strcmp(str(&a->reasoning), str(&b->reasoning)) || strcmp(str(&a->content), str(&b->content)) ||
        a->ncalls != b->ncalls || a->r.calls != b->r.calls || a->r.malformed != b->r.malformed ||
        a->r.truncated != b->r.truncated || b->bad_order || b->bad_utf8)
        return false;
    for (int i = 0; i < a->ncalls; i++)
        if (strcmp(str(&a->name[i]), str(&b->name[i])) || strcmp(str(&a->args[i]), str(&b->args[i])) ||
            a->ended[i] != b->ended[i] || a->aborted[i] != b->aborted[i])
            return false;
    return true;
}

typedef struct {
    const char *reasoning, *content;
    int ncalls;                      /* calls that completed */
    const char *names[MAXC];
    const char *args[MAXC];          /* JSON to compare by value */
    bool malformed, truncated;
} expect;

static void check(const char *what, const char *text, bool thinking, bool tools, const expect *x)
{
    collected whole;
    run(text, thinking, tools, NULL, 0, &whole);
    TD_CHECK(!whole.bad_order && !whole.bad_utf8);
    if (strcmp(str(&whole.reasoning), x->reasoning) || strcmp(str(&whole.content), x->content)) {
        fprintf(stderr, "%s: reasoning [%s] content [%s]\n", what, str(&whole.reasoning),
                str(&whole.content));
        td_test_failures++;
    }
    TD_CHECK_EQ_INT(whole.r.calls, x->ncalls);
    TD_CHECK(whole.r.malformed == x->malformed);
    TD_CHECK(whole.r.truncated == x->truncated);
    for (int i = 0, k = 0; i < whole.ncalls; i++) {
        if (!whole.ended[i])
            continue;
        TD_CHECK(k < x->ncalls);
        if (k >= x->ncalls)
            break;
        TD_CHECK_STR(str(&whole.name[i]), x->names[k]);
        json_t *got = json_loads(str(&whole.args[i]), 0, NULL);
        json_t *want = json_loads(x->args[k], 0, NULL);
        if (!got || !json_equal(got, want)) {
            fprintf(stderr, "%s: call %d args %s, want %s\n", what, i, str(&whole.args[i]),
                    x->args[k]);
            td_test_failures++;
        }
        json_decref(got);
        json_decref(want);
        k++;
    }
    /* Every split gives the same answer. */
    size_t n = strlen(text);
    int bad = 0;
    for (size_t i = 1; i < n && !bad; i++) {
        collected c;
        run(text, thinking, tools, &i, 1, &c);
        bad += !same(&whole, &c);
        if (bad)
            fprintf(stderr, "%s: differs when split at %zu\n", what, i);
        collected_free(&c);
    }
    for (size_t i = 1; i < n && !bad; i += 3)
        for (size_t j = i + 1; j < n && !bad; j += 5) {
            size_t cuts[2] = {i, j};
            collected c;
            run(text, thinking, tools, cuts, 2, &c);
            bad += !same(&whole, &c);
            if (bad)
                fprintf(stderr, "%s: differs when split at %zu, %zu\n", what, i, j);
            collected_free(&c);
        }
    size_t *all = malloc(n * sizeof *all);
    for (size_t i = 0; i + 1 < n; i++)
        all[i] = i + 1;
    collected c;
    run(text, thinking, tools, all, n ? (int)n - 1 : 0, &c);
    if (!same(&whole, &c)) {
        fprintf(stderr, "%s: differs when fed byte by byte\n", what);
        bad++;
    }
    collected_free(&c);
    free(all);
    td_test_failures += bad;
    collected_free(&whole);
}

/* Spec §6.6: the well-formed completion for example C. */
static void spec_completion(void)
{
    expect x = {"Need the tool.", "", 1, {"get_weather"}, {"{\"city\": \"Osaka\", \"days\": 3}"}};
    check("spec", "Need the tool.</think>\n\n" TC "\n" INV("get_weather") "\n"
          PS("city", "Osaka") "\n" PJ("days", "3") "\n" INVE "\n" TCE, true, true, &x);
}

static void args_exact(void)
{
    /* The fragments form the official parser's text exactly. */
    collected c;
    run("</think>\n\n" TC "\n" INV("f") "\n" PS("s", "a\"b\\c\nd") "\n" PJ("o", "{\"k\": [1, 2]}")
        "\n" INVE "\n" TCE, true, true, NULL, 0, &c);
    TD_CHECK_STR(str(&c.args[0]), "{\"s\": \"a\\\"b\\\\c\\nd\", \"o\": {\"k\": [1, 2]}}");
    collected_free(&c);
}

static void two_calls(void)
{
    expect x = {"", "Checking both.", 2, {"get_weather", "search"},
                {"{\"city\": \"東京 \\\"x\\\"\\n\", \"units\": [\"C\", \"F\"], \"ok\": true}",
                 "{\"q\": \"é\"}"}};
    check("two calls", "Checking both.\n\n" TC "\n" INV("get_weather") "\n"
          PS("city", "東京 \"x\"\n") "\n" PJ("units", "[\"C\", \"F\"]") "\n" PJ("ok", "true") "\n"
          INVE "\n" INV("search") "\n" PS("q", "é") "\n" INVE "\n" TCE, false, true, &x);
}

static void no_params_and_after(void)
{
    expect x = {"r", "a", 1, {"now"}, {"{}"}};
    check("no params", "r</think>a\n\n" TC "\n" INV("now") "\n" INVE "\n" TCE, true, true, &x);
    /* Text after a block is content (whitespace between is dropped). */
    expect y = {"", "bc", 1, {"now"}, {"{}"}};
    check("after", "b" TC INV("now") INVE TCE "\nc", false, true, &y);
}

static void malformed_json(void)
{
    const char *t = "\n\n" TC "\n" INV("f") "\n" PJ("x", "{oops") "\n" INVE "\n" TCE;
    expect x = {"", t, 0, {0}, {0}, true, false};
    check("bad json", t, false, true, &x);
}

static void malformed_second_call(void)
{
    const char *t = "\n\n" TC "\n" INV("f") "\n" PS("a", "1") "\n" INVE "\n"
                    INV("g") "\n<junk>\n" INVE "\n" TCE;
    /* The text after the last good call comes back as content. */
    expect x = {"", "\n" INV("g") "\n<junk>\n" INVE "\n" TCE, 1, {"f"}, {"{\"a\": \"1\"}"}, true, false};
    check("bad second", t, false, true, &x);
}

static void duplicate_param(void)
{
    const char *t = TC INV("f") PS("a", "1") PS("a", "2") INVE TCE;
    expect x = {"", t, 0, {0}, {0}, true, false};
    check("duplicate", t, false, true, &x);
}

static void control_in_name(void)
{
    /* A NUL or line break in a name cannot be a JSON key the client reads. */
    const char *t = TC INV("f") "<｜DSML｜parameter name=\"a\x01\" string=\"true\">1"
                    "</｜DSML｜parameter>" INVE TCE;
    expect x = {"", t, 0, {0}, {0}, true, false};
    check("control in name", t, false, true, &x);
}

static void truncated(void)
{
    /* EOS (or max_tokens) in the middle of a block. */
    const char *t = "ok\n\n" TC "\n" INV("f") "\n<｜DSML｜parameter name=\"a\" string=\"true\">ha";
    expect x = {"", t, 0, {0}, {0}, true, true};
    check("truncated", t, false, true, &x);
    expect y = {"", "x\n\n" TC "\n<｜DSML｜inv", 0, {0}, {0}, true, true};
    check("truncated marker", "x\n\n" TC "\n<｜DSML｜inv", false, true, &y);
}

static void no_tools(void)
{
    const char *t = "a\n\n" TC "\n" INV("f") "\n" INVE "\n" TCE;
    expect x = {"", t, 0};
    check("tools off", t, false, false, &x);
}

static void lookalikes(void)
{
    expect x = {"a </thin", "x < y <｜DSML｜tool_callz> \n\n<｜DSML｜ done\n", 0};
    check("lookalikes", "a </thin</think>x < y <｜DSML｜tool_callz> \n\n<｜DSML｜ done\n", true,
          true, &x);
    /* No </think>: everything is reasoning. */
    expect y = {"still thinking <｜DSML｜tool_calls>", "", 0};
    check("no think end", "still thinking <｜DSML｜tool_calls>", true, true, &y);
}

static void utf8_split(void)
{
    expect x = {"héllo 世界 🎉", "ünïcode ✓", 0};
    check("utf8", "héllo 世界 🎉</think>ünïcode ✓", true, true, &x);
    /* A character cut short at the end becomes U+FFFD. */
    collected c;
    run("ab\xE4\xB8", false, true, NULL, 0, &c);
    TD_CHECK_STR(str(&c.content), "ab\xEF\xBF\xBD");
    collected_free(&c);
}

TD_TEST_MAIN({"spec_completion", spec_completion}, {"args_exact", args_exact},
             {"two_calls", two_calls}, {"no_params_and_after", no_params_and_after},
             {"malformed_json", malformed_json}, {"malformed_second_call", malformed_second_call},
             {"duplicate_param", duplicate_param},
             {"control_in_name", control_in_name}, {"truncated", truncated},
             {"no_tools", no_tools}, {"lookalikes", lookalikes}, {"utf8_split", utf8_split})
