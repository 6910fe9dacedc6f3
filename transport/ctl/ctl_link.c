#include "transport/ctl/ctl_link.h"

#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

struct td_ctl_in {
    nng_socket sock;
    nng_aio *aio;
    td_ctl_recv_fn fn;
    void *arg;
    atomic_uint_fast64_t rejected;
    char url[256];
};

struct td_ctl_out {
    nng_socket sock;
};

static void recv_done(void *p)
{
    td_ctl_in *in = p;
    if (nng_aio_result(in->aio) != 0)
        return;                 /* closed (NNG_ECLOSED) or cancelled: stop */
    nng_msg *msg = nng_aio_get_msg(in->aio);
    td_ctl_msg *m = NULL;
    char err[256];
    if (td_ctl_decode(nng_msg_body(msg), nng_msg_len(msg), &m, err, sizeof err)) {
        atomic_fetch_add(&in->rejected, 1);
        td_log(TD_LOG_WARN, "ctl: dropped a message from a peer on %s: %s", in->url, err);
    }
    nng_msg_free(msg);
    if (m)
        in->fn(in->arg, m);
    nng_recv_aio(in->sock, in->aio);
}

td_err td_ctl_in_open(td_ctl_in **out, const char *url, td_ctl_recv_fn fn, void *arg,
                      char *err, size_t errlen)
{
    *out = NULL;
    td_ctl_in *in = calloc(1, sizeof *in);
    if (!in)
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    in->fn = fn;
    in->arg = arg;
    int rv;
    nng_listener l;
    if ((rv = nng_pull0_open(&in->sock)) != 0)
        goto fail;
    /* A message larger than the protocol allows never reaches the decoder. */
    nng_socket_set_size(in->sock, NNG_OPT_RECVMAXSZ, TD_CTL_MAX_BYTES);
    if ((rv = nng_listen(in->sock, url, &l, 0)) != 0) {
        nng_close(in->sock);
        goto fail;
    }
    char *bound = NULL;
    if (nng_listener_get_string(l, NNG_OPT_URL, &bound) == 0) {
        snprintf(in->url, sizeof in->url, "%s", bound);
        nng_strfree(bound);
    } else {
        snprintf(in->url, sizeof in->url, "%s", url);
    }
    if (strncmp(url, "tcp://", 6) == 0) {
        int port = 0;
        if (nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port) == 0 && port > 0) {
            const char *colon = strrchr(url, ':');
            snprintf(in->url, sizeof in->url, "%.*s:%d", (int)(colon - url), url, port);
        }
    }
    if ((rv = nng_aio_alloc(&in->aio, recv_done, in)) != 0) {
        nng_close(in->sock);
        goto fail;
    }
    nng_recv_aio(in->sock, in->aio);
    *out = in;
    return TD_OK;
fail:
    free(in);
    return td_errf(err, errlen, TD_EIO, "ctl: listen on %s: %s", url, nng_strerror(rv));
}

void td_ctl_in_close(td_ctl_in *in)
{
    if (!in)
        return;
    /* nng_aio_stop waits for a running callback and stops the chain. */
    nng_aio_stop(in->aio);
    nng_close(in->sock);
    nng_aio_free(in->aio);
    free(in);
}

uint64_t td_ctl_in_rejected(const td_ctl_in *in)
{
    return atomic_load(&((td_ctl_in *)in)->rejected);
}

const char *td_ctl_in_url(const td_ctl_in *in) { return in->url; }

td_err td_ctl_out_open(td_ctl_out **out, const char *url, int send_timeout_ms,
                       char *err, size_t errlen)
{
    *out = NULL;
    td_ctl_out *o = calloc(1, sizeof *o);
    if (!o)
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    int rv;
    if ((rv = nng_push0_open(&o->sock)) != 0) {
        free(o);
        return td_errf(err, errlen, TD_EIO, "ctl: push socket: %s", nng_strerror(rv));
    }
    nng_socket_set_ms(o->sock, NNG_OPT_SENDTIMEO, send_timeout_ms);
    /* A queue, so a peer busy for a moment neither blocks the sender nor
     * makes a non-blocking send (heartbeats) fail. */
    nng_socket_set_int(o->sock, NNG_OPT_SENDBUF, 256);
    /* Non-blocking dial: the peer may start later; nng reconnects. */
    if ((rv = nng_dial(o->sock, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
        nng_close(o->sock);
        free(o);
        return td_errf(err, errlen, TD_EIO, "ctl: dial %s: %s", url, nng_strerror(rv));
    }
    *out = o;
    return TD_OK;
}

void td_ctl_out_close(td_ctl_out *o)
{
    if (!o)
        return;
    nng_close(o->sock);
    free(o);
}

static td_err send_flags(td_ctl_out *o, td_ctl_msg *msg, int flags, char *err, size_t errlen)
{
    uint8_t *buf;
    size_t len;
    td_err e = td_ctl_encode(msg, &buf, &len, err, errlen);
    if (e)
        return e;
    int rv = nng_send(o->sock, buf, len, flags);
    free(buf);
    if (rv == NNG_ETIMEDOUT)
        return td_errf(err, errlen, TD_ETIMEDOUT, "ctl: send timed out");
    if (rv == NNG_EAGAIN)
        return td_errf(err, errlen, TD_EBUSY, "ctl: the peer cannot take it now");
    if (rv != 0)
        return td_errf(err, errlen, TD_EIO, "ctl: send: %s", nng_strerror(rv));
    return TD_OK;
}

td_err td_ctl_out_send(td_ctl_out *o, td_ctl_msg *msg, char *err, size_t errlen)
{
    return send_flags(o, msg, 0, err, errlen);
}

td_err td_ctl_out_try_send(td_ctl_out *o, td_ctl_msg *msg, char *err, size_t errlen)
{
    return send_flags(o, msg, NNG_FLAG_NONBLOCK, err, errlen);
}
