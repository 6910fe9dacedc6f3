/* libFuzzer target for the Anthropic Messages API (router/api_anthropic.c,
 * api_anthropic_enc.c).
 *
 * The input is a Messages request body. It is decoded (as /v1/messages and
 * as count_tokens); a decoded conversation must render. Then the same
 * bytes are taken as model output and run through the DSML parser into the
 * event encoder, both ways: the message must be valid JSON and every SSE
 * event must be `event: NAME` with a JSON data line of that type (for
 * valid UTF-8 output, which the server's token stream guarantees). Any
 * violation aborts.
 */
#include <stdint.h>
#include <stdlib.h>

#include "router/api_anthropic.h"
#include "tests/fuzz/enc_fuzz_util.h"

static void decode(const uint8_t *data, size_t size, unsigned flags)
{
    td_anth_req r;
    td_anth_err e;
    if (td_anth_decode((const char *)data, size, flags, &r, &e)) {
        if (r.conv || e.status < 400 || !e.message[0])
            abort();
        return;
    }
    check_render(r.conv);
    td_anth_req_free(&r);
}

static void encode(const uint8_t *data, size_t size, bool stream)
{
    td_anth_enc enc;
    td_anth_enc_opts o = {.stream = stream, .parallel = size & 1, .msg_id = "msg_f",
                          .model = "m", .tool_id_prefix = "toolu_f", .input_tokens = size};
    if (td_anth_enc_init(&enc, &o))
        return;
    /* end_turn, max_tokens, stop_sequence */
    fuzz_encode(&enc.base, data, size, size & 2, (td_gen_end)(size % 3), "content", false);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    decode(data, size, 0);
    decode(data, size, TD_ANTH_COUNT_ONLY);
    if (utf8_ok(data, size)) {
        encode(data, size, false);
        encode(data, size, true);
    }
    return 0;
}
