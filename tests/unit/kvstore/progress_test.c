/* td_kv_get_progress: the reported prefix only grows, ends at the value's
 * length, and every byte before it is already the value's when reported; a
 * corrupt block stops the reports before it. */
#include "tests/td_test.h"
#include "tests/unit/kvstore/kvtest.h"

#define PAYLOAD (16384 - 128)   /* value bytes per block, kvt_opts geometry */

typedef struct {
    const uint8_t *buf, *want;
    size_t len;                  /* the value's */
    size_t last;                 /* the last k reported */
    int calls, early;            /* early: calls with k < len */
} watch;

static void on_progress(void *arg, size_t k)
{
    watch *w = arg;
    TD_CHECK(w->calls == 0 || k > w->last);
    TD_CHECK(k <= w->len);
    TD_CHECK(memcmp(w->buf, w->want, k < w->len ? k : w->len) == 0);
    w->last = k;
    w->calls++;
    w->early += k < w->len;
}

static td_kv *fresh(char dir[256], td_kv_opts *o)
{
    kvt_dir(dir, 256, "s");
    *o = kvt_opts(dir);
    td_kv *kv = NULL;
    char err[512] = "";
    TD_CHECK_EQ_INT(td_kv_open(&kv, o, err, sizeof(err)), TD_OK);
    return kv;
}

/* Reads value id (len bytes) with progress; returns the error, w filled. */
static td_err get_watched(td_kv *kv, uint64_t id, size_t len, watch *w, char *err, size_t errlen)
{
    uint8_t *want = malloc(len + 1), *buf = calloc(1, len + 1);
    kvt_fill(want, len, id);
    *w = (watch){.buf = buf, .want = want, .len = len};
    size_t n = 0;
    td_err r = td_kv_get_progress(kv, kvt_key(id), 0, buf, len + 1, &n, on_progress, w, err,
                                  errlen);
    if (!r) {
        TD_CHECK_EQ_INT(n, len);
        TD_CHECK(memcmp(buf, want, len) == 0);
    }
    free(want);
    free(buf);
    w->buf = w->want = NULL;
    return r;
}

static void test_monotone(void)
{
    char dir[256];
    td_kv_opts o;
    td_kv *kv = fresh(dir, &o);
    if (!kv)
        return;
    const size_t sizes[] = {0, 1, PAYLOAD, PAYLOAD + 1, (1u << 20) + 7};
    char err[512] = "";
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint8_t *v = malloc(sizes[i] + 1);
        kvt_fill(v, sizes[i], 100 + i);
        TD_CHECK_EQ_INT(td_kv_put(kv, kvt_key(100 + i), 0, 1, v, sizes[i], err, sizeof(err)), TD_OK);
        free(v);
        watch w;
        TD_CHECK_EQ_INT(get_watched(kv, 100 + i, sizes[i], &w, err, sizeof(err)), TD_OK);
        TD_CHECK(w.calls >= 1);
        TD_CHECK_EQ_INT(w.last, sizes[i]);
        /* 65 blocks, 8 in flight: the first blocks are reported while the
         * last ones are still to be read. */
        if (sizes[i] > (1u << 20))
            TD_CHECK(w.early >= 1);
        fprintf(stderr, "  %zu bytes: %d progress calls\n", sizes[i], w.calls);
    }
    /* Absent, or too big for the buffer: no read, no progress. */
    watch w = {0};
    size_t n = 0;
    uint8_t small[16];
    TD_CHECK_EQ_INT(td_kv_get_progress(kv, kvt_key(999), 0, small, sizeof small, &n, on_progress,
                                       &w, err, sizeof(err)), TD_ENOENT);
    TD_CHECK_EQ_INT(td_kv_get_progress(kv, kvt_key(104), 0, small, sizeof small, &n, on_progress,
                                       &w, err, sizeof(err)), TD_ERANGE);
    TD_CHECK_EQ_INT(n, sizes[4]);
    TD_CHECK_EQ_INT(w.calls, 0);
    td_kv_close(kv);
    kvt_cleanup(dir);
}

static void test_corrupt_middle(void)
{
    char dir[256];
    td_kv_opts o;
    td_kv *kv = fresh(dir, &o);
    if (!kv)
        return;
    size_t len = (1u << 20) + 7;
    uint8_t *v = malloc(len);
    kvt_fill(v, len, 7);
    char err[512] = "";
    TD_CHECK_EQ_INT(td_kv_put(kv, kvt_key(7), 0, 1, v, len, err, sizeof(err)), TD_OK);
    free(v);
    td_kv_close(kv);
    /* The first value in a fresh store starts at page 0: block 30's
     * payload is at 30 x 16 KiB + header. */
    TD_CHECK_EQ_INT(kvt_flip_byte(dir, "seg-000000.dat", 30 * 16384 + 128 + 900), 0);
    kv = NULL;
    TD_CHECK_EQ_INT(td_kv_open(&kv, &o, err, sizeof(err)), TD_OK);
    if (!kv)
        return;
    watch w;
    TD_CHECK_EQ_INT(get_watched(kv, 7, len, &w, err, sizeof(err)), TD_ECORRUPT);
    fprintf(stderr, "  (expected) %s; progress reached %zu in %d calls\n", err, w.last, w.calls);
    TD_CHECK(strstr(err, "block 30") != NULL);
    TD_CHECK(w.last <= (size_t)30 * PAYLOAD);
    /* Dropped, as td_kv_get drops it. */
    size_t n = 0;
    TD_CHECK_EQ_INT(td_kv_get(kv, kvt_key(7), 0, NULL, 0, &n, err, sizeof(err)), TD_ENOENT);
    td_kv_close(kv);
    kvt_cleanup(dir);
}

TD_TEST_MAIN({"monotone", test_monotone}, {"corrupt_middle", test_corrupt_middle})
