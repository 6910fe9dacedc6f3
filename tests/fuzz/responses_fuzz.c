/* libFuzzer target for the OpenAI Responses API (router/api_responses.c,
 * api_responses_enc.c).
 *
 * The input is a Responses request body. It is decoded; a decoded
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

#include "router/api_responses.h"
#include "tests/fuzz/enc_fuzz_util.h"

static void decode(const uint8_t *data, size_t size)
{
    td_resp_req r;
    td_resp_err e;
    if (td_resp_decode((const char *)data, size, &r, &e)) {
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
