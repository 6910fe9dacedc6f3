/* POST /v1/messages and /v1/messages/count_tokens: a decoded request
 * (api_anthropic.c) → prompt ids → a generation (gen.c) whose encoder is
 * the Anthropic event encoder (api_anthropic_enc.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/api_anthropic.h"
#include "router/gen.h"
#include "router/router_internal.h"

/* The encoder with the ids it points at. */
typedef struct {
    td_anth_enc enc;             /* first: td_gen frees the whole */
    char msg_id[48], tool_prefix[48];
} anth_out;

/* ---- the handler ---------------------------------------------------------------- */

void td_router_anthropic(td_router *rt, td_http_req *req, bool count_only,
                         const char *session)
{
    if (!count_only && !td_gen_admit(rt, req, &td_anth_enc_ops))
        return;
    size_t blen;
    const char *body = td_http_req_body(req, &blen);
    td_anth_req r;
    td_anth_err e;
    if (td_anth_decode(body, blen, count_only ? TD_ANTH_COUNT_ONLY : 0, &r, &e)) {
        td_anth_send_error(req, e.status, NULL, e.message);
        return;
    }
    td_tok_ids prompt = {0};
    char err[256];
    td_err te = td_chat_render_ids(r.conv, rt->tok, &rt->chat_ids, &prompt, err, sizeof err);
    if (te) {
        td_anth_req_free(&r);
        td_anth_send_error(req, te == TD_ENOMEM ? 500 : 400, NULL, err);
        return;
    }
    if (count_only) {
        td_anth_req_free(&r);
        td_router_send_json(req, 200, json_pack("{s:I}", "input_tokens",
                                                (json_int_t)prompt.len));
        td_tok_ids_free(&prompt);
        return;
    }
    int64_t ctx = rt->engine.context_len(rt->engine.ctx);
    if (prompt.len == 0 || (int64_t)prompt.len >= ctx) {
        char msg[256];
        snprintf(msg, sizeof msg, "prompt is too long: %zu tokens > %lld maximum",
                 prompt.len, (long long)ctx - 1);
        td_anth_send_error(req, 400, NULL, msg);
        goto out;
    }
    anth_out *a = calloc(1, sizeof *a);
    if (!a) {
        td_anth_send_error(req, 500, NULL, "out of memory");
        goto out;
    }
    uint64_t n = ++rt->next_id;
    snprintf(a->msg_id, sizeof a->msg_id, "msg_%016llx%08llx", (unsigned long long)rt->id_salt,
             (unsigned long long)n);
    snprintf(a->tool_prefix, sizeof a->tool_prefix, "toolu_%016llx%08llx_",
             (unsigned long long)(rt->id_salt * 0x9E3779B97F4A7C15ull), (unsigned long long)n);
    td_anth_enc_opts eo = {.stream = r.stream, .parallel = r.parallel, .msg_id = a->msg_id,
                           .model = rt->model_id, .tool_id_prefix = a->tool_prefix,
                           .input_tokens = prompt.len};
    if (td_anth_enc_init(&a->enc, &eo)) {
        td_anth_enc_free(&a->enc);
        free(a);
        td_anth_send_error(req, 500, NULL, "out of memory");
        goto out;
    }
    int64_t max_tokens = r.max_tokens;
    if (max_tokens > ctx - (int64_t)prompt.len)
        max_tokens = ctx - (int64_t)prompt.len;
    r.sampling.seed = rt->id_salt ^ (n * 0x9E3779B97F4A7C15ull);
    td_dsml_opts dopts = {.thinking = r.thinking, .tools = r.tools};
    td_gen_opts go = {
        .enc = &a->enc.base, .log_id = a->msg_id,
        .run = {.prompt = prompt.ids, .n_prompt = prompt.len, .max_tokens = max_tokens,
                .sampling = r.sampling, .stop_ids = &rt->chat_ids.eos, .n_stop_ids = 1,
                /* A session header wins; else metadata.user_id carries it. */
                .session_id = session ? NULL : r.session,
                .constraint = {.tools = r.cons.tools, .force_name = r.cons.force_name,
                               .single = r.cons.single, .thinking = r.thinking}},
        .stops = r.stops, .stop_lens = r.stop_lens, .nstops = r.nstops, .dsml = &dopts,
    };
    td_gen_start(rt, req, &go);
out:
    td_tok_ids_free(&prompt);
    td_anth_req_free(&r);
}
