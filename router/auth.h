/* td_auth: optional API keys for the HTTP front door.
 *
 * Keys come from a file (one per line; blank lines and lines starting with
 * '#' are skipped; surrounding whitespace is trimmed) and/or a
 * comma-separated list (cmd/ reads TANDEM_API_KEYS and passes it here: only
 * cmd/ reads the environment). A request carries its key as
 * `Authorization: Bearer KEY` (OpenAI clients) or `x-api-key: KEY`
 * (Anthropic clients); either may match.
 *
 * Comparison is constant-time in the keys' contents: every configured key
 * is compared, over a fixed padded width, without an early exit, so the
 * time to reject a guess does not say how many of its bytes were right.
 */
#ifndef TD_ROUTER_AUTH_H
#define TD_ROUTER_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

/* Longest key accepted (bytes). */
#define TD_AUTH_KEY_MAX 256

typedef struct td_auth td_auth;

/* key_file and keys_csv may each be NULL. A key file that holds no key is an
 * error (a typo would otherwise leave the server open), as is a key longer
 * than TD_AUTH_KEY_MAX or one with spaces or control characters. With no
 * key from either source the result is an auth that accepts everything. */
td_err td_auth_create(td_auth **out, const char *key_file, const char *keys_csv,
                      char *err, size_t errlen);
void td_auth_destroy(td_auth *a);

/* Number of keys; 0 means authentication is off. */
size_t td_auth_count(const td_auth *a);
/* Whether a request with these header values (each may be NULL) may pass.
 * Always true when no key is configured. */
bool td_auth_check(const td_auth *a, const char *authorization, const char *x_api_key);

#endif
