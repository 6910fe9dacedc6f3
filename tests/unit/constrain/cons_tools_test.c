/* constrain/: tool calls and thinking over real vocabularies: random walks
 * of the tool-call grammar parse back through router/dsml.c and fit each
 * tool's schema, forced calls, the chat encoder's rendering of calls, the
 * thinking grammar. The helpers: cons_common.h. */
#include "tests/unit/constrain/cons_common.h"

/* ---- tool calls --------------------------------------------------------------- */

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

int main(int argc, char **argv)
{
    static const td_test_case cases[] = {
        {"thinking", test_thinking},
        {"tools_encoder", test_tools_encoder},
        {"tools_walks", test_tools_walks},
        {"tools_forced", test_tools_forced},
        {"cleanup", test_cleanup},
        {NULL, NULL},
    };
    return cons_main(cases, argc, argv);
}
