/* POST /v1/responses: a decoded request (api_responses.c) → prompt ids → a
 * generation (gen.c) whose encoder is the Responses event encoder
 * (api_responses_enc.c). The Responses API has no stop strings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "router/api_responses.h"
#include "router/gen.h"
#include "router/router_internal.h"

/* The encoder with the id it points at. */
typedef struct {
    td_resp_enc enc;             /* first: td_gen frees the whole */
    char resp_id[48];
} resp_out;

/* ---- the handler ---------------------------------------------------------------- */

void td_router_responses(td_router *rt, td_http_req *req)
{
    if (!td_gen_admit(rt, req, &td_resp_enc_ops))
        return;
    size_t blen;
    const char *body = td_http_req_body(req, &blen);
    td_resp_req r;
    td_resp_err e;
    if (td_resp_decode(body, blen, &r, &e)) {
        td_router_error(req, e.status, e.param, NULL, "%s", e.message);
        return;
    }
    td_tok_ids prompt = {0};
    char err[256];
    td_err te = td_chat_render_ids(r.conv, rt->tok, &rt->chat_ids, &prompt, err, sizeof err);
    if (te) {
        td_router_error(req, te == TD_ENOMEM ? 500 : 400, "input", NULL, "%s", err);
        goto out;
    }
    int64_t ctx = rt->engine.context_len(rt->engine.ctx);
    if (prompt.len == 0 || (int64_t)prompt.len >= ctx) {
        td_router_error(req, 400, "input", "context_length_exceeded",
                        "the input is too long: %zu tokens > %lld maximum", prompt.len,
                        (long long)ctx - 1);
        goto out;
    }
    resp_out *a = calloc(1, sizeof *a);
    if (!a) {
        td_router_error(req, 500, NULL, NULL, "out of memory");
        goto out;
    }
    uint64_t n = ++rt->next_id;
    snprintf(a->resp_id, sizeof a->resp_id, "%016llx%08llx", (unsigned long long)rt->id_salt,
             (unsigned long long)n);
    td_resp_enc_opts eo = {.stream = r.stream, .parallel = r.parallel, .id = a->resp_id,
                           .model = rt->model_id, .created_at = (long long)time(NULL),
                           .input_tokens = prompt.len};
    if (td_resp_enc_init(&a->enc, &eo)) {
        td_resp_enc_free(&a->enc);
        free(a);
        td_router_error(req, 500, NULL, NULL, "out of memory");
        goto out;
    }
    int64_t max_tokens = r.max_tokens > 0 ? r.max_tokens : ctx;
    if (max_tokens > ctx - (int64_t)prompt.len)
        max_tokens = ctx - (int64_t)prompt.len;
    r.sampling.seed = rt->id_salt ^ (n * 0x9E3779B97F4A7C15ull);
    char log_id[64];
    snprintf(log_id, sizeof log_id, "resp_%s", a->resp_id);
    td_dsml_opts dopts = {.thinking = r.thinking, .tools = r.tools};
    td_gen_opts go = {
        .enc = &a->enc.base, .log_id = log_id,
        .run = {.prompt = prompt.ids, .n_prompt = prompt.len, .max_tokens = max_tokens,
                .sampling = r.sampling, .stop_ids = &rt->chat_ids.eos, .n_stop_ids = 1,
                .constraint = {.tools = r.cons.tools, .force_name = r.cons.force_name,
                               .single = r.cons.single, .thinking = r.thinking}},
        .dsml = &dopts,
    };
    td_gen_start(rt, req, &go);
out:
    td_tok_ids_free(&prompt);
    td_resp_req_free(&r);
}
