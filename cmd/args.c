#include "cmd/args.h"

#include <errno.h>
#include <stdlib.h>

int td_arg_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int td_arg_float(const char *s, float lo, float hi, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || *end || end == s || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

td_err td_arg_ids(const json_t *v, const td_arg_ids_opts *o, int32_t **ids, size_t *n,
                  size_t *bad)
{
    *ids = NULL;
    *bad = SIZE_MAX;
    size_t len = json_array_size(v);
    if (!json_is_array(v) || (len == 0 && !o->allow_empty))
        return TD_EINVAL;
    int32_t *out = malloc((len ? len : 1) * sizeof *out);
    if (!out)
        return TD_ENOMEM;
    for (size_t i = 0; i < len; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_integer(e) || json_integer_value(e) < o->min_id ||
            json_integer_value(e) > INT32_MAX) {
            free(out);
            *bad = i;
            return TD_EINVAL;
        }
        out[i] = (int32_t)json_integer_value(e);
    }
    *ids = out;
    *n = len;
    return TD_OK;
}
