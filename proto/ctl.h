/* Control-plane messages (proto/tandem_ctl.proto) on the wire.
 *
 * td_ctl_decode is the only way bytes from a peer become a message: it
 * unpacks with protobuf-c and then checks every field against the limits
 * below, so code that receives a message never meets a missing body, an
 * enum out of range, a section outside its state, or a 4 GB token list. */
#ifndef TD_PROTO_CTL_H
#define TD_PROTO_CTL_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "tandem_ctl.pb-c.h"

#define TD_CTL_VERSION 1u

typedef Tandem__Ctl__Envelope td_ctl_msg;

enum {
    TD_CTL_MAX_BYTES = 64u << 20,      /* one message on the wire */
    TD_CTL_MAX_TOKENS = 1u << 21,      /* 2M tokens: past V4's 1M context */
    TD_CTL_MAX_ID = 256,               /* worker and session id characters */
    TD_CTL_MAX_ADDRESS = 4096,         /* UCX worker address bytes */
    TD_CTL_MAX_SECTIONS = 4096,
    TD_CTL_MAX_STOP_IDS = 64,
};

/* Unpacks and validates buf[0..len). On success *out is owned by the caller
 * (td_ctl_free); on error *out is NULL and err says which field is wrong. */
td_err td_ctl_decode(const uint8_t *buf, size_t len, td_ctl_msg **out,
                     char *err, size_t errlen);
void td_ctl_free(td_ctl_msg *msg);

/* Validates msg (the same checks as decode) and packs it into a malloc'd
 * buffer (*out, caller frees). Sets the version field. */
td_err td_ctl_encode(td_ctl_msg *msg, uint8_t **out, size_t *len,
                     char *err, size_t errlen);

/* The checks alone. */
td_err td_ctl_validate(const td_ctl_msg *msg, char *err, size_t errlen);

#endif
