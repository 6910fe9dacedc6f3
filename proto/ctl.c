/* Validation of control-plane messages: one function per message, each
 * stating the invariants the code that receives it relies on. */
#include "proto/ctl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FAIL(...) return td_errf(err, errlen, TD_ECORRUPT, __VA_ARGS__)

/* Ids are short printable ASCII: they end up in logs and metric labels. */
static int valid_id(const char *s, int may_be_empty)
{
    if (!s)
        return may_be_empty;
    size_t n = strlen(s);
    if (n == 0)
        return may_be_empty;
    if (n > TD_CTL_MAX_ID)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return 0;
    return 1;
}

static td_err check_tokens(const int32_t *ids, size_t n, size_t min, const char *what,
                           char *err, size_t errlen)
{
    if (n < min || n > TD_CTL_MAX_TOKENS)
        FAIL("%s: %zu token ids (allowed %zu..%u)", what, n, min, TD_CTL_MAX_TOKENS);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0)
            FAIL("%s: token id %d at %zu is negative", what, ids[i], i);
    return TD_OK;
}

static td_err check_sampling(const Tandem__Ctl__SamplingParams *s, const char *what,
                             char *err, size_t errlen)
{
    if (!s)
        FAIL("%s: sampling parameters missing", what);
    if (!isfinite(s->temperature) || s->temperature < 0.0f || s->temperature > 100.0f)
        FAIL("%s: temperature %g outside [0, 100]", what, (double)s->temperature);
    if (!(s->top_p > 0.0f && s->top_p <= 1.0f))
        FAIL("%s: top_p %g outside (0, 1]", what, (double)s->top_p);
    if (s->max_tokens == 0 || s->max_tokens > TD_CTL_MAX_TOKENS)
        FAIL("%s: max_tokens %u outside 1..%u", what, s->max_tokens, TD_CTL_MAX_TOKENS);
    if ((s->json_schema && strlen(s->json_schema) > TD_CTL_MAX_BYTES / 4) ||
        (s->tools && strlen(s->tools) > TD_CTL_MAX_BYTES / 4) ||
        (s->force_name && strlen(s->force_name) > TD_CTL_MAX_ID))
        FAIL("%s: constraint text too long", what);
    if (s->json && s->tools && s->tools[0])
        FAIL("%s: both a JSON and a tool constraint", what);
    if (s->n_stop_token_ids > TD_CTL_MAX_STOP_IDS)
        FAIL("%s: %zu stop token ids (at most %d)", what, s->n_stop_token_ids,
             TD_CTL_MAX_STOP_IDS);
    return check_tokens(s->stop_token_ids, s->n_stop_token_ids, 0, what, err, errlen);
}

static td_err check_register(const Tandem__Ctl__WorkerRegister *m, char *err, size_t errlen)
{
    if (!valid_id(m->worker_id, 0))
        FAIL("register: bad worker_id");
    if (m->role <= TANDEM__CTL__ROLE__ROLE_UNSPECIFIED || m->role > TANDEM__CTL__ROLE__ROLE_BOTH)
        FAIL("register: role %d unknown", (int)m->role);
    if (m->layout_version == 0)
        FAIL("register: layout_version missing");
    if (m->max_batch == 0 || m->max_batch > 65536)
        FAIL("register: max_batch %u outside 1..65536", m->max_batch);
    if (m->ucx_address.len > TD_CTL_MAX_ADDRESS)
        FAIL("register: ucx_address of %zu bytes", m->ucx_address.len);
    if (!m->control_url || strlen(m->control_url) == 0 || strlen(m->control_url) > 512)
        FAIL("register: bad control_url");
    return TD_OK;
}

static td_err check_kv_ready(const Tandem__Ctl__KvReady *m, char *err, size_t errlen)
{
    if (m->request_id == 0)
        FAIL("kv_ready: request_id missing");
    if (m->layout_version == 0)
        FAIL("kv_ready: layout_version missing");
    if (m->tokens == 0 || m->tokens > TD_CTL_MAX_TOKENS)
        FAIL("kv_ready: tokens %llu outside 1..%u", (unsigned long long)m->tokens,
             TD_CTL_MAX_TOKENS);
    if (m->total_bytes < 72)   /* header + checksum of docs/kv-layout.md */
        FAIL("kv_ready: total_bytes %llu too small", (unsigned long long)m->total_bytes);
    if (m->first_token < 0)
        FAIL("kv_ready: first_token %d negative", m->first_token);
    if (m->cached_tokens >= m->tokens)
        FAIL("kv_ready: cached_tokens %llu not below tokens %llu",
             (unsigned long long)m->cached_tokens, (unsigned long long)m->tokens);
    if (m->n_sections > TD_CTL_MAX_SECTIONS)
        FAIL("kv_ready: %zu sections", m->n_sections);
    for (size_t i = 0; i < m->n_sections; i++) {
        const Tandem__Ctl__KvSection *s = m->sections[i];
        if (!s || s->offset > m->total_bytes || s->length > m->total_bytes - s->offset)
            FAIL("kv_ready: section %zu outside the state's %llu bytes", i,
                 (unsigned long long)m->total_bytes);
    }
    return TD_OK;
}

static td_err check_tokens_msg(const Tandem__Ctl__TokenChunk *m, char *err, size_t errlen)
{
    if (m->request_id == 0)
        FAIL("tokens: request_id missing");
    if (m->finish < TANDEM__CTL__FINISH_REASON__FINISH_UNSPECIFIED ||
        m->finish > TANDEM__CTL__FINISH_REASON__FINISH_ERROR)
        FAIL("tokens: finish reason %d unknown", (int)m->finish);
    if (m->error && strlen(m->error) > 4096)
        FAIL("tokens: error text too long");
    if (m->n_token_ids == 0 && m->finish == TANDEM__CTL__FINISH_REASON__FINISH_UNSPECIFIED &&
        m->cached_tokens == 0)
        FAIL("tokens: neither tokens, a finish reason nor cached tokens");
    if (m->cached_tokens > TD_CTL_MAX_TOKENS)
        FAIL("tokens: cached_tokens %llu too large", (unsigned long long)m->cached_tokens);
    return check_tokens(m->token_ids, m->n_token_ids, 0, "tokens", err, errlen);
}

td_err td_ctl_validate(const td_ctl_msg *e, char *err, size_t errlen)
{
    if (!e)
        FAIL("no message");
    if (e->version != TD_CTL_VERSION)
        return td_errf(err, errlen, TD_EFORMAT, "control message version %u, expected %u",
                       e->version, TD_CTL_VERSION);
    td_err r;
    switch (e->body_case) {
    case TANDEM__CTL__ENVELOPE__BODY_REGISTER:
        return check_register(e->register_, err, errlen);
    case TANDEM__CTL__ENVELOPE__BODY_HEARTBEAT:
        if (!valid_id(e->heartbeat->worker_id, 0))
            FAIL("heartbeat: bad worker_id");
        return TD_OK;
    case TANDEM__CTL__ENVELOPE__BODY_PREFILL: {
        const Tandem__Ctl__PrefillRequest *m = e->prefill;
        if (m->request_id == 0)
            FAIL("prefill: request_id missing");
        if (!valid_id(m->session_id, 1) || !valid_id(m->decode_worker_id, 1))
            FAIL("prefill: bad session or worker id");
        if (m->decode_ucx_address.len > TD_CTL_MAX_ADDRESS)
            FAIL("prefill: decode_ucx_address of %zu bytes", m->decode_ucx_address.len);
        if (m->kv_ticket.len > TD_CTL_MAX_ADDRESS)
            FAIL("prefill: kv_ticket of %zu bytes", m->kv_ticket.len);
        if ((r = check_tokens(m->token_ids, m->n_token_ids, 1, "prefill", err, errlen)))
            return r;
        return check_sampling(m->sampling, "prefill", err, errlen);
    }
    case TANDEM__CTL__ENVELOPE__BODY_KV_READY:
        return check_kv_ready(e->kv_ready, err, errlen);
    case TANDEM__CTL__ENVELOPE__BODY_DECODE:
        if (e->decode->request_id == 0)
            FAIL("decode: request_id missing");
        if (!valid_id(e->decode->session_id, 1))
            FAIL("decode: bad session id");
        if (e->decode->n_prompt &&
            ((r = check_tokens(e->decode->prompt, e->decode->n_prompt, 1, "decode", err,
                               errlen)) ||
             e->decode->n_prompt != e->decode->prompt_tokens))
            return r ? r : td_errf(err, errlen, TD_ECORRUPT, "decode: %zu prompt ids for "
                                   "prompt_tokens %llu", e->decode->n_prompt,
                                   (unsigned long long)e->decode->prompt_tokens);
        return check_sampling(e->decode->sampling, "decode", err, errlen);
    case TANDEM__CTL__ENVELOPE__BODY_TOKENS:
        return check_tokens_msg(e->tokens, err, errlen);
    case TANDEM__CTL__ENVELOPE__BODY_CANCEL:
        if (e->cancel->request_id == 0)
            FAIL("cancel: request_id missing");
        return TD_OK;
    case TANDEM__CTL__ENVELOPE__BODY_KV_TICKET:
        if (e->kv_ticket->request_id == 0)
            FAIL("kv_ticket: request_id missing");
        if (e->kv_ticket->ticket.len == 0 || e->kv_ticket->ticket.len > TD_CTL_MAX_ADDRESS)
            FAIL("kv_ticket: ticket of %zu bytes (allowed 1..%d)", e->kv_ticket->ticket.len,
                 TD_CTL_MAX_ADDRESS);
        return TD_OK;
    case TANDEM__CTL__ENVELOPE__BODY_KV_EVENTS:
        if (!valid_id(e->kv_events->worker_id, 0))
            FAIL("kv_events: bad worker_id");
        if (e->kv_events->block_tokens == 0 || e->kv_events->block_tokens > 65536)
            FAIL("kv_events: block_tokens %u outside 1..65536", e->kv_events->block_tokens);
        if (e->kv_events->n_stored > TD_CTL_MAX_TOKENS || e->kv_events->n_removed > TD_CTL_MAX_TOKENS)
            FAIL("kv_events: too many hashes");
        return TD_OK;
    case TANDEM__CTL__ENVELOPE__BODY_PAUSE:
        if (e->pause->request_id == 0)
            FAIL("pause: request_id missing");
        return TD_OK;
    case TANDEM__CTL__ENVELOPE__BODY_DRAIN:
        if (!valid_id(e->drain->worker_id, 0))
            FAIL("drain: bad worker_id");
        return TD_OK;
    default:
        FAIL("control message without a known body (case %d)", (int)e->body_case);
    }
}

td_err td_ctl_decode(const uint8_t *buf, size_t len, td_ctl_msg **out, char *err,
                     size_t errlen)
{
    *out = NULL;
    if (len > TD_CTL_MAX_BYTES)
        FAIL("control message of %zu bytes (at most %u)", len, TD_CTL_MAX_BYTES);
    td_ctl_msg *m = tandem__ctl__envelope__unpack(NULL, len, buf);
    if (!m)
        FAIL("control message: not a valid protobuf Envelope (%zu bytes)", len);
    td_err e = td_ctl_validate(m, err, errlen);
    if (e) {
        tandem__ctl__envelope__free_unpacked(m, NULL);
        return e;
    }
    *out = m;
    return TD_OK;
}

void td_ctl_free(td_ctl_msg *msg)
{
    if (msg)
        tandem__ctl__envelope__free_unpacked(msg, NULL);
}

td_err td_ctl_encode(td_ctl_msg *msg, uint8_t **out, size_t *len, char *err, size_t errlen)
{
    *out = NULL;
    *len = 0;
    msg->version = TD_CTL_VERSION;
    td_err e = td_ctl_validate(msg, err, errlen);
    if (e)
        return e;
    size_t n = tandem__ctl__envelope__get_packed_size(msg);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    *len = tandem__ctl__envelope__pack(msg, buf);
    *out = buf;
    return TD_OK;
}
