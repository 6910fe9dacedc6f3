/* Persistent thread pool: nthreads-1 workers plus the calling thread.
 *
 * td_pool_run publishes (fn, arg, ntasks) and bumps a generation counter;
 * every thread then takes task indices from a shared atomic counter until
 * none are left. The caller returns only after every worker has left the
 * generation (not merely after the last task finished), so a slow worker can
 * never take an index of the next call with the previous call's fn.
 * Workers spin briefly before sleeping on a condition variable: the GEMMs of
 * one forward pass follow each other within microseconds. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "kernels/kernels.h"

enum { TD_POOL_SPIN = 1 << 14 };

struct td_pool {
    int n;                      /* threads including the caller */
    pthread_t *threads;         /* [n-1] */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint gen;            /* bumped once per td_pool_run */
    atomic_int next;            /* next task index to take */
    atomic_int finished;        /* workers done with the current generation */
    atomic_int stop;
    void (*fn)(void *arg, int i);
    void *arg;
    int ntasks;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void run_tasks(td_pool *p)
{
    int i;
    while ((i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed)) < p->ntasks)
        p->fn(p->arg, i);
}

static void *worker_main(void *arg)
{
    td_pool *p = arg;
    unsigned seen = 0;
    for (;;) {
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        for (int s = 0; g == seen && s < TD_POOL_SPIN; s++) {
            cpu_relax();
            g = atomic_load_explicit(&p->gen, memory_order_acquire);
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen)
                pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        seen = g;
        if (atomic_load_explicit(&p->stop, memory_order_acquire))
            break;
        run_tasks(p);
        atomic_fetch_add_explicit(&p->finished, 1, memory_order_release);
    }
    return NULL;
}

td_err td_pool_create(td_pool **out, int nthreads)
{
    *out = NULL;
    if (nthreads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = c > 0 ? (int)c : 1;
    }
    td_pool *p = calloc(1, sizeof *p);
    if (!p)
        return TD_ENOMEM;
    p->n = nthreads;
    p->threads = calloc((size_t)nthreads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return TD_ENOMEM;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (int t = 0; t < nthreads - 1; t++) {
        if (pthread_create(&p->threads[t], NULL, worker_main, p) != 0) {
            p->n = t + 1;                   /* destroy joins the ones started */
            td_pool_destroy(p);
            return TD_ENOMEM;
        }
    }
    *out = p;
    return TD_OK;
}

void td_pool_destroy(td_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->stop, 1, memory_order_release);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int t = 0; t < p->n - 1; t++)
        pthread_join(p->threads[t], NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p);
}

int td_pool_size(const td_pool *p) { return p ? p->n : 1; }

void td_pool_run(td_pool *p, void (*fn)(void *arg, int i), void *arg, int ntasks)
{
    if (!p || p->n == 1 || ntasks <= 1) {
        for (int i = 0; i < ntasks; i++)
            fn(arg, i);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->ntasks = ntasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->finished, 0, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);

    run_tasks(p);
    for (int s = 0; atomic_load_explicit(&p->finished, memory_order_acquire) < p->n - 1; s++) {
        if (s < TD_POOL_SPIN)
            cpu_relax();
        else
            sched_yield();
    }
}
