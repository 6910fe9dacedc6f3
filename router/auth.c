/* API keys: loading and constant-time checking (router/auth.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "router/auth.h"

/* A key stored zero-padded to the full width, so a comparison always
 * touches the same number of bytes whatever the key. */
typedef struct {
    unsigned char bytes[TD_AUTH_KEY_MAX];
    size_t len;
} auth_key;

struct td_auth {
    auth_key *keys;
    size_t n, cap;
};

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* Adds s[0..n) after trimming; an empty key is skipped. */
static td_err add_key(td_auth *a, const char *s, size_t n, const char *where,
                      char *err, size_t errlen)
{
    while (n && is_space(*s)) {
        s++;
        n--;
    }
    while (n && is_space(s[n - 1]))
        n--;
    if (!n)
        return TD_OK;
    if (n > TD_AUTH_KEY_MAX)
        return td_errf(err, errlen, TD_EINVAL, "%s: an API key is longer than %d bytes",
                       where, TD_AUTH_KEY_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f)
            return td_errf(err, errlen, TD_EINVAL,
                           "%s: an API key contains a space or a control character", where);
    }
    if (a->n == a->cap) {
        size_t nc = a->cap ? 2 * a->cap : 4;
        auth_key *nk = realloc(a->keys, nc * sizeof *nk);
        if (!nk)
            return td_errf(err, errlen, TD_ENOMEM, "out of memory");
        a->keys = nk;
        a->cap = nc;
    }
    auth_key *k = &a->keys[a->n++];
    memset(k->bytes, 0, sizeof k->bytes);
    memcpy(k->bytes, s, n);
    k->len = n;
    return TD_OK;
}

static td_err load_file(td_auth *a, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return td_errf(err, errlen, TD_ENOENT, "cannot open the API key file %s", path);
    size_t before = a->n;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    td_err e = TD_OK;
    while (!e && (n = getline(&line, &cap, f)) >= 0) {
        const char *p = line;
        while (*p && is_space(*p))
            p++;
        if (*p == '#')
            continue;
        e = add_key(a, line, (size_t)n, path, err, errlen);
    }
    free(line);
    fclose(f);
    if (!e && a->n == before)
        e = td_errf(err, errlen, TD_EINVAL, "the API key file %s holds no key", path);
    return e;
}

td_err td_auth_create(td_auth **out, const char *key_file, const char *keys_csv,
                      char *err, size_t errlen)
{
    td_auth *a = calloc(1, sizeof *a);
    if (!a)
        return td_errf(err, errlen, TD_ENOMEM, "out of memory");
    td_err e = TD_OK;
    if (key_file)
        e = load_file(a, key_file, err, errlen);
    for (const char *p = keys_csv; !e && p && *p;) {
        size_t n = strcspn(p, ",");
        e = add_key(a, p, n, "TANDEM_API_KEYS", err, errlen);
        p += n + (p[n] == ',');
    }
    if (e) {
        td_auth_destroy(a);
        return e;
    }
    *out = a;
    return TD_OK;
}

void td_auth_destroy(td_auth *a)
{
    if (!a)
        return;
    if (a->keys)  /* keys should not linger in freed memory */
        memset(a->keys, 0, a->cap * sizeof *a->keys);
    free(a->keys);
    free(a);
}

size_t td_auth_count(const td_auth *a) { return a ? a->n : 0; }

/* Non-zero unless the candidate equals the key. Reads every byte of both
 * padded buffers and never branches on their contents. */
static unsigned diff(const auth_key *k, const unsigned char *cand, size_t cand_len)
{
    unsigned d = 0;
    for (size_t i = 0; i < TD_AUTH_KEY_MAX; i++)
        d |= (unsigned)(k->bytes[i] ^ cand[i]);
    return d | (unsigned)(k->len ^ cand_len);
}

static bool match_any(const td_auth *a, const char *v)
{
    if (!v)
        return false;
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    /* Over-long candidates still go through the comparison (against a
     * truncated copy, with a length that matches no key), so rejecting
     * one takes as long as rejecting any other. */
    unsigned char cand[TD_AUTH_KEY_MAX] = {0};
    memcpy(cand, v, n < TD_AUTH_KEY_MAX ? n : TD_AUTH_KEY_MAX);
    unsigned ok = 0;
    for (size_t i = 0; i < a->n; i++)
        ok |= diff(&a->keys[i], cand, n) == 0;
    return ok != 0;
}

bool td_auth_check(const td_auth *a, const char *authorization, const char *x_api_key)
{
    if (!a || a->n == 0)
        return true;
    bool ok = false;
    if (authorization && !strncasecmp(authorization, "Bearer ", 7)) {
        const char *t = authorization + 7;
        while (*t == ' ')
            t++;
        ok = match_any(a, t);
    }
    /* Both are checked whatever the first gave: no timing hint about
     * which header was right. */
    ok = match_any(a, x_api_key) || ok;
    return ok;
}
