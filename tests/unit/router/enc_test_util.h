/* Test helpers for the event encoders (anthropic_test.c, responses_test.c):
 * model outputs in the DSML grammar, and a driver that runs an output
 * through the parser into an encoder (through its td_gen_enc_ops, as the
 * server does), whole or in pieces, and compares the stream with the
 * non-streamed body. Header-only, file-static: each test executable
 * includes it once. */
#ifndef TD_ENC_TEST_UTIL_H
#define TD_ENC_TEST_UTIL_H

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/dsml.h"
#include "router/gen.h"
#include "tests/td_test.h"

#define TC "<｜DSML｜tool_calls>"
#define TCE "</｜DSML｜tool_calls>"
#define INV(n) "<｜DSML｜invoke name=\"" n "\">"
#define INVE "</｜DSML｜invoke>"
#define PS(n, v) "<｜DSML｜parameter name=\"" n "\" string=\"true\">" v "</｜DSML｜parameter>"
#define PJ(n, v) "<｜DSML｜parameter name=\"" n "\" string=\"false\">" v "</｜DSML｜parameter>"

/* Not every test uses every helper. */
#define ET_UNUSED __attribute__((unused))

/* Initialises the encoder under test (storage is the test's) and returns it. */
typedef td_gen_enc *(*et_make_fn)(bool stream, bool parallel);
/* Checks a stream's grammar and rebuilds the object a non-streamed request
 * gets (NULL if it cannot). */
typedef json_t *(*et_replay_fn)(const char *sse);

/* The next event of the SSE text at *p: `event: NAME\ndata: JSON\n\n`
 * whose JSON "type" is NAME. Fills name and *data (NULL if the data is not
 * JSON) and advances *p; false at the end or on broken framing (counted as
 * a failure). */
static ET_UNUSED bool et_next_event(const char **p, char *name, size_t namelen, json_t **data)
{
    if (!**p)
        return false;
    const char *end = strstr(*p, "\n\n"), *nl = strchr(*p, '\n');
    TD_CHECK(end && nl && !strncmp(*p, "event: ", 7) && !strncmp(nl, "\ndata: ", 7));
    if (!end || !nl)
        return false;
    snprintf(name, namelen, "%.*s", (int)(nl - *p - 7), *p + 7);
    json_t *d = json_loadb(nl + 7, (size_t)(end - nl - 7), 0, NULL);
    const char *type = json_string_value(json_object_get(d, "type"));
    TD_CHECK(type && !strcmp(type, name));
    *data = d;
    *p = end + 2;
    return true;
}

static void et_forward(void *arg, const td_dsml_event *ev)
{
    td_gen_enc *enc = arg;
    enc->ops->event(enc, ev);
}

/* Runs out through parser and encoder, fed in pieces of `step` bytes (0 =
 * whole), and ends the answer with why (the stop string is "STOP") after
 * 11 output tokens; returns the encoder's output (SSE text or the JSON
 * body). */
static ET_UNUSED char *et_encode(et_make_fn make, const char *out, bool stream, bool thinking,
                                 bool parallel, int step, td_gen_end why)
{
    td_gen_enc *enc = make(stream, parallel);
    td_dsml *p;
    td_dsml_opts dopts = {.thinking = thinking, .tools = true};
    td_dsml_create(&p, &dopts, et_forward, enc);
    enc->ops->start(enc);
    size_t n = strlen(out);
    for (size_t i = 0; i < n;) {
        size_t k = step && n - i > (size_t)step ? (size_t)step : n - i;
        td_dsml_feed(p, out + i, k);
        i += k;
    }
    td_dsml_finish(p, NULL);
    enc->ops->finish(enc, why, why == TD_GEN_END_STOP_SEQ ? "STOP" : NULL, 11);
    td_dsml_destroy(p);
    TD_CHECK(!enc->oom);
    char *s = strndup(enc->out.data ? enc->out.data : "", enc->out.len);
    enc->ops->fini(enc);
    return s;
}

/* The non-streamed body, and the stream replayed whole and split at every
 * byte size 1..7, must be the same object; returns it. */
static ET_UNUSED json_t *et_check_same(et_make_fn make, et_replay_fn replay, const char *out,
                                       bool thinking, td_gen_end why)
{
    char *whole = et_encode(make, out, false, thinking, true, 0, why);
    json_t *want = json_loads(whole, 0, NULL);
    TD_CHECK(want != NULL);
    free(whole);
    for (int step = 0; step <= 7; step++) {
        char *sse = et_encode(make, out, true, thinking, true, step, why);
        json_t *got = replay(sse);
        if (!json_equal(got, want)) {
            char *g = json_dumps(got, JSON_COMPACT), *w = json_dumps(want, JSON_COMPACT);
            fprintf(stderr, "step %d: stream %s\n  != body %s\n", step, g, w);
            free(g);
            free(w);
            td_test_failures++;
        }
        json_decref(got);
        free(sse);
    }
    return want;
}

#endif
