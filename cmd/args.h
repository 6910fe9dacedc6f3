/* Option values for the subcommands: whole numbers and floats in a range,
 * lists of token ids. */
#ifndef TD_CMD_ARGS_H
#define TD_CMD_ARGS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* 0 and *out set when s is a number in [lo, hi]; -1 otherwise. */
int td_arg_long(const char *s, long lo, long hi, long *out);
int td_arg_float(const char *s, float lo, float hi, float *out);

typedef struct {
    /* The smallest id taken: 0 where ids index the vocabulary, INT32_MIN
     * where the tokenizer judges them itself. */
    int64_t min_id;
    /* [] is a list of no ids rather than an error. */
    bool allow_empty;
} td_arg_ids_opts;

/* The token ids of v, a JSON array of integers in [min_id, INT32_MAX]
 * (`tandem generate --ids`, `tandem tokenize --decode`). TD_OK: *ids (free()
 * it; never NULL) and *n. TD_EINVAL: *bad is the index of the first element
 * at fault, or SIZE_MAX when v itself is (not an array, or empty when that
 * is not allowed). TD_ENOMEM. On error *ids is NULL. */
td_err td_arg_ids(const json_t *v, const td_arg_ids_opts *o, int32_t **ids, size_t *n,
                  size_t *bad);

#endif
