/* Control-plane messages: every kind round-trips; bad, truncated and foreign
 * bytes are refused with a message naming the problem. */
#include <stdlib.h>
#include <string.h>

#include "proto/ctl.h"
#include "tests/td_test.h"

static Tandem__Ctl__SamplingParams sampling(void)
{
    Tandem__Ctl__SamplingParams s = TANDEM__CTL__SAMPLING_PARAMS__INIT;
    s.temperature = 0.7f;
    s.top_p = 0.9f;
    s.max_tokens = 64;
    return s;
}

/* Packs env, decodes it back, returns the decoded message (or NULL). */
static td_ctl_msg *round_trip(td_ctl_msg *env, char *err, size_t errlen)
{
    uint8_t *buf;
    size_t len;
    if (td_ctl_encode(env, &buf, &len, err, errlen))
        return NULL;
    td_ctl_msg *out = NULL;
    td_ctl_decode(buf, len, &out, err, errlen);
    free(buf);
    return out;
}

static void every_kind_round_trips(void)
{
    char err[256];
    int32_t toks[5] = {0, 17, 128803, 5, 1};

    Tandem__Ctl__WorkerRegister reg = TANDEM__CTL__WORKER_REGISTER__INIT;
    reg.worker_id = "decode-0";
    reg.role = TANDEM__CTL__ROLE__ROLE_DECODE;
    reg.model_fingerprint = 0x1234567890abcdefull;
    reg.layout_version = 1;
    reg.max_batch = 16;
    reg.kv_capacity_bytes = 1ull << 34;
    uint8_t addr[3] = {1, 2, 3};
    reg.ucx_address = (ProtobufCBinaryData){3, addr};
    reg.control_url = "tcp://127.0.0.1:7001";
    td_ctl_msg env = TANDEM__CTL__ENVELOPE__INIT;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_REGISTER;
    env.register_ = &reg;
    td_ctl_msg *m = round_trip(&env, err, sizeof err);
    TD_CHECK(m && m->register_ && !strcmp(m->register_->worker_id, "decode-0") &&
             m->register_->model_fingerprint == 0x1234567890abcdefull &&
             m->register_->ucx_address.len == 3 && m->version == TD_CTL_VERSION);
    td_ctl_free(m);

    Tandem__Ctl__SamplingParams sp = sampling();
    Tandem__Ctl__PrefillRequest pre = TANDEM__CTL__PREFILL_REQUEST__INIT;
    pre.request_id = 42;
    pre.session_id = "agent-7";
    pre.token_ids = toks;
    pre.n_token_ids = 5;
    pre.sampling = &sp;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_PREFILL;
    env.prefill = &pre;
    m = round_trip(&env, err, sizeof err);
    TD_CHECK(m && m->prefill->n_token_ids == 5 && m->prefill->token_ids[2] == 128803 &&
             m->prefill->sampling->max_tokens == 64);
    td_ctl_free(m);

    Tandem__Ctl__KvSection sec = TANDEM__CTL__KV_SECTION__INIT, *secs[1] = {&sec};
    sec.layer = 3;
    sec.compress_ratio = 128;
    sec.offset = 64;
    sec.length = 1000;
    Tandem__Ctl__KvReady kv = TANDEM__CTL__KV_READY__INIT;
    kv.request_id = 42;
    kv.layout_version = 1;
    kv.tokens = 5;
    kv.total_bytes = 1072;
    kv.checksum = 99;
    kv.sections = secs;
    kv.n_sections = 1;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_KV_READY;
    env.kv_ready = &kv;
    m = round_trip(&env, err, sizeof err);
    TD_CHECK(m && m->kv_ready->n_sections == 1 && m->kv_ready->sections[0]->length == 1000);
    td_ctl_free(m);

    Tandem__Ctl__TokenChunk tc = TANDEM__CTL__TOKEN_CHUNK__INIT;
    tc.request_id = 42;
    tc.token_ids = toks;
    tc.n_token_ids = 2;
    tc.finish = TANDEM__CTL__FINISH_REASON__FINISH_STOP;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_TOKENS;
    env.tokens = &tc;
    m = round_trip(&env, err, sizeof err);
    TD_CHECK(m && m->tokens->finish == TANDEM__CTL__FINISH_REASON__FINISH_STOP);
    td_ctl_free(m);

    Tandem__Ctl__Cancel c = TANDEM__CTL__CANCEL__INIT;
    c.request_id = 42;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_CANCEL;
    env.cancel = &c;
    m = round_trip(&env, err, sizeof err);
    TD_CHECK(m && m->cancel->request_id == 42);
    td_ctl_free(m);

    uint8_t tk[40];
    memset(tk, 7, sizeof tk);
    Tandem__Ctl__KvTicket kt = TANDEM__CTL__KV_TICKET__INIT;
    kt.request_id = 42;
    kt.ticket = (ProtobufCBinaryData){sizeof tk, tk};
    kt.capacity_bytes = 1u << 20;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_KV_TICKET;
    env.kv_ticket = &kt;
    m = round_trip(&env, err, sizeof err);
    TD_CHECK(m && m->kv_ticket->ticket.len == sizeof tk && m->kv_ticket->ticket.data[39] == 7);
    td_ctl_free(m);
    kt.ticket.len = 0;  /* a ticket is never empty */
    uint8_t *buf;
    size_t len;
    TD_CHECK(td_ctl_encode(&env, &buf, &len, err, sizeof err) == TD_ECORRUPT);

    /* A DecodeRequest may carry the prompt's ids: exactly prompt_tokens of them. */
    Tandem__Ctl__DecodeRequest dr = TANDEM__CTL__DECODE_REQUEST__INIT;
    dr.request_id = 42;
    dr.sampling = &sp;
    dr.prompt_tokens = 5;
    dr.prompt = toks;
    dr.n_prompt = 5;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_DECODE;
    env.decode = &dr;
    m = round_trip(&env, err, sizeof err);
    TD_CHECK(m && m->decode->n_prompt == 5 && m->decode->prompt[2] == 128803);
    td_ctl_free(m);
    dr.n_prompt = 4;
    TD_CHECK(td_ctl_encode(&env, &buf, &len, err, sizeof err) == TD_ECORRUPT);
    TD_CHECK(strstr(err, "prompt ids") != NULL);

    Tandem__Ctl__Pause pa = TANDEM__CTL__PAUSE__INIT;
    pa.request_id = 42;
    pa.paused = 1;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_PAUSE;
    env.pause = &pa;
    m = round_trip(&env, err, sizeof err);
    TD_CHECK(m && m->pause->paused);
    td_ctl_free(m);
}

static td_err decode_bytes(const uint8_t *b, size_t n, char *err, size_t errlen)
{
    td_ctl_msg *m = NULL;
    td_err e = td_ctl_decode(b, n, &m, err, errlen);
    TD_CHECK((e == TD_OK) == (m != NULL));
    td_ctl_free(m);
    return e;
}

static void bad_messages_are_refused(void)
{
    char err[256];
    Tandem__Ctl__Cancel c = TANDEM__CTL__CANCEL__INIT;
    c.request_id = 9;
    td_ctl_msg env = TANDEM__CTL__ENVELOPE__INIT;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_CANCEL;
    env.cancel = &c;
    uint8_t *buf;
    size_t len;
    TD_CHECK(td_ctl_encode(&env, &buf, &len, err, sizeof err) == TD_OK);
    /* every truncation */
    for (size_t n = 0; n < len; n++)
        TD_CHECK(decode_bytes(buf, n, err, sizeof err) != TD_OK);
    /* another version */
    env.version = 7;
    size_t n7 = tandem__ctl__envelope__get_packed_size(&env);
    uint8_t *b7 = malloc(n7);
    tandem__ctl__envelope__pack(&env, b7);
    TD_CHECK(decode_bytes(b7, n7, err, sizeof err) == TD_EFORMAT);
    TD_CHECK(strstr(err, "version 7") != NULL);
    free(b7);
    free(buf);
    /* foreign bytes */
    const uint8_t junk[] = "GET / HTTP/1.1\r\n\r\n";
    TD_CHECK(decode_bytes(junk, sizeof junk - 1, err, sizeof err) != TD_OK);
    /* an envelope with no body */
    td_ctl_msg empty = TANDEM__CTL__ENVELOPE__INIT;
    TD_CHECK(td_ctl_encode(&empty, &buf, &len, err, sizeof err) != TD_OK);
}

static void invalid_fields_are_named(void)
{
    char err[256];
    uint8_t *buf;
    size_t len;
    td_ctl_msg env = TANDEM__CTL__ENVELOPE__INIT;

    Tandem__Ctl__WorkerRegister reg = TANDEM__CTL__WORKER_REGISTER__INIT;
    reg.worker_id = "w";
    reg.role = (Tandem__Ctl__Role)9;
    reg.layout_version = 1;
    reg.max_batch = 1;
    reg.control_url = "tcp://x";
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_REGISTER;
    env.register_ = &reg;
    TD_CHECK(td_ctl_encode(&env, &buf, &len, err, sizeof err) == TD_ECORRUPT);
    TD_CHECK(strstr(err, "role") != NULL);
    reg.role = TANDEM__CTL__ROLE__ROLE_PREFILL;
    reg.worker_id = "has space";
    TD_CHECK(td_ctl_encode(&env, &buf, &len, err, sizeof err) == TD_ECORRUPT);

    int32_t bad[2] = {3, -1};
    Tandem__Ctl__SamplingParams sp = sampling();
    Tandem__Ctl__PrefillRequest pre = TANDEM__CTL__PREFILL_REQUEST__INIT;
    pre.request_id = 1;
    pre.token_ids = bad;
    pre.n_token_ids = 2;
    pre.sampling = &sp;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_PREFILL;
    env.prefill = &pre;
    TD_CHECK(td_ctl_encode(&env, &buf, &len, err, sizeof err) == TD_ECORRUPT);
    TD_CHECK(strstr(err, "negative") != NULL);
    bad[1] = 4;
    sp.top_p = 0.0f;
    TD_CHECK(td_ctl_encode(&env, &buf, &len, err, sizeof err) == TD_ECORRUPT);
    TD_CHECK(strstr(err, "top_p") != NULL);
    sp.top_p = 1.0f;
    pre.sampling = NULL;
    TD_CHECK(td_ctl_encode(&env, &buf, &len, err, sizeof err) == TD_ECORRUPT);

    Tandem__Ctl__KvSection sec = TANDEM__CTL__KV_SECTION__INIT, *secs[1] = {&sec};
    sec.offset = 1000;
    sec.length = UINT64_MAX - 10;   /* offset + length overflows */
    Tandem__Ctl__KvReady kv = TANDEM__CTL__KV_READY__INIT;
    kv.request_id = 5;
    kv.layout_version = 1;
    kv.tokens = 10;
    kv.total_bytes = 2000;
    kv.sections = secs;
    kv.n_sections = 1;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_KV_READY;
    env.kv_ready = &kv;
    TD_CHECK(td_ctl_encode(&env, &buf, &len, err, sizeof err) == TD_ECORRUPT);
    TD_CHECK(strstr(err, "section 0") != NULL);
}

TD_TEST_MAIN({"every_kind_round_trips", every_kind_round_trips},
             {"bad_messages_are_refused", bad_messages_are_refused},
             {"invalid_fields_are_named", invalid_fields_are_named})
