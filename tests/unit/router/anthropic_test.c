/* The Anthropic Messages API: the request decoder (router/api_anthropic.c)
 * and the event encoder (api_anthropic_enc.c) fed by the DSML parser with
 * recorded model outputs, whole and split at every byte: the SSE stream
 * must follow the real API's grammar (message_start, ping, blocks of
 * content_block_start / deltas / content_block_stop, message_delta,
 * message_stop) and add up to the same blocks as the non-streamed message.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/api_anthropic.h"
#include "router/chat_encode.h"
#include "tests/td_test.h"
#include "tests/unit/router/enc_test_util.h"

/* ---- the decoder ------------------------------------------------------------- */

static int decode(const char *body, unsigned flags, td_anth_req *r, td_anth_err *e)
{
    return td_anth_decode(body, strlen(body), flags, r, e);
}

static const char *content_of(const td_anth_req *r, size_t i)
{
    const td_conv_msg *m = td_conv_msg_at(r->conv, i);
    return m && m->content.s ? m->content.s : "";
}

static void decode_basic(void)
{
    td_anth_req r;
    td_anth_err e;
    int rc = decode("{\"model\":\"claude-x\",\"max_tokens\":100,\"temperature\":0.5,"
                    "\"top_p\":0.9,\"top_k\":5,\"stream\":true,\"stop_sequences\":[\"END\",\"\"],"
                    "\"system\":[{\"type\":\"text\",\"text\":\"Be brief.\"}],"
                    "\"metadata\":{\"user_id\":\"user_ab_account_cd_session_S-1\"},"
                    "\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},"
                    "{\"role\":\"assistant\",\"content\":\"Hello\"},"
                    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                    "{\"type\":\"text\",\"text\":\"b\"}]}]}", 0, &r, &e);
    TD_CHECK_EQ_INT(rc, 0);
    if (rc)
        return;
    TD_CHECK_EQ_INT(td_conv_len(r.conv), 4);
    TD_CHECK_EQ_INT(td_conv_msg_at(r.conv, 0)->role, TD_CONV_SYSTEM);
    TD_CHECK_STR(content_of(&r, 0), "Be brief.");
    TD_CHECK_STR(content_of(&r, 1), "Hi");
    TD_CHECK_EQ_INT(td_conv_msg_at(r.conv, 2)->role, TD_CONV_ASSISTANT);
    TD_CHECK_STR(content_of(&r, 3), "a\n\nb");
    TD_CHECK_EQ_INT(r.max_tokens, 100);
    TD_CHECK(r.sampling.temperature == 0.5f && r.sampling.top_p == 0.9f);
    TD_CHECK_EQ_INT(r.sampling.top_k, 5);
    TD_CHECK(r.stream && !r.thinking && !r.tools);
    TD_CHECK_EQ_INT(r.nstops, 1);
    TD_CHECK_STR(r.stops[0], "END");
    TD_CHECK_STR(r.session, "S-1");
    td_anth_req_free(&r);
}

static void decode_tools(void)
{
    td_anth_req r;
    td_anth_err e;
    int rc = decode("{\"model\":\"m\",\"max_tokens\":5000,"
        "\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":2000},"
        "\"tools\":[{\"name\":\"get\",\"description\":\"Get it\",\"input_schema\":"
        "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}}}}],"
        "\"tool_choice\":{\"type\":\"auto\",\"disable_parallel_tool_use\":true},"
        "\"messages\":[{\"role\":\"user\",\"content\":\"go\"},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"hm\","
        "\"signature\":\"s\"},{\"type\":\"redacted_thinking\",\"data\":\"x\"},"
        "{\"type\":\"text\",\"text\":\"Calling.\"},{\"type\":\"tool_use\",\"id\":\"toolu_1\","
        "\"name\":\"get\",\"input\":{\"a\":\"b\"}}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_1\","
        "\"content\":[{\"type\":\"text\",\"text\":\"42\"}],\"is_error\":true},"
        "{\"type\":\"text\",\"text\":\"thanks\"}]}]}", 0, &r, &e);
    TD_CHECK_EQ_INT(rc, 0);
    if (rc) {
        fprintf(stderr, "%s\n", e.message);
        return;
    }
    /* system (holding the tools), user, assistant, tool, user */
    TD_CHECK_EQ_INT(td_conv_len(r.conv), 5);
    const td_conv_msg *sys = td_conv_msg_at(r.conv, 0);
    TD_CHECK(sys->role == TD_CONV_SYSTEM && sys->ntools == 1);
    const td_conv_msg *a = td_conv_msg_at(r.conv, 2);
    TD_CHECK_STR(a->reasoning.s, "hm");
    TD_CHECK_STR(a->content.s, "Calling.");
    TD_CHECK_EQ_INT(a->ncalls, 1);
    if (a->ncalls) {
        TD_CHECK_STR(a->calls[0].id, "toolu_1");
        TD_CHECK_STR(a->calls[0].name, "get");
        TD_CHECK_STR(a->calls[0].arguments.s, "{\"a\":\"b\"}");
    }
    const td_conv_msg *t = td_conv_msg_at(r.conv, 3);
    TD_CHECK(t->role == TD_CONV_TOOL);
    TD_CHECK_STR(t->tool_call_id, "toolu_1");
    TD_CHECK_STR(t->content.s, "Error: 42");
    TD_CHECK_STR(content_of(&r, 4), "thanks");
    TD_CHECK(r.thinking && r.tools && !r.parallel);
    TD_CHECK_EQ_INT(td_conv_get_think(r.conv), TD_CONV_THINK_HIGH);
    /* It renders: the conversation is one the encoder accepts. */
    td_tok_bytes text = {0};
    char err[256];
    TD_CHECK_EQ_INT(td_chat_render_text(r.conv, &text, err, sizeof err), TD_OK);
    TD_CHECK(text.data && strstr(text.data, "<tool_result>Error: 42</tool_result>"));
    TD_CHECK(text.data && strstr(text.data, "invoke name=\"get\""));
    td_tok_bytes_free(&text);
    td_anth_req_free(&r);
}

static void decode_modes(void)
{
    static const struct {
        const char *thinking, *choice;
        td_conv_think think;
        td_conv_tool_choice tc;
    } cases[] = {
        {"{\"type\":\"enabled\",\"budget_tokens\":1024}", "{\"type\":\"any\"}",
         TD_CONV_THINK_HIGH, TD_CONV_CHOICE_REQUIRED},
        {"{\"type\":\"enabled\",\"budget_tokens\":31999}", "{\"type\":\"tool\",\"name\":\"f\"}",
         TD_CONV_THINK_MAX, TD_CONV_CHOICE_NAMED},
        {"{\"type\":\"disabled\"}", "{\"type\":\"none\"}", TD_CONV_THINK_NONE,
         TD_CONV_CHOICE_NONE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[1024];
        snprintf(body, sizeof body, "{\"model\":\"m\",\"max_tokens\":32000,\"thinking\":%s,"
                 "\"tool_choice\":%s,\"tools\":[{\"name\":\"f\",\"input_schema\":"
                 "{\"type\":\"object\"}}],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                 cases[i].thinking, cases[i].choice);
        td_anth_req r;
        td_anth_err e;
        int rc = decode(body, 0, &r, &e);
        TD_CHECK_EQ_INT(rc, 0);
        if (rc)
            continue;
        TD_CHECK_EQ_INT(td_conv_get_think(r.conv), cases[i].think);
        TD_CHECK_EQ_INT(td_conv_get_tool_choice(r.conv), cases[i].tc);
        td_anth_req_free(&r);
    }
}

static void decode_errors(void)
{
    static const struct {
        const char *body;
        unsigned flags;
        int status;
        const char *needle;
    } cases[] = {
        {"{", 0, 400, "not valid JSON"},
        {"[]", 0, 400, "JSON object"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 0, 400,
         "max_tokens: Field required"},
        {"{\"max_tokens\":1,\"messages\":[]}", 0, 400, "model"},
        {"{\"model\":\"m\",\"max_tokens\":1,\"messages\":[]}", 0, 400, "messages"},
        {"{\"model\":\"m\",\"max_tokens\":0,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
         0, 400, "max_tokens"},
        {"{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}",
         0, 400, "messages.0.role"},
        {"{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":"
         "[{\"type\":\"image\",\"source\":{}}]}]}", 0, 400, "image blocks are not supported"},
        {"{\"model\":\"m\",\"max_tokens\":1,\"temperature\":1.5,\"messages\":[{\"role\":\"user\","
         "\"content\":\"x\"}]}", 0, 400, "temperature"},
        {"{\"model\":\"m\",\"max_tokens\":1000,\"thinking\":{\"type\":\"enabled\","
         "\"budget_tokens\":1024},\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 0, 400,
         "budget_tokens"},
        {"{\"model\":\"m\",\"max_tokens\":9,\"tool_choice\":{\"type\":\"tool\",\"name\":\"g\"},"
         "\"tools\":[{\"name\":\"f\",\"input_schema\":{}}],\"messages\":[{\"role\":\"user\","
         "\"content\":\"x\"}]}", 0, 400, "not in tools"},
        {"{\"model\":\"m\",\"max_tokens\":9,\"tools\":[{\"type\":\"bash_20250124\",\"name\":"
         "\"bash\"}],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 0, 400, "server tool"},
        {"{\"model\":\"m\",\"max_tokens\":9,\"messages\":[{\"role\":\"assistant\",\"content\":"
         "[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":[]}]}]}", 0, 400,
         "tool_use"},
        {"{\"model\":\"m\",\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":"
         "[{\"type\":\"tool_result\",\"content\":\"x\"}]}]}", 0, 400, "tool_use_id"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        td_anth_req r;
        td_anth_err e = {0};
        int rc = decode(cases[i].body, cases[i].flags, &r, &e);
        TD_CHECK_EQ_INT(rc, cases[i].status);
        if (!strstr(e.message, cases[i].needle)) {
            fprintf(stderr, "case %zu: '%s' lacks '%s'\n", i, e.message, cases[i].needle);
            td_test_failures++;
        }
        TD_CHECK(r.conv == NULL);
    }
    /* count_tokens needs no max_tokens. */
    td_anth_req r;
    td_anth_err e;
    TD_CHECK_EQ_INT(decode("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                           "\"x\"}]}", TD_ANTH_COUNT_ONLY, &r, &e), 0);
    td_anth_req_free(&r);
}

/* A last assistant turn is continued, not closed. */
static void decode_prefill(void)
{
    td_anth_req r;
    td_anth_err e;
    int rc = decode("{\"model\":\"m\",\"max_tokens\":2000,\"thinking\":{\"type\":"
                    "\"enabled\",\"budget_tokens\":1024},\"messages\":[{\"role\":\"user\","
                    "\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":\"{\\\"a\\\":\"}]}",
                    0, &r, &e);
    TD_CHECK_EQ_INT(rc, 0);
    if (rc)
        return;
    TD_CHECK(!r.thinking);  /* the prompt has </think>: the output is answer text */
    td_tok_bytes text = {0};
    char err[256];
    TD_CHECK_EQ_INT(td_chat_render_text(r.conv, &text, err, sizeof err), TD_OK);
    const char *tail = "</think>{\"a\":";
    TD_CHECK(text.data && text.len > strlen(tail) &&
             !strcmp(text.data + text.len - strlen(tail), tail));
    td_tok_bytes_free(&text);
    td_anth_req_free(&r);
}

static void session_ids(void)
{
    char *s = td_anth_session_of("user_1_account_2_session_abc");
    TD_CHECK_STR(s, "abc");
    free(s);
    s = td_anth_session_of("plain-user");
    TD_CHECK_STR(s, "plain-user");
    free(s);
    TD_CHECK(td_anth_session_of("") == NULL);
    TD_CHECK_STR(td_anth_error_type(429), "rate_limit_error");
    TD_CHECK_STR(td_anth_error_type(503), "overloaded_error");
    TD_CHECK_STR(td_anth_error_type(401), "authentication_error");
}

/* ---- the encoder, fed by the parser ----------------------------------------------- */

static td_gen_enc *make(bool stream, bool parallel)
{
    static td_anth_enc enc;
    td_anth_enc_opts o = {.stream = stream, .parallel = parallel, .msg_id = "msg_1",
                          .model = "tiny", .tool_id_prefix = "toolu_x", .input_tokens = 7};
    td_anth_enc_init(&enc, &o);
    return &enc.base;
}

/* Checks the SSE grammar and rebuilds the message the SDK would: the
 * content blocks with their text / thinking / input JSON concatenated. */
static json_t *replay(const char *sse)
{
    json_t *msg = NULL, *blocks = json_array();
    json_t *partial = json_object();        /* index → input JSON text so far */
    int state = 0;                          /* 0 start, 1 after start, 2 ping, 3 in block,
                                             * 4 after message_delta, 5 stopped */
    int next_index = 0;
    const char *p = sse;
    char name[64];
    json_t *d;
    while (et_next_event(&p, name, sizeof name, &d)) {
        int index = (int)json_integer_value(json_object_get(d, "index"));
        if (!strcmp(name, "message_start")) {
            TD_CHECK_EQ_INT(state, 0);
            msg = json_deep_copy(json_object_get(d, "message"));
            state = 1;
        } else if (!strcmp(name, "ping")) {
            TD_CHECK(state >= 1 && state != 3);
            if (state == 1)
                state = 2;
        } else if (!strcmp(name, "content_block_start")) {
            TD_CHECK(state == 2);
            TD_CHECK_EQ_INT(index, next_index);
            json_array_append(blocks, json_object_get(d, "content_block"));
            state = 3;
        } else if (!strcmp(name, "content_block_delta")) {
            TD_CHECK(state == 3 && index == next_index);
            json_t *b = json_array_get(blocks, (size_t)index);
            json_t *delta = json_object_get(d, "delta");
            const char *dt = json_string_value(json_object_get(delta, "type"));
            bool is_json = !strcmp(dt, "input_json_delta");
            const char *key = !strcmp(dt, "text_delta") ? "text"
                              : !strcmp(dt, "thinking_delta") ? "thinking" : "partial_json";
            const char *add = json_string_value(json_object_get(delta, key));
            TD_CHECK(add != NULL);
            json_t *holder = is_json ? partial : b;
            char k2[16];
            snprintf(k2, sizeof k2, "%d", index);
            const char *hk = holder == partial ? k2 : key;
            const char *old = json_string_value(json_object_get(holder, hk));
            size_t ol = old ? strlen(old) : 0;
            char *cat = malloc(ol + strlen(add ? add : "") + 1);
            sprintf(cat, "%s%s", old ? old : "", add ? add : "");
            json_object_set_new(holder, hk, json_string(cat));
            free(cat);
        } else if (!strcmp(name, "content_block_stop")) {
            TD_CHECK(state == 3 && index == next_index);
            char k2[16];
            snprintf(k2, sizeof k2, "%d", index);
            json_t *b = json_array_get(blocks, (size_t)index);
            const char *pj = json_string_value(json_object_get(partial, k2));
            if (pj)
                json_object_set_new(b, "input", json_loads(pj, 0, NULL));
            next_index++;
            state = 2;
        } else if (!strcmp(name, "message_delta")) {
            TD_CHECK(state == 2 && msg);
            json_t *delta = json_object_get(d, "delta");
            json_object_set(msg, "stop_reason", json_object_get(delta, "stop_reason"));
            json_object_set(msg, "stop_sequence", json_object_get(delta, "stop_sequence"));
            json_object_set(json_object_get(msg, "usage"), "output_tokens",
                            json_object_get(json_object_get(d, "usage"), "output_tokens"));
            state = 4;
        } else if (!strcmp(name, "message_stop")) {
            TD_CHECK_EQ_INT(state, 4);
            state = 5;
        } else {
            TD_CHECK(!"unknown event");
        }
        json_decref(d);
    }
    TD_CHECK_EQ_INT(state, 5);
    json_decref(partial);
    if (msg)
        json_object_set(msg, "content", blocks);
    json_decref(blocks);
    return msg;
}

static json_t *check_same(const char *out, bool thinking, td_gen_end why)
{
    return et_check_same(make, replay, out, thinking, why);
}

static const char *block_type(const json_t *m, size_t i)
{
    return json_string_value(json_object_get(json_array_get(json_object_get(m, "content"), i),
                                             "type"));
}

static void enc_thinking_text_tool(void)
{
    /* Recorded: reasoning, </think>, text, one tool call (spec §6.6 style). */
    json_t *m = check_same("Need the tool.</think>Let me look.\n\n" TC "\n" INV("get_weather")
                           "\n" PS("city", "Ōsaka \"x\"") "\n" PJ("days", "3") "\n" INVE "\n"
                           TCE, true, TD_GEN_END_STOP);
    TD_CHECK_EQ_INT(json_array_size(json_object_get(m, "content")), 3);
    TD_CHECK_STR(block_type(m, 0), "thinking");
    TD_CHECK_STR(block_type(m, 1), "text");
    TD_CHECK_STR(block_type(m, 2), "tool_use");
    json_t *b0 = json_array_get(json_object_get(m, "content"), 0);
    TD_CHECK_STR(json_string_value(json_object_get(b0, "thinking")), "Need the tool.");
    TD_CHECK_STR(json_string_value(json_object_get(b0, "signature")), "");
    json_t *b2 = json_array_get(json_object_get(m, "content"), 2);
    TD_CHECK_STR(json_string_value(json_object_get(b2, "id")), "toolu_x00");
    TD_CHECK_STR(json_string_value(json_object_get(b2, "name")), "get_weather");
    json_t *want = json_pack("{s:s, s:i}", "city", "Ōsaka \"x\"", "days", 3);
    TD_CHECK(json_equal(json_object_get(b2, "input"), want));
    json_decref(want);
    TD_CHECK_STR(json_string_value(json_object_get(m, "stop_reason")), "tool_use");
    TD_CHECK(json_is_null(json_object_get(m, "stop_sequence")));
    TD_CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(m, "usage"),
                                                       "input_tokens")), 7);
    TD_CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(m, "usage"),
                                                       "output_tokens")), 11);
    TD_CHECK_STR(json_string_value(json_object_get(m, "type")), "message");
    json_decref(m);
}

static void enc_plain_and_stops(void)
{
    json_t *m = check_same("Just text, 東京.", false, TD_GEN_END_STOP_SEQ);
    TD_CHECK_EQ_INT(json_array_size(json_object_get(m, "content")), 1);
    TD_CHECK_STR(block_type(m, 0), "text");
    TD_CHECK_STR(json_string_value(json_object_get(m, "stop_reason")), "stop_sequence");
    TD_CHECK_STR(json_string_value(json_object_get(m, "stop_sequence")), "STOP");
    json_decref(m);
    /* Nothing at all: no blocks, end_turn. */
    m = check_same("", false, TD_GEN_END_LENGTH);
    TD_CHECK_EQ_INT(json_array_size(json_object_get(m, "content")), 0);
    TD_CHECK_STR(json_string_value(json_object_get(m, "stop_reason")), "max_tokens");
    json_decref(m);
    /* Thinking cut off by the length limit: one thinking block. */
    m = check_same("still thinking", true, TD_GEN_END_LENGTH);
    TD_CHECK_STR(block_type(m, 0), "thinking");
    TD_CHECK_EQ_INT(json_array_size(json_object_get(m, "content")), 1);
    json_decref(m);
}

static void enc_two_calls_and_broken(void)
{
    json_t *m = check_same("</think>" TC "\n" INV("a") "\n" PS("q", "1") "\n" INVE "\n"
                           INV("b") "\n" INVE "\n" TCE, true, TD_GEN_END_STOP);
    TD_CHECK_EQ_INT(json_array_size(json_object_get(m, "content")), 2);
    TD_CHECK_STR(block_type(m, 0), "tool_use");
    TD_CHECK_STR(block_type(m, 1), "tool_use");
    TD_CHECK_STR(json_string_value(json_object_get(m, "stop_reason")), "tool_use");
    json_decref(m);
    /* A block cut off by max_tokens: no tool_use in the message. */
    char *s = et_encode(make, "</think>" TC "\n" INV("a") "\n" PS("q", "1"), false, true,
                        true, 0, TD_GEN_END_LENGTH);
    json_t *v = json_loads(s, 0, NULL);
    free(s);
    size_t i;
    json_t *b;
    json_array_foreach(json_object_get(v, "content"), i, b)
        TD_CHECK(strcmp(json_string_value(json_object_get(b, "type")), "tool_use"));
    TD_CHECK_STR(json_string_value(json_object_get(v, "stop_reason")), "max_tokens");
    json_decref(v);
    /* A stream error event has the error shape. */
    td_anth_enc enc;
    td_anth_enc_opts o = {.stream = true, .msg_id = "m", .model = "x"};
    td_anth_enc_init(&enc, &o);
    td_anth_enc_error(&enc, 500, "boom");
    TD_CHECK(enc.base.out.data && !strcmp(enc.base.out.data, "event: error\ndata: {\"type\":\"error\","
             "\"error\":{\"type\":\"api_error\",\"message\":\"boom\"}}\n\n"));
    td_anth_enc_free(&enc);
}

TD_TEST_MAIN({"decode_basic", decode_basic}, {"decode_tools", decode_tools},
             {"decode_modes", decode_modes}, {"decode_errors", decode_errors},
             {"decode_prefill", decode_prefill}, {"session_ids", session_ids}, {"enc_thinking_text_tool", enc_thinking_text_tool},
             {"enc_plain_and_stops", enc_plain_and_stops},
             {"enc_two_calls_and_broken", enc_two_calls_and_broken})
