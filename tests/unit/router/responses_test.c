/* The OpenAI Responses API: the request decoder (router/api_responses.c),
 * checked against the chat path (the same conversation renders the same
 * prompt), and the event encoder (api_responses_enc.c) fed by the DSML
 * parser with recorded model outputs, whole and split at every byte size
 * 1..7: the SSE stream must follow the API's grammar (response.created,
 * response.in_progress, per item output_item.added, content_part.added,
 * deltas, *.done, content_part.done, output_item.done, then
 * response.completed / response.incomplete; sequence numbers 0, 1, ...),
 * its replayed items must equal the final response's, and the final
 * response must equal the non-streamed one.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/api_responses.h"
#include "router/chat_encode.h"
#include "tests/td_test.h"
#include "tests/unit/router/enc_test_util.h"

/* ---- the decoder ------------------------------------------------------------- */

static int decode(const char *body, td_resp_req *r, td_resp_err *e)
{
    return td_resp_decode(body, strlen(body), NULL, r, e);
}

/* The prompt text of a Responses body and of a chat body must be equal. */
static void same_prompt(const char *resp_body, const char *chat_body)
{
    td_resp_req r;
    td_resp_err e;
    int rc = decode(resp_body, &r, &e);
    TD_CHECK_EQ_INT(rc, 0);
    if (rc) {
        fprintf(stderr, "  %s\n", e.message);
        return;
    }
    json_t *cb = json_loads(chat_body, 0, NULL);
    TD_CHECK(cb != NULL);
    td_conv *c = NULL;
    char err[256];
    TD_CHECK_EQ_INT(td_conv_from_request(&c, cb, NULL, err, sizeof err), TD_OK);
    td_tok_bytes a = {0}, b = {0};
    TD_CHECK_EQ_INT(td_chat_render_text(r.conv, &a, err, sizeof err), TD_OK);
    TD_CHECK_EQ_INT(td_chat_render_text(c, &b, err, sizeof err), TD_OK);
    TD_CHECK(a.len == b.len && a.len && !memcmp(a.data, b.data, a.len));
    if (!(a.len == b.len && a.len && !memcmp(a.data, b.data, a.len)))
        fprintf(stderr, "  responses: %.*s\n  chat:      %.*s\n", (int)a.len, a.data,
                (int)b.len, b.data);
    td_tok_bytes_free(&a);
    td_tok_bytes_free(&b);
    td_conv_destroy(c);
    json_decref(cb);
    td_resp_req_free(&r);
}

static void decode_basic(void)
{
    td_resp_req r;
    td_resp_err e;
    int rc = decode("{\"model\":\"m\",\"input\":\"Hi\",\"instructions\":\"Be brief.\","
                    "\"max_output_tokens\":100,\"temperature\":0.5,\"top_p\":0.9,"
                    "\"stream\":true,\"store\":false}", &r, &e);
    TD_CHECK_EQ_INT(rc, 0);
    if (rc)
        return;
    TD_CHECK_EQ_INT(td_conv_len(r.conv), 2);
    TD_CHECK_EQ_INT(td_conv_msg_at(r.conv, 0)->role, TD_CONV_SYSTEM);
    TD_CHECK_STR(td_conv_msg_at(r.conv, 0)->content.s, "Be brief.");
    TD_CHECK_STR(td_conv_msg_at(r.conv, 1)->content.s, "Hi");
    TD_CHECK_EQ_INT(r.max_tokens, 100);
    TD_CHECK(r.sampling.temperature == 0.5f && r.sampling.top_p == 0.9f);
    TD_CHECK(r.stream && !r.thinking && !r.tools && r.parallel);
    td_resp_req_free(&r);
    same_prompt("{\"model\":\"m\",\"input\":\"Hi\",\"instructions\":\"Be brief.\"}",
                "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                "{\"role\":\"user\",\"content\":\"Hi\"}]}");
}

/* A whole agent turn: items → the chat path's messages. */
static void decode_items(void)
{
    same_prompt(
        "{\"model\":\"m\",\"reasoning\":{\"effort\":\"high\"},\"parallel_tool_calls\":false,"
        "\"tools\":[{\"type\":\"function\",\"name\":\"get_weather\",\"description\":\"W\","
        "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}},"
        "\"strict\":true}],\"tool_choice\":{\"type\":\"function\",\"name\":\"get_weather\"},"
        "\"input\":[{\"role\":\"developer\",\"content\":\"Sys\"},"
        "{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\","
        "\"text\":\"Weather \"},{\"type\":\"input_text\",\"text\":\"in Paris?\"}]},"
        "{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[],\"content\":[{\"type\":"
        "\"reasoning_text\",\"text\":\"Need it.\"}]},"
        "{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\","
        "\"text\":\"Checking.\",\"annotations\":[]}]},"
        "{\"type\":\"function_call\",\"call_id\":\"call_1\",\"name\":\"get_weather\","
        "\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"},"
        "{\"type\":\"function_call_output\",\"call_id\":\"call_1\",\"output\":\"18C\"},"
        "{\"type\":\"reasoning\",\"summary\":[{\"type\":\"summary_text\",\"text\":\"ok\"}]},"
        "{\"role\":\"assistant\",\"content\":\"Sunny.\"},"
        "{\"role\":\"user\",\"content\":\"Thanks\"}]}",
        "{\"reasoning_effort\":\"high\",\"parallel_tool_calls\":false,"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
        "\"description\":\"W\",\"parameters\":{\"type\":\"object\",\"properties\":"
        "{\"city\":{\"type\":\"string\"}}}}}],"
        "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}},"
        "\"messages\":[{\"role\":\"developer\",\"content\":\"Sys\"},"
        "{\"role\":\"user\",\"content\":\"Weather in Paris?\"},"
        "{\"role\":\"assistant\",\"reasoning_content\":\"Need it.\",\"content\":\"Checking.\","
        "\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":"
        "\"get_weather\",\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"18C\"},"
        "{\"role\":\"assistant\",\"reasoning_content\":\"ok\",\"content\":\"Sunny.\"},"
        "{\"role\":\"user\",\"content\":\"Thanks\"}]}");
    td_resp_req r;
    td_resp_err e;
    int rc = decode("{\"model\":\"m\",\"reasoning\":{\"effort\":\"xhigh\"},\"tools\":[{\"type\":"
                    "\"function\",\"name\":\"f\"}],\"parallel_tool_calls\":false,"
                    "\"input\":[{\"role\":\"user\",\"content\":\"x\"}]}", &r, &e);
    TD_CHECK_EQ_INT(rc, 0);
    if (rc)
        return;
    TD_CHECK(r.thinking && r.tools && !r.parallel);
    TD_CHECK_EQ_INT(td_conv_get_think(r.conv), TD_CONV_THINK_MAX);
    td_resp_req_free(&r);
}

static void decode_errors(void)
{
    static const struct {
        const char *body, *param, *msg;
    } cases[] = {
        {"[1]", NULL, "JSON object"},
        {"{\"model\":\"m\",\"input\":", NULL, "not valid JSON"},
        {"{\"input\":\"x\"}", "model", "model"},
        {"{\"model\":\"m\"}", "input", "input"},
        {"{\"model\":\"m\",\"input\":[]}", "input", "at least one"},
        {"{\"model\":\"m\",\"input\":\"x\",\"previous_response_id\":\"resp_1\"}",
         "previous_response_id", "not supported"},
        {"{\"model\":\"m\",\"input\":\"x\",\"max_output_tokens\":0}", "max_output_tokens",
         "max_output_tokens"},
        {"{\"model\":\"m\",\"input\":\"x\",\"temperature\":3}", "temperature", "temperature"},
        {"{\"model\":\"m\",\"input\":\"x\",\"stream\":1}", "stream", "stream"},
        {"{\"model\":\"m\",\"input\":\"x\",\"store\":\"yes\"}", "store", "store"},
        {"{\"model\":\"m\",\"input\":\"x\",\"reasoning\":{\"effort\":\"huge\"}}", "reasoning",
         "reasoning_effort"},
        {"{\"model\":\"m\",\"input\":\"x\",\"tools\":[{\"type\":\"web_search\"}]}", "tools",
         "web_search"},
        {"{\"model\":\"m\",\"input\":\"x\",\"tools\":[{\"type\":\"function\",\"name\":\"f\"}],"
         "\"tool_choice\":{\"type\":\"function\",\"name\":\"g\"}}", "tool_choice", "'g'"},
        {"{\"model\":\"m\",\"input\":[{\"role\":\"tool\",\"content\":\"x\"}]}", "input", "role"},
        {"{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\","
         "\"image_url\":\"x\"}]}]}", "input", "input_image"},
        {"{\"model\":\"m\",\"input\":[{\"type\":\"function_call\",\"name\":\"f\"}]}", "input",
         "call_id"},
        {"{\"model\":\"m\",\"input\":[{\"type\":\"item_reference\",\"id\":\"x\"}]}", "input",
         "item_reference"},
        {"{\"model\":\"m\",\"input\":[{\"type\":\"function_call_output\",\"call_id\":\"c\","
         "\"output\":5}]}", "input", "output"},
        {"{\"model\":\"m\",\"input\":\"x\",\"text\":{\"format\":{\"type\":\"json_schema\"}}}",
         "text", "text.format"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        td_resp_req r;
        td_resp_err e;
        int rc = decode(cases[i].body, &r, &e);
        TD_CHECK_EQ_INT(rc, 400);
        TD_CHECK(r.conv == NULL);
        if (rc != 400)
            continue;
        bool pok = cases[i].param ? e.param && !strcmp(e.param, cases[i].param) : !e.param;
        if (!pok || !strstr(e.message, cases[i].msg)) {
            fprintf(stderr, "case %zu: param %s, message %s\n", i, e.param ? e.param : "-",
                    e.message);
            td_test_failures++;
        }
    }
    /* store: true is accepted (the server files the answer). */
    td_resp_req r;
    td_resp_err e;
    TD_CHECK_EQ_INT(decode("{\"model\":\"m\",\"input\":\"x\",\"store\":true}", &r, &e), 0);
    td_resp_req_free(&r);
}

/* ---- the encoder, fed by the parser ----------------------------------------------- */

static td_gen_enc *make(bool stream, bool parallel)
{
    static td_resp_enc enc;
    td_resp_enc_opts o = {.stream = stream, .parallel = parallel, .id = "X1", .model = "tiny",
                          .created_at = 1700000000, .input_tokens = 7};
    td_resp_enc_init(&enc, &o);
    return &enc.base;
}

static char *encode(const char *out, bool stream, bool thinking, bool parallel, int step,
                    bool incomplete)
{
    return et_encode(make, out, stream, thinking, parallel, step,
                     incomplete ? TD_GEN_END_LENGTH : TD_GEN_END_STOP);
}

static const char *sget(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static long long iget(const json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

/* Checks the SSE grammar, rebuilds the items from the deltas as the SDK
 * does, checks them against the final response and returns that. */
static json_t *replay(const char *sse)
{
    json_t *snap = NULL, *final = NULL;
    int state = 0;         /* 0 start, 1 created, 2 in_progress, 3 in item, 4 in part, 5 done */
    long long seq = 0;
    int index = -1;
    const char *p = sse;
    char name[80];
    json_t *d;
    while (et_next_event(&p, name, sizeof name, &d)) {
        TD_CHECK_EQ_INT(iget(d, "sequence_number"), seq);
        seq++;
        json_t *items = json_object_get(snap, "output");
        json_t *it = json_array_get(items, (size_t)index);
        if (!strcmp(name, "response.created")) {
            TD_CHECK_EQ_INT(state, 0);
            snap = json_deep_copy(json_object_get(d, "response"));
            TD_CHECK_STR(sget(snap, "status"), "in_progress");
            state = 1;
        } else if (!strcmp(name, "response.in_progress")) {
            TD_CHECK_EQ_INT(state, 1);
            state = 2;
        } else if (!strcmp(name, "response.output_item.added")) {
            TD_CHECK_EQ_INT(state, 2);
            TD_CHECK_EQ_INT(iget(d, "output_index"), (long long)json_array_size(items));
            index = (int)json_array_size(items);
            json_array_append(items, json_object_get(d, "item"));
            state = 3;
        } else if (!strcmp(name, "response.content_part.added")) {
            TD_CHECK_EQ_INT(state, 3);
            TD_CHECK_EQ_INT(iget(d, "output_index"), index);
            TD_CHECK_STR(sget(d, "item_id"), sget(it, "id"));
            json_array_append(json_object_get(it, "content"), json_object_get(d, "part"));
            state = 4;
        } else if (!strcmp(name, "response.output_text.delta") ||
                   !strcmp(name, "response.reasoning_text.delta") ||
                   !strcmp(name, "response.function_call_arguments.delta")) {
            bool call = strstr(name, "function_call") != NULL;
            TD_CHECK_EQ_INT(state, call ? 3 : 4);
            TD_CHECK_EQ_INT(iget(d, "output_index"), index);
            TD_CHECK_STR(sget(d, "item_id"), sget(it, "id"));
            TD_CHECK_STR(sget(it, "type"), call ? "function_call"
                         : strstr(name, "reasoning") ? "reasoning" : "message");
            json_t *tgt = call ? it : json_array_get(json_object_get(it, "content"), 0);
            const char *key = call ? "arguments" : "text";
            char *cat = NULL;
            if (asprintf(&cat, "%s%s", sget(tgt, key), sget(d, "delta")) > 0)
                json_object_set_new(tgt, key, json_string(cat));
            free(cat);
        } else if (!strcmp(name, "response.output_text.done") ||
                   !strcmp(name, "response.reasoning_text.done")) {
            TD_CHECK_EQ_INT(state, 4);
            TD_CHECK_STR(sget(d, "text"),
                         sget(json_array_get(json_object_get(it, "content"), 0), "text"));
        } else if (!strcmp(name, "response.content_part.done")) {
            TD_CHECK_EQ_INT(state, 4);
            TD_CHECK(json_equal(json_object_get(d, "part"),
                                json_array_get(json_object_get(it, "content"), 0)));
            state = 3;
        } else if (!strcmp(name, "response.function_call_arguments.done")) {
            TD_CHECK_EQ_INT(state, 3);
            TD_CHECK_STR(sget(d, "arguments"), sget(it, "arguments"));
            TD_CHECK_STR(sget(d, "name"), sget(it, "name"));
        } else if (!strcmp(name, "response.output_item.done")) {
            TD_CHECK_EQ_INT(state, 3);
            TD_CHECK_EQ_INT(iget(d, "output_index"), index);
            /* The item as streamed, its status now final. */
            json_t *done = json_object_get(d, "item");
            if (json_object_get(it, "status"))
                json_object_set(it, "status", json_object_get(done, "status"));
            TD_CHECK(json_equal(it, done));
            state = 2;
        } else if (!strcmp(name, "response.completed") ||
                   !strcmp(name, "response.incomplete")) {
            TD_CHECK_EQ_INT(state, 2);
            final = json_deep_copy(json_object_get(d, "response"));
            TD_CHECK_STR(sget(final, "status"), name + 9);
            TD_CHECK(json_equal(json_object_get(final, "output"), items));
            state = 5;
        } else {
            TD_CHECK(!"unexpected event");
        }
        json_decref(d);
    }
    TD_CHECK_EQ_INT(state, 5);
    json_decref(snap);
    return final;
}

static json_t *check_same(const char *out, bool thinking, bool incomplete)
{
    return et_check_same(make, replay, out, thinking,
                         incomplete ? TD_GEN_END_LENGTH : TD_GEN_END_STOP);
}

static const json_t *item_at(const json_t *r, size_t i)
{
    return json_array_get(json_object_get(r, "output"), i);
}

static void enc_reasoning_text_call(void)
{
    json_t *r = check_same("Need the tool.</think>Let me look.\n\n" TC "\n" INV("get_weather")
                           "\n" PS("city", "Ōsaka \"x\"") "\n" PJ("days", "3") "\n" INVE "\n"
                           TCE, true, false);
    TD_CHECK_STR(sget(r, "id"), "resp_X1");
    TD_CHECK_STR(sget(r, "object"), "response");
    TD_CHECK_STR(sget(r, "status"), "completed");
    TD_CHECK(json_is_null(json_object_get(r, "incomplete_details")));
    TD_CHECK_EQ_INT(json_array_size(json_object_get(r, "output")), 3);
    const json_t *rs = item_at(r, 0), *msg = item_at(r, 1), *fc = item_at(r, 2);
    TD_CHECK_STR(sget(rs, "type"), "reasoning");
    TD_CHECK(!strncmp(sget(rs, "id"), "rs_", 3));
    TD_CHECK_STR(sget(json_array_get(json_object_get(rs, "content"), 0), "text"),
                 "Need the tool.");
    TD_CHECK_STR(sget(msg, "type"), "message");
    TD_CHECK(!strncmp(sget(msg, "id"), "msg_", 4));
    TD_CHECK_STR(sget(msg, "role"), "assistant");
    TD_CHECK_STR(sget(msg, "status"), "completed");
    TD_CHECK_STR(sget(json_array_get(json_object_get(msg, "content"), 0), "type"),
                 "output_text");
    TD_CHECK(!strncmp(sget(json_array_get(json_object_get(msg, "content"), 0), "text"),
                      "Let me look.", 12));
    TD_CHECK_STR(sget(fc, "type"), "function_call");
    TD_CHECK(!strncmp(sget(fc, "id"), "fc_", 3));
    TD_CHECK(!strncmp(sget(fc, "call_id"), "call_", 5));
    TD_CHECK_STR(sget(fc, "name"), "get_weather");
    TD_CHECK_STR(sget(fc, "arguments"), "{\"city\": \"Ōsaka \\\"x\\\"\", \"days\": 3}");
    TD_CHECK_STR(sget(fc, "status"), "completed");
    const json_t *u = json_object_get(r, "usage");
    TD_CHECK_EQ_INT(iget(u, "input_tokens"), 7);
    TD_CHECK_EQ_INT(iget(u, "output_tokens"), 11);
    TD_CHECK_EQ_INT(iget(u, "total_tokens"), 18);
    json_decref(r);
}

static void enc_plain_and_incomplete(void)
{
    json_t *r = check_same("Hello, world", false, false);
    TD_CHECK_EQ_INT(json_array_size(json_object_get(r, "output")), 1);
    TD_CHECK_STR(sget(json_array_get(json_object_get(item_at(r, 0), "content"), 0), "text"),
                 "Hello, world");
    json_decref(r);
    /* Thinking cut off by the length limit. */
    r = check_same("still thinking", true, true);
    TD_CHECK_STR(sget(r, "status"), "incomplete");
    TD_CHECK_STR(sget(json_object_get(r, "incomplete_details"), "reason"), "max_output_tokens");
    TD_CHECK_STR(sget(item_at(r, 0), "type"), "reasoning");
    json_decref(r);
    /* Nothing at all: no items. */
    r = check_same("", false, false);
    TD_CHECK_EQ_INT(json_array_size(json_object_get(r, "output")), 0);
    json_decref(r);
}

static void enc_two_calls_and_broken(void)
{
    json_t *r = check_same("</think>" TC "\n" INV("a") "\n" PS("q", "1") "\n" INVE "\n"
                           INV("b") "\n" INVE "\n" TCE, true, false);
    TD_CHECK_EQ_INT(json_array_size(json_object_get(r, "output")), 2);
    TD_CHECK_STR(sget(item_at(r, 0), "name"), "a");
    TD_CHECK_STR(sget(item_at(r, 1), "name"), "b");
    TD_CHECK_STR(sget(item_at(r, 1), "arguments"), "{}");
    TD_CHECK(strcmp(sget(item_at(r, 0), "call_id"), sget(item_at(r, 1), "call_id")));
    json_decref(r);
    /* Not parallel: only the first call is kept. */
    char *s = encode("</think>" TC "\n" INV("a") "\n" INVE "\n" INV("b") "\n" INVE "\n" TCE,
                     false, true, false, 0, false);
    json_t *v = json_loads(s, 0, NULL);
    free(s);
    TD_CHECK_EQ_INT(json_array_size(json_object_get(v, "output")), 1);
    json_decref(v);
    /* A call cut off by max_output_tokens is no function_call item. */
    s = encode("</think>" TC "\n" INV("a") "\n" PS("q", "1"), false, true, true, 0, true);
    v = json_loads(s, 0, NULL);
    free(s);
    size_t i;
    json_t *b;
    json_array_foreach(json_object_get(v, "output"), i, b)
        TD_CHECK(strcmp(sget(b, "type"), "function_call"));
    TD_CHECK_STR(sget(v, "status"), "incomplete");
    json_decref(v);
    /* Streamed, it was announced: it ends with status "incomplete". */
    s = encode("</think>" TC "\n" INV("a") "\n" PS("q", "1"), true, true, true, 0, true);
    TD_CHECK(strstr(s, "\"status\":\"incomplete\"") != NULL);
    v = replay(s);
    free(s);
    json_decref(v);
    /* A stream error event has OpenAI's shape. */
    td_resp_enc enc;
    td_resp_enc_opts o = {.stream = true, .id = "m", .model = "x"};
    td_resp_enc_init(&enc, &o);
    td_resp_enc_error(&enc, 500, "boom");
    TD_CHECK(enc.base.out.data && !strcmp(enc.base.out.data, "event: error\ndata: {\"type\":\"error\","
             "\"sequence_number\":0,\"code\":\"server_error\",\"message\":\"boom\","
             "\"param\":null}\n\n"));
    td_resp_enc_free(&enc);
}

/* The stored-answer paths: what the router dispatches, the endpoint serves
 * and /metrics labels. */
static void paths(void)
{
    const char *id = NULL;
    size_t n = 0;
    TD_CHECK(td_resp_path_parse("/v1/responses/resp_1", &id, &n) == TD_RESP_PATH_ID);
    TD_CHECK(n == 6 && !strncmp(id, "resp_1", n));
    TD_CHECK(td_resp_path_parse("/v1/responses/resp_1/input_items", &id, &n) ==
             TD_RESP_PATH_INPUT_ITEMS);
    TD_CHECK(n == 6 && !strncmp(id, "resp_1", n));
    TD_CHECK(td_resp_path_parse("/v1/responses/r/x", NULL, NULL) == TD_RESP_PATH_UNKNOWN);
    TD_CHECK(td_resp_path_parse("/v1/responses/r/input_items/", NULL, NULL) ==
             TD_RESP_PATH_UNKNOWN);
    TD_CHECK(td_resp_path_parse("/v1/responses//input_items", NULL, NULL) ==
             TD_RESP_PATH_UNKNOWN);
    TD_CHECK(td_resp_path_parse("/v1/responses/", NULL, NULL) == TD_RESP_PATH_NONE);
    TD_CHECK(td_resp_path_parse("/v1/responses", NULL, NULL) == TD_RESP_PATH_NONE);
    TD_CHECK(td_resp_path_parse("/v1/responsesx/a", NULL, NULL) == TD_RESP_PATH_NONE);
    TD_CHECK(td_resp_path_parse(NULL, NULL, NULL) == TD_RESP_PATH_NONE);
}

TD_TEST_MAIN({"decode_basic", decode_basic}, {"decode_items", decode_items},
             {"decode_errors", decode_errors},
             {"enc_reasoning_text_call", enc_reasoning_text_call},
             {"enc_plain_and_incomplete", enc_plain_and_incomplete},
             {"enc_two_calls_and_broken", enc_two_calls_and_broken}, {"paths", paths})
