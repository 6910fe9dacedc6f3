/* The state arena's allocator: first fit, alignment, merging on free,
 * exhaustion, and a random churn checked against a byte map. */
#include <stdlib.h>
#include <string.h>

#include "worker/arena.h"
#include "tests/td_test.h"

static void first_fit_and_merge(void)
{
    td_arena *a;
    TD_CHECK(td_arena_create(&a, 16 * TD_ARENA_ALIGN) == TD_OK);
    size_t x, y, z;
    TD_CHECK(td_arena_alloc(a, 1, &x) == TD_OK && x == 0);
    TD_CHECK(td_arena_alloc(a, TD_ARENA_ALIGN + 1, &y) == TD_OK && y == TD_ARENA_ALIGN);
    TD_CHECK(td_arena_alloc(a, 3 * TD_ARENA_ALIGN, &z) == TD_OK && z == 3 * TD_ARENA_ALIGN);
    TD_CHECK(td_arena_free_bytes(a) == 10 * TD_ARENA_ALIGN);
    size_t w;
    TD_CHECK(td_arena_alloc(a, 11 * TD_ARENA_ALIGN, &w) == TD_ENOMEM);
    td_arena_free(a, y, TD_ARENA_ALIGN + 1);   /* a hole of 2 pages */
    TD_CHECK(td_arena_alloc(a, 2 * TD_ARENA_ALIGN, &w) == TD_OK && w == y);  /* first fit */
    td_arena_free(a, w, 2 * TD_ARENA_ALIGN);
    td_arena_free(a, x, 1);
    td_arena_free(a, z, 3 * TD_ARENA_ALIGN);
    TD_CHECK(td_arena_free_bytes(a) == 16 * TD_ARENA_ALIGN);
    TD_CHECK(td_arena_alloc(a, 16 * TD_ARENA_ALIGN, &w) == TD_OK && w == 0);  /* all merged */
    td_arena_destroy(a);
}

static void random_churn(void)
{
    enum { PAGES = 256, N = 40 };
    td_arena *a;
    TD_CHECK(td_arena_create(&a, PAGES * TD_ARENA_ALIGN) == TD_OK);
    unsigned char used[PAGES] = {0};
    size_t off[N], len[N];
    int live[N] = {0};
    srand(5);
    for (int it = 0; it < 20000; it++) {
        int i = rand() % N;
        if (live[i]) {
            td_arena_free(a, off[i], len[i]);
            for (size_t p = off[i] / TD_ARENA_ALIGN; p < (off[i] + len[i] + TD_ARENA_ALIGN - 1) / TD_ARENA_ALIGN; p++)
                used[p] = 0;
            live[i] = 0;
        } else {
            len[i] = 1 + (size_t)(rand() % (12 * TD_ARENA_ALIGN));
            if (td_arena_alloc(a, len[i], &off[i]) != TD_OK)
                continue;
            TD_CHECK(off[i] % TD_ARENA_ALIGN == 0 && off[i] + len[i] <= PAGES * TD_ARENA_ALIGN);
            for (size_t p = off[i] / TD_ARENA_ALIGN; p < (off[i] + len[i] + TD_ARENA_ALIGN - 1) / TD_ARENA_ALIGN; p++) {
                TD_CHECK(!used[p]);  /* never handed out twice */
                used[p] = 1;
            }
            live[i] = 1;
        }
    }
    for (int i = 0; i < N; i++)
        if (live[i])
            td_arena_free(a, off[i], len[i]);
    TD_CHECK(td_arena_free_bytes(a) == PAGES * TD_ARENA_ALIGN);
    size_t w;
    TD_CHECK(td_arena_alloc(a, PAGES * TD_ARENA_ALIGN, &w) == TD_OK);
    td_arena_destroy(a);
}

TD_TEST_MAIN({"first_fit_and_merge", first_fit_and_merge}, {"random_churn", random_churn})
