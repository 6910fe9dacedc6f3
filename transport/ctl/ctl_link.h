/* Control-plane links over nng: a worker or router receives validated
 * control messages (proto/ctl.h) on a PULL socket it listens on, and sends
 * to a peer's listener through a PUSH socket it dials. One direction per
 * socket keeps backpressure simple: a PUSH send blocks (up to its timeout)
 * when the peer stops reading, instead of queueing without bound.
 *
 * Receiving is asynchronous (nng aio, nng's threads): every message is
 * decoded and validated before the callback sees it; a bad, truncated or
 * foreign message is counted, logged at warn level and dropped, and the
 * link keeps going. */
#ifndef TD_TRANSPORT_CTL_LINK_H
#define TD_TRANSPORT_CTL_LINK_H

#include <stdint.h>

#include "common/err.h"
#include "proto/ctl.h"

typedef struct td_ctl_in td_ctl_in;
typedef struct td_ctl_out td_ctl_out;

/* Called on an nng thread; takes ownership of msg (td_ctl_free). */
typedef void (*td_ctl_recv_fn)(void *arg, td_ctl_msg *msg);

/* Listens on url (tcp://host:port, ipc:///path) and calls fn for each valid
 * message. */
td_err td_ctl_in_open(td_ctl_in **out, const char *url, td_ctl_recv_fn fn, void *arg,
                      char *err, size_t errlen);
/* Stops receiving; no callback runs after it returns. */
void td_ctl_in_close(td_ctl_in *in);
/* Messages refused so far (invalid or undecodable). */
uint64_t td_ctl_in_rejected(const td_ctl_in *in);
/* The URL actually bound (a tcp port 0 becomes the chosen port). */
const char *td_ctl_in_url(const td_ctl_in *in);

/* Dials url (retrying in the background until the peer listens). */
td_err td_ctl_out_open(td_ctl_out **out, const char *url, int send_timeout_ms,
                       char *err, size_t errlen);
void td_ctl_out_close(td_ctl_out *o);
/* Validates, encodes and sends msg (borrowed). TD_ETIMEDOUT when the peer
 * does not take it within the send timeout. */
td_err td_ctl_out_send(td_ctl_out *o, td_ctl_msg *msg, char *err, size_t errlen);
/* The same without waiting: TD_EBUSY when the peer is not connected or not
 * reading (the message is dropped). For messages that repeat anyway. */
td_err td_ctl_out_try_send(td_ctl_out *o, td_ctl_msg *msg, char *err, size_t errlen);

#endif
