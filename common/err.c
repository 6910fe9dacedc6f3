#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>

static const char *const messages[] = {
#define TD_ERR_MSG(name, msg) msg,
    TD_ERR_MAP(TD_ERR_MSG)
#undef TD_ERR_MSG
};

const char *td_strerror(td_err err)
{
    if ((unsigned)err >= TD_ERR_COUNT)
        return "unknown error";
    return messages[err];
}

td_err td_errf(char *buf, size_t len, td_err err, const char *fmt, ...)
{
    if (buf && len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, len, fmt, ap);
        va_end(ap);
    }
    return err;
}
