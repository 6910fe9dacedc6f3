/* Checks the kvstore tests share: open a store, put and read back the
 * values of kvtest.h, failing the test with the store's message. */
#ifndef TD_TESTS_KVCHECK_H
#define TD_TESTS_KVCHECK_H

#include "tests/td_test.h"
#include "tests/unit/kvstore/kvtest.h"

static inline td_kv *open_ok(const td_kv_opts *o)
{
    td_kv *kv = NULL;
    char err[512] = "";
    td_err r = td_kv_open(&kv, o, err, sizeof(err));
    if (r)
        fprintf(stderr, "open %s: %s: %s\n", o->dir, td_strerror(r), err);
    TD_CHECK_EQ_INT(r, TD_OK);
    return kv;
}

static inline void put_ok(td_kv *kv, uint64_t id, size_t len)
{
    TD_CHECK_EQ_INT(kvt_put(kv, id, id, len), TD_OK);
}

/* TD_OK if the entry reads back as value `id` of `len` bytes. */
static inline td_err get_check(td_kv *kv, uint64_t id, size_t len, char *err, size_t errlen)
{
    uint8_t *want = malloc(len + 1), *got = malloc(len + 1);
    kvt_fill(want, len, id);
    size_t n = 0;
    td_err r = td_kv_get(kv, kvt_key(id), 0, got, len + 1, &n, err, errlen);
    if (!r && (n != len || memcmp(want, got, len) != 0)) {
        fprintf(stderr, "value %llu differs (%zu bytes, want %zu)\n", (unsigned long long)id, n, len);
        r = TD_EIO;
    }
    free(want);
    free(got);
    return r;
}

static inline void get_ok(td_kv *kv, uint64_t id, size_t len)
{
    char err[512] = "";
    td_err r = get_check(kv, id, len, err, sizeof(err));
    if (r)
        fprintf(stderr, "get %llu: %s: %s\n", (unsigned long long)id, td_strerror(r), err);
    TD_CHECK_EQ_INT(r, TD_OK);
}

/* A new store with the small test geometry in a scratch directory. */
static inline td_kv *fresh(char dir[256], td_kv_opts *o)
{
    kvt_dir(dir, 256, "s");
    *o = kvt_opts(dir);
    return open_ok(o);
}

#endif
