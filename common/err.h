/* Error codes shared by every module.
 *
 * One X-macro list generates the enum and td_strerror(), so a new code is
 * one line here. Functions return td_err and hand results back through an
 * out-parameter; TD_OK is zero so `if (err)` reads naturally. Parsers also
 * fill a caller buffer with a message that names the problem (which file,
 * which tensor, which field), because the code alone rarely says enough.
 */
#ifndef TD_COMMON_ERR_H
#define TD_COMMON_ERR_H

#include <stddef.h>

#define TD_ERR_MAP(X)                                              \
    X(TD_OK,        "success")                                     \
    X(TD_EINVAL,    "invalid argument")                            \
    X(TD_ENOMEM,    "out of memory")                               \
    X(TD_EIO,       "input/output error")                          \
    X(TD_ENOENT,    "no such file or entry")                       \
    X(TD_ECORRUPT,  "corrupt or malformed data")                   \
    X(TD_EFORMAT,   "unsupported format or version")               \
    X(TD_ESHAPE,    "tensor shape or dtype mismatch")              \
    X(TD_ERANGE,    "value out of range")                          \
    X(TD_ETOOLONG,  "input longer than the context")               \
    X(TD_ENOTSUP,   "not supported")                               \
    X(TD_EBUSY,     "resource busy")                               \
    X(TD_ETIMEDOUT, "timed out")                                   \
    X(TD_ECLOSED,   "closed")                                      \
    X(TD_ENOSPC,    "no space left")

typedef enum {
#define TD_ERR_ENUM(name, msg) name,
    TD_ERR_MAP(TD_ERR_ENUM)
#undef TD_ERR_ENUM
    TD_ERR_COUNT
} td_err;

const char *td_strerror(td_err err);

/* Writes a printf-style message into buf (if buf is non-NULL) and returns
 * err, so a parser can say `return td_errf(err, buf, len, TD_ECORRUPT, ...)`. */
td_err td_errf(char *buf, size_t len, td_err err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
