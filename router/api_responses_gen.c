/* POST /v1/responses: a decoded request (api_responses.c) → prompt ids → a
 * generation (gen.c) whose encoder is the Responses event encoder
 * (api_responses_enc.c). The Responses API has no stop strings. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "router/api_responses.h"
#include "common/log.h"
#include "router/gen.h"
#include "router/resp_store.h"
#include "router/router_internal.h"

/* The encoder with the strings it points at, and what the store files
 * when the answer is finished. */
typedef struct {
    td_resp_enc enc;             /* first: td_gen frees the whole */
    char resp_id[48];
    td_router *rt;
    char *prev_id;               /* previous_response_id, or NULL */
    json_t *input_items;         /* this turn's input; NULL: not stored */
} resp_out;

/* The encoder's table with two additions: a finished answer is filed as
 * soon as it is encoded (before its last bytes leave, so a client's next
 * turn always finds it), and the extras are freed with the encoder. */
static td_gen_enc_ops stored_ops;
static pthread_once_t stored_ops_once = PTHREAD_ONCE_INIT;

static void stored_finish(td_gen_enc *e, td_gen_end why, const char *stop_seq,
                          size_t output_tokens)
{
    resp_out *a = (resp_out *)e;
    td_resp_enc_ops.finish(e, why, stop_seq, output_tokens);
    if (!a->input_items || !a->enc.final)
        return;
    char id[64];
    snprintf(id, sizeof id, "resp_%s", a->resp_id);
    /* Input items get ids, as OpenAI's do, so input_items can page by them. */
    size_t k;
    json_t *it;
    json_array_foreach(a->input_items, k, it) {
        char iid[96];
        snprintf(iid, sizeof iid, "item_%s_%zu", a->resp_id, k);
        if (json_is_object(it) && !json_is_string(json_object_get(it, "id")))
            json_object_set_new(it, "id", json_string(iid));
    }
    td_err te = td_resp_store_put(a->rt->responses, id, a->prev_id, a->input_items,
                                  json_incref(a->enc.final));
    a->input_items = NULL;       /* taken */
    if (te && te != TD_ENOSPC)
        td_log(TD_LOG_WARN, "responses: %s not stored: %s", id, td_strerror(te));
}

static void stored_fini(td_gen_enc *e)
{
    resp_out *a = (resp_out *)e;
    free(a->prev_id);
    json_decref(a->input_items);
    td_resp_enc_ops.fini(e);
}

static void stored_ops_init(void)
{
    stored_ops = td_resp_enc_ops;
    stored_ops.finish = stored_finish;
    stored_ops.fini = stored_fini;
}

static td_err history(void *arg, const char *id, json_t **items)
{
    return td_resp_store_history(arg, id, items);
}

/* ---- the handler ---------------------------------------------------------------- */

void td_router_responses(td_router *rt, td_http_req *req)
{
    if (!td_gen_admit(rt, req, &td_resp_enc_ops))
        return;
    size_t blen;
    const char *body = td_http_req_body(req, &blen);
    td_resp_req r;
    td_resp_err e;
    td_resp_history hist = {.fn = history, .arg = rt->responses};
    if (td_resp_decode(body, blen, &hist, &r, &e)) {
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
    if (a && r.previous_response_id && !(a->prev_id = strdup(r.previous_response_id))) {
        free(a);
        a = NULL;
    }
    if (!a) {
        td_router_error(req, 500, NULL, NULL, "out of memory");
        goto out;
    }
    uint64_t n = ++rt->next_id;
    snprintf(a->resp_id, sizeof a->resp_id, "%016llx%08llx", (unsigned long long)rt->id_salt,
             (unsigned long long)n);
    td_resp_enc_opts eo = {.stream = r.stream, .parallel = r.parallel, .id = a->resp_id,
                           .model = rt->model_id, .created_at = (long long)time(NULL),
                           .input_tokens = prompt.len, .previous_response_id = a->prev_id,
                           .store = r.store};
    if (td_resp_enc_init(&a->enc, &eo)) {
        td_resp_enc_free(&a->enc);
        free(a->prev_id);
        free(a);
        td_router_error(req, 500, NULL, NULL, "out of memory");
        goto out;
    }
    pthread_once(&stored_ops_once, stored_ops_init);
    a->enc.base.ops = &stored_ops;
    a->rt = rt;
    if (r.store)
        a->input_items = json_incref(r.input_items);
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

/* ---- stored answers ---------------------------------------------------------------- */

/* GET /v1/responses/{id}/input_items: the items the answer was generated
 * from, a page at a time (limit 1..100, default 20; order desc by default;
 * after an item id), in OpenAI's list shape. */
static void input_items(td_router *rt, td_http_req *req, const char *id)
{
    char v[128];
    long limit = 20;
    bool asc = false;
    if (td_http_req_query(req, "limit", v, sizeof v)) {
        char *end;
        limit = strtol(v, &end, 10);
        if (!*v || *end || limit < 1 || limit > 100) {
            td_router_error(req, 400, "limit", NULL, "limit: must be an integer in [1, 100]");
            return;
        }
    }
    if (td_http_req_query(req, "order", v, sizeof v)) {
        if (strcmp(v, "asc") && strcmp(v, "desc")) {
            td_router_error(req, 400, "order", NULL, "order: must be \"asc\" or \"desc\"");
            return;
        }
        asc = !strcmp(v, "asc");
    }
    json_t *items = NULL;
    td_err te = td_resp_store_inputs(rt->responses, id, &items);
    if (te) {
        td_router_error(req, te == TD_ENOENT ? 404 : 500, NULL, NULL, te == TD_ENOENT
                        ? "Response with id '%s' not found." : "out of memory", id);
        return;
    }
    size_t n = json_array_size(items), start = 0;
    bool after = td_http_req_query(req, "after", v, sizeof v);
    for (size_t i = 0; after && i < n; i++) {
        json_t *it = json_array_get(items, asc ? i : n - 1 - i);
        const char *iid = json_string_value(json_object_get(it, "id"));
        if (iid && !strcmp(iid, v)) {
            start = i + 1;
            after = false;
        }
    }
    if (after) {
        json_decref(items);
        td_router_error(req, 400, "after", NULL, "after: no item '%s' in this response's "
                        "input", v);
        return;
    }
    json_t *data = json_array();
    for (size_t i = start; i < n && i < start + (size_t)limit; i++)
        json_array_append(data, json_array_get(items, asc ? i : n - 1 - i));
    size_t got = json_array_size(data);
    json_t *first = got ? json_object_get(json_array_get(data, 0), "id") : NULL;
    json_t *last = got ? json_object_get(json_array_get(data, got - 1), "id") : NULL;
    td_router_send_json(req, 200, json_pack("{s:s, s:o, s:O?, s:O?, s:b}", "object", "list",
                                            "data", data, "first_id", first, "last_id", last,
                                            "has_more", start + got < n));
    json_decref(items);
}

void td_router_stored_response(td_router *rt, td_http_req *req, const char *path, bool get)
{
    const char *id;
    size_t id_len;
    char rid[128];
    td_resp_path_kind kind = td_resp_path_parse(path, &id, &id_len);
    if (kind == TD_RESP_PATH_INPUT_ITEMS && get && id_len < sizeof rid) {
        snprintf(rid, sizeof rid, "%.*s", (int)id_len, id);
        input_items(rt, req, rid);
        return;
    }
    if (kind != TD_RESP_PATH_ID) {
        td_router_error(req, 404, NULL, "unknown_url", "Invalid URL (%s %s)",
                        get ? "GET" : "DELETE", path);
        return;
    }
    /* the id runs to the end of the path */
    if (get) {
        json_t *v = td_resp_store_response(rt->responses, id);
        if (v)
            td_router_send_json(req, 200, v);
        else
            td_router_error(req, 404, NULL, NULL, "Response with id '%s' not found.", id);
        return;
    }
    if (!td_resp_store_delete(rt->responses, id)) {
        td_router_error(req, 404, NULL, NULL, "Response with id '%s' not found.", id);
        return;
    }
    td_router_send_json(req, 200, json_pack("{s:s, s:s, s:b}", "id", id, "object",
                                            "response.deleted", "deleted", 1));
}
