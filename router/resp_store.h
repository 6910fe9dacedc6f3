/* td_resp_store: finished Responses API answers kept in memory, so a client
 * can read one back (GET /v1/responses/{id}), delete it, and continue a
 * conversation by naming the last answer (previous_response_id) instead of
 * resending it.
 *
 * An entry holds what its request added: the input items after the
 * previous answer, and the response object (with its output items). The
 * whole conversation is rebuilt by walking the previous-answer links, so a
 * chain of n turns costs memory in proportion to n, not n squared; the
 * walk also marks every ancestor as used, so the entries a live
 * conversation needs are the last ones least-recently-used eviction takes.
 *
 * Bounded by a byte budget (the entries' JSON size). Loop thread only.
 */
#ifndef TD_ROUTER_RESP_STORE_H
#define TD_ROUTER_RESP_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

typedef struct td_resp_store td_resp_store;

typedef struct {
    size_t entries, bytes;
    unsigned long long evictions;
} td_resp_store_stats;

/* budget 0: a store that keeps nothing. */
td_err td_resp_store_create(td_resp_store **out, size_t budget_bytes);
void td_resp_store_destroy(td_resp_store *s);

/* Files the response `id` (the "resp_..." id), which continued prev_id (NULL:
 * none). Takes the references to input (an array of items) and response,
 * also on failure. Older entries are evicted to make room; an entry larger
 * than the whole budget is not kept (TD_ENOSPC). */
td_err td_resp_store_put(td_resp_store *s, const char *id, const char *prev_id, json_t *input,
                         json_t *response);

/* The stored response object (a new reference), or NULL. */
json_t *td_resp_store_response(td_resp_store *s, const char *id);

/* The conversation that ends with answer `id`, as Responses input items:
 * each turn's input then its output, oldest first (a new array in *out).
 * TD_ENOENT when id, or an answer it continued, is not stored (deleted or
 * evicted): the conversation cannot be rebuilt. */
td_err td_resp_store_history(td_resp_store *s, const char *id, json_t **out);

/* What answer `id` was generated from: the conversation before it (as
 * td_resp_store_history gives it for the answer it continued) and its own
 * input items, oldest first (a new array in *out). TD_ENOENT as there. */
td_err td_resp_store_inputs(td_resp_store *s, const char *id, json_t **out);

/* Removes one entry; false when it was not there. Answers that continued
 * it can no longer be rebuilt (their history is gone), as with OpenAI. */
bool td_resp_store_delete(td_resp_store *s, const char *id);

td_resp_store_stats td_resp_store_get_stats(const td_resp_store *s);

#endif
