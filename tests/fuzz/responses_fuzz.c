/* libFuzzer target for the OpenAI Responses API (router/api_responses.c,
 * api_responses_enc.c).
 *
 * The input is a Responses request body. It is decoded (a
 * previous_response_id of "resp_f" finds a stored conversation with a
 * reasoning item, a function call and a message; any other id is unknown); a decoded
 * conversation must render, and a failure must carry a 4xx/5xx status and
 * a message. Then the same bytes are taken as model output and run through
 * the DSML parser into the event encoder, both ways: the response must be
 * valid JSON with an output array, and every SSE event must be
 * `event: NAME` with a JSON data line of that type and consecutive
 * sequence numbers (for valid UTF-8 output, which the server's token
 * stream guarantees). Any violation aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router/api_responses.h"
#include "tests/fuzz/enc_fuzz_util.h"

static td_err history(void *arg, const char *id, json_t **items)
{
    (void)arg;
    if (strcmp(id, "resp_f"))
        return TD_ENOENT;
    *items = json_loads(
        "[{\"type\":\"message\",\"role\":\"user\",\"content\":\"hi\"},"
        "{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[],"
        "\"content\":[{\"type\":\"reasoning_text\",\"text\":\"think\"}]},"
        "{\"type\":\"function_call\",\"id\":\"fc_1\",\"call_id\":\"c1\","
        "\"name\":\"f\",\"arguments\":\"{}\"},"
        "{\"type\":\"function_call_output\",\"call_id\":\"c1\",\"output\":\"1\"},"
        "{\"type\":\"message\",\"role\":\"assistant\",\"content\":"
        "[{\"type\":\"output_text\",\"text\":\"ok\",\"annotations\":[]}]}]", 0, NULL);
    return *items ? TD_OK : TD_ENOMEM;
}

static void decode(const uint8_t *data, size_t size)
{
    td_resp_req r;
    td_resp_err e;
    td_resp_history hist = {.fn = history};
    if (td_resp_decode((const char *)data, size, size & 8 ? &hist : NULL, &r, &e)) {
        if (r.conv || e.status < 400 || !e.message[0])
            abort();
        return;
    }
    check_render(r.conv);
    td_resp_req_free(&r);
}

static void encode(const uint8_t *data, size_t size, bool stream)
{
    td_resp_enc enc;
    td_resp_enc_opts o = {.stream = stream, .parallel = size & 1, .id = "f", .model = "m",
                          .created_at = 1, .input_tokens = size};
    if (td_resp_enc_init(&enc, &o))
        return;
    td_gen_end why = size & 4 ? TD_GEN_END_LENGTH : TD_GEN_END_STOP;
    fuzz_encode(&enc.base, data, size, size & 2, why, "output", true);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    decode(data, size);
    if (utf8_ok(data, size)) {
        encode(data, size, false);
        encode(data, size, true);
    }
    return 0;
}
