/* Thread pool: every task runs exactly once, on any pool size, many times. */
#include <stdatomic.h>

#include "kernels/kernels.h"
#include "tests/td_test.h"

typedef struct {
    atomic_int hits[1000];
    atomic_int calls;
} counter;

static void count_task(void *arg, int i)
{
    counter *c = arg;
    atomic_fetch_add(&c->hits[i], 1);
    atomic_fetch_add(&c->calls, 1);
}

static void every_task_once(void)
{
    static counter c;
    for (int nt = 1; nt <= 4; nt++) {
        td_pool *pool;
        TD_CHECK(td_pool_create(&pool, nt) == TD_OK);
        TD_CHECK_EQ_INT(td_pool_size(pool), nt);
        for (int rep = 0; rep < 300; rep++) {
            int ntasks = (rep * 37) % 1000;
            memset(&c, 0, sizeof c);
            td_pool_run(pool, count_task, &c, ntasks);
            TD_CHECK_EQ_INT(atomic_load(&c.calls), ntasks);
            for (int i = 0; i < ntasks; i++)
                if (atomic_load(&c.hits[i]) != 1)
                    TD_CHECK_EQ_INT(atomic_load(&c.hits[i]), 1);
        }
        td_pool_destroy(pool);
    }
}

static void null_pool_and_default_size(void)
{
    static counter c;
    td_pool_run(NULL, count_task, &c, 10);
    TD_CHECK_EQ_INT(atomic_load(&c.calls), 10);
    TD_CHECK_EQ_INT(td_pool_size(NULL), 1);
    td_pool *pool;
    TD_CHECK(td_pool_create(&pool, 0) == TD_OK);
    TD_CHECK(td_pool_size(pool) >= 1);
    td_pool_destroy(pool);
    td_pool_destroy(NULL);
}

TD_TEST_MAIN({"every_task_once", every_task_once},
             {"null_pool_and_default_size", null_pool_and_default_size})
