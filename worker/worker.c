/* Worker plumbing: registration, heartbeats, control messages in and out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "transport/ctl/ctl_link.h"
#include "transport/ctl/mailbox.h"
#include "worker/worker.h"

enum { SEND_TIMEOUT_MS = 2000, REGISTER_EVERY = 10 };

struct td_wk {
    td_wk_opts o;
    char id[64];
    char *listen_url;            /* the bound one */
    td_ctl_in *in;
    td_ctl_out *out;
    td_mbox *mbox;
    uv_timer_t timer;
    uint64_t beats;
    bool draining;
};

static void on_recv(void *arg, td_ctl_msg *msg)
{
    td_wk *w = arg;
    if (td_mbox_post(w->mbox, msg))
        td_ctl_free(msg);  /* shutting down */
}

static void on_mail(void *arg, void *item)
{
    td_wk *w = arg;
    w->o.on_msg(w->o.arg, item);
}

static void send_register(td_wk *w)
{
    Tandem__Ctl__WorkerRegister r = TANDEM__CTL__WORKER_REGISTER__INIT;
    r.worker_id = w->id;
    r.role = w->o.role;
    r.model_fingerprint = w->o.fingerprint;
    r.layout_version = w->o.layout_version;
    r.max_batch = w->o.max_batch;
    r.kv_capacity_bytes = w->o.kv_capacity_bytes;
    r.ucx_address = (ProtobufCBinaryData){w->o.ucx_address_len, (uint8_t *)w->o.ucx_address};
    r.control_url = w->listen_url;
    r.max_context = w->o.max_context;
    td_ctl_msg env = TANDEM__CTL__ENVELOPE__INIT;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_REGISTER;
    env.register_ = &r;
    td_wk_send(w, &env);
}

static void on_timer(uv_timer_t *t)
{
    td_wk *w = t->data;
    if (w->beats++ % REGISTER_EVERY == 0)
        send_register(w);
    Tandem__Ctl__Heartbeat hb = TANDEM__CTL__HEARTBEAT__INIT;
    hb.worker_id = w->id;
    hb.seq = w->beats;
    hb.draining = w->draining;
    if (w->o.load)
        w->o.load(w->o.arg, &hb);
    td_ctl_msg env = TANDEM__CTL__ENVELOPE__INIT;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    td_wk_send(w, &env);
}

td_err td_wk_send(td_wk *w, td_ctl_msg *msg)
{
    char err[256];
    td_err e = td_ctl_out_send(w->out, msg, err, sizeof err);
    if (e)
        td_log(TD_LOG_WARN, "worker %s: to the router: %s", w->id, err);
    return e;
}

td_err td_wk_send_tokens(td_wk *w, uint64_t request_id, uint64_t index, const int32_t *ids,
                         size_t n, Tandem__Ctl__FinishReason finish, const char *error)
{
    Tandem__Ctl__TokenChunk tc = TANDEM__CTL__TOKEN_CHUNK__INIT;
    tc.request_id = request_id;
    tc.index = index;
    tc.token_ids = (int32_t *)ids;
    tc.n_token_ids = n;
    tc.finish = finish;
    tc.error = (char *)(error ? error : "");
    td_ctl_msg env = TANDEM__CTL__ENVELOPE__INIT;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_TOKENS;
    env.tokens = &tc;
    return td_wk_send(w, &env);
}

const char *td_wk_id(const td_wk *w) { return w->id; }

void td_wk_set_draining(td_wk *w, bool draining) { w->draining = draining; }

td_err td_wk_create(td_wk **out, uv_loop_t *loop, const td_wk_opts *o, char *err,
                    size_t errlen)
{
    td_wk *w = calloc(1, sizeof *w);
    if (!w)
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    w->o = *o;
    if (!w->o.heartbeat_ms)
        w->o.heartbeat_ms = 200;
    if (o->worker_id)
        snprintf(w->id, sizeof w->id, "%s", o->worker_id);
    else
        snprintf(w->id, sizeof w->id, "%s-%ld",
                 o->role == TANDEM__CTL__ROLE__ROLE_PREFILL ? "prefill" : "decode",
                 (long)getpid());
    td_err e = td_mbox_create(&w->mbox, loop, on_mail, w);
    if (e) {
        free(w);
        return td_errf(err, errlen, e, "cannot create the worker's mailbox");
    }
    e = td_ctl_in_open(&w->in, o->listen_url ? o->listen_url : "tcp://127.0.0.1:0", on_recv,
                       w, err, errlen);
    if (!e && !(w->listen_url = strdup(td_ctl_in_url(w->in))))
        e = td_errf(err, errlen, TD_ENOMEM, "out of memory");
    if (!e)
        e = td_ctl_out_open(&w->out, o->router_url, SEND_TIMEOUT_MS, err, errlen);
    if (e) {
        td_wk_destroy(w);
        return e;
    }
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, on_timer, 0, (uint64_t)w->o.heartbeat_ms);
    td_log(TD_LOG_INFO, "worker %s: listening on %s, registering with %s", w->id,
           w->listen_url, o->router_url);
    *out = w;
    return TD_OK;
}

static void on_timer_closed(uv_handle_t *h) { free(h->data); }

void td_wk_destroy(td_wk *w)
{
    if (!w)
        return;
    td_ctl_in_close(w->in);  /* no on_recv after this */
    td_mbox_destroy(w->mbox);
    td_ctl_out_close(w->out);
    free(w->listen_url);
    if (w->timer.data) {
        uv_timer_stop(&w->timer);
        uv_close((uv_handle_t *)&w->timer, on_timer_closed);
    } else {
        free(w);
    }
}
