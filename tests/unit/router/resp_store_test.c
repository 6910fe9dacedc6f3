/* The Responses store (router/resp_store.c): a conversation rebuilt from
 * its chain of answers in order, eviction by byte budget that spares the
 * chains in use, delete, and the request decoder continuing a stored
 * answer with previous_response_id (the prompt must equal the one of the
 * same conversation sent whole). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/api_responses.h"
#include "router/chat_encode.h"
#include "router/resp_store.h"
#include "tests/td_test.h"

/* An answer whose output is one assistant message with text `out`. */
static json_t *answer(const char *id, const char *out)
{
    return json_pack("{s:s, s:s, s:[{s:s, s:s, s:[{s:s, s:s}]}]}", "id", id, "object",
                     "response", "output", "type", "message", "role", "assistant", "content",
                     "type", "output_text", "text", out);
}

static json_t *user(const char *text)
{
    return json_pack("[{s:s, s:s, s:s}]", "type", "message", "role", "user", "content", text);
}

/* The texts of a history's items, joined by '|'. */
static void texts(const json_t *items, char *buf, size_t cap)
{
    buf[0] = 0;
    size_t i;
    const json_t *it;
    json_array_foreach(items, i, it) {
        const json_t *c = json_object_get(it, "content");
        const char *t = json_is_string(c) ? json_string_value(c)
                        : json_string_value(json_object_get(json_array_get(c, 0), "text"));
        snprintf(buf + strlen(buf), cap - strlen(buf), "%s%s", i ? "|" : "", t ? t : "?");
    }
}

static void chain_in_order(void)
{
    td_resp_store *s;
    TD_CHECK_EQ_INT(td_resp_store_create(&s, 1 << 20), TD_OK);
    TD_CHECK_EQ_INT(td_resp_store_put(s, "resp_a", NULL, user("u1"), answer("resp_a", "a1")),
                    TD_OK);
    TD_CHECK_EQ_INT(td_resp_store_put(s, "resp_b", "resp_a", user("u2"),
                                      answer("resp_b", "a2")), TD_OK);
    TD_CHECK_EQ_INT(td_resp_store_put(s, "resp_c", "resp_b", user("u3"),
                                      answer("resp_c", "a3")), TD_OK);
    json_t *h = NULL;
    char buf[256];
    TD_CHECK_EQ_INT(td_resp_store_history(s, "resp_c", &h), TD_OK);
    texts(h, buf, sizeof buf);
    TD_CHECK_STR(buf, "u1|a1|u2|a2|u3|a3");
    json_decref(h);
    TD_CHECK_EQ_INT(td_resp_store_history(s, "resp_a", &h), TD_OK);
    texts(h, buf, sizeof buf);
    TD_CHECK_STR(buf, "u1|a1");
    json_decref(h);
    TD_CHECK_EQ_INT(td_resp_store_inputs(s, "resp_c", &h), TD_OK);
    texts(h, buf, sizeof buf);
    TD_CHECK_STR(buf, "u1|a1|u2|a2|u3");
    json_decref(h);
    json_t *r = td_resp_store_response(s, "resp_b");
    TD_CHECK(r && !strcmp(json_string_value(json_object_get(r, "id")), "resp_b"));
    json_decref(r);
    TD_CHECK(td_resp_store_response(s, "resp_x") == NULL);
    TD_CHECK_EQ_INT(td_resp_store_history(s, "resp_x", &h), TD_ENOENT);
    /* Deleting a link breaks the chains through it, not the ones before. */
    TD_CHECK(td_resp_store_delete(s, "resp_b"));
    TD_CHECK(!td_resp_store_delete(s, "resp_b"));
    TD_CHECK_EQ_INT(td_resp_store_history(s, "resp_c", &h), TD_ENOENT);
    TD_CHECK_EQ_INT(td_resp_store_history(s, "resp_a", &h), TD_OK);
    json_decref(h);
    TD_CHECK_EQ_INT((int)td_resp_store_get_stats(s).entries, 2);
    td_resp_store_destroy(s);
}

static void eviction(void)
{
    /* Room for a few entries: a long run of unrelated answers evicts the
     * oldest, but a chain read back as history is used, so it stays. */
    td_resp_store *s;
    TD_CHECK_EQ_INT(td_resp_store_create(&s, 4096), TD_OK);
    TD_CHECK_EQ_INT(td_resp_store_put(s, "resp_root", NULL, user("r"), answer("resp_root", "x")),
                    TD_OK);
    TD_CHECK_EQ_INT(td_resp_store_put(s, "resp_next", "resp_root", user("n"),
                                      answer("resp_next", "y")), TD_OK);
    char id[32];
    for (int i = 0; i < 200; i++) {
        snprintf(id, sizeof id, "resp_%d", i);
        TD_CHECK_EQ_INT(td_resp_store_put(s, id, NULL, user("z"), answer(id, "w")), TD_OK);
        json_t *h = NULL;
        TD_CHECK_EQ_INT(td_resp_store_history(s, "resp_next", &h), TD_OK);
        json_decref(h);
    }
    td_resp_store_stats st = td_resp_store_get_stats(s);
    TD_CHECK(st.bytes <= 4096 && st.evictions > 150 && st.entries >= 3);
    TD_CHECK(td_resp_store_response(s, "resp_0") == NULL);
    json_t *r = td_resp_store_response(s, "resp_root");
    TD_CHECK(r != NULL);
    json_decref(r);
    /* Larger than the budget: refused, nothing else lost. */
    char big[8192];
    memset(big, 'b', sizeof big - 1);
    big[sizeof big - 1] = 0;
    TD_CHECK_EQ_INT(td_resp_store_put(s, "resp_big", NULL, user(big), answer("resp_big", "b")),
                    TD_ENOSPC);
    TD_CHECK_EQ_INT((int)td_resp_store_get_stats(s).entries, (int)st.entries);
    td_resp_store_destroy(s);
    /* Budget 0 keeps nothing. */
    TD_CHECK_EQ_INT(td_resp_store_create(&s, 0), TD_OK);
    TD_CHECK_EQ_INT(td_resp_store_put(s, "resp_a", NULL, user("u"), answer("resp_a", "a")),
                    TD_ENOSPC);
    td_resp_store_destroy(s);
}

static td_err history(void *arg, const char *id, json_t **items)
{
    return td_resp_store_history(arg, id, items);
}

static void prompt_of(const char *body, const td_resp_history *hist, td_tok_bytes *out)
{
    td_resp_req r;
    td_resp_err e;
    int rc = td_resp_decode(body, strlen(body), hist, &r, &e);
    TD_CHECK_EQ_INT(rc, 0);
    if (rc) {
        fprintf(stderr, "  %s\n", e.message);
        return;
    }
    char err[256];
    TD_CHECK_EQ_INT(td_chat_render_text(r.conv, out, err, sizeof err), TD_OK);
    td_resp_req_free(&r);
}

static void continue_stored(void)
{
    td_resp_store *s;
    TD_CHECK_EQ_INT(td_resp_store_create(&s, 1 << 20), TD_OK);
    td_resp_history hist = {.fn = history, .arg = s};
    /* Turn 1 asked for the weather and the answer was reasoning + a call. */
    json_t *out1 = json_loads(
        "{\"id\":\"resp_1\",\"object\":\"response\",\"output\":["
        "{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[],\"content\":[{\"type\":"
        "\"reasoning_text\",\"text\":\"Need it.\"}]},"
        "{\"type\":\"function_call\",\"id\":\"fc_1\",\"call_id\":\"call_1\",\"name\":"
        "\"get_weather\",\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\",\"status\":"
        "\"completed\"}]}", 0, NULL);
    TD_CHECK(out1 != NULL);
    TD_CHECK_EQ_INT(td_resp_store_put(s, "resp_1", NULL, user("Weather in Paris?"), out1),
                    TD_OK);
    static const char tools[] =
        "\"tools\":[{\"type\":\"function\",\"name\":\"get_weather\",\"parameters\":{\"type\":"
        "\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}]";
    td_tok_bytes a = {0}, b = {0};
    char body[2048];
    snprintf(body, sizeof body,
             "{\"model\":\"m\",\"reasoning\":{\"effort\":\"high\"},\"instructions\":\"Sys\","
             "\"previous_response_id\":\"resp_1\",\"input\":[{\"type\":"
             "\"function_call_output\",\"call_id\":\"call_1\",\"output\":\"18C\"}],%s}", tools);
    prompt_of(body, &hist, &a);
    snprintf(body, sizeof body,
             "{\"model\":\"m\",\"reasoning\":{\"effort\":\"high\"},\"instructions\":\"Sys\","
             "\"input\":[{\"role\":\"user\",\"content\":\"Weather in Paris?\"},"
             "{\"type\":\"reasoning\",\"summary\":[],\"content\":[{\"type\":\"reasoning_text\","
             "\"text\":\"Need it.\"}]},"
             "{\"type\":\"function_call\",\"call_id\":\"call_1\",\"name\":\"get_weather\","
             "\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"},"
             "{\"type\":\"function_call_output\",\"call_id\":\"call_1\",\"output\":\"18C\"}],%s}",
             tools);
    prompt_of(body, &hist, &b);
    TD_CHECK(a.len && a.len == b.len && !memcmp(a.data, b.data, a.len));
    TD_CHECK(a.data && strstr(a.data, "Need it.") != NULL);  /* reasoning kept: tools */
    td_tok_bytes_free(&a);
    td_tok_bytes_free(&b);
    /* An unknown id is a 400 naming the field; none without a store. */
    td_resp_req r;
    td_resp_err e;
    static const char unknown[] =
        "{\"model\":\"m\",\"input\":\"x\",\"previous_response_id\":\"resp_9\"}";
    TD_CHECK_EQ_INT(td_resp_decode(unknown, strlen(unknown), &hist, &r, &e), 400);
    TD_CHECK(e.param && !strcmp(e.param, "previous_response_id") &&
             strstr(e.message, "resp_9") != NULL);
    TD_CHECK_EQ_INT(td_resp_decode(unknown, strlen(unknown), NULL, &r, &e), 400);
    TD_CHECK(strstr(e.message, "not supported") != NULL);
    td_resp_store_destroy(s);
}

TD_TEST_MAIN({"chain_in_order", chain_in_order}, {"eviction", eviction},
             {"continue_stored", continue_stored})
