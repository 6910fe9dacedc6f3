/* Persistent thread pool: nthreads-1 workers plus the calling thread.
 *
 * A call publishes (fn, arg, ntasks) and then opens a new generation in
 * `ticket`, a 64-bit word holding (generation << 32 | next task index).
 * Threads claim a task with a compare-and-swap that also checks the
 * generation, so a worker that wakes late can never claim a task of a later
 * call with the earlier call's function. The caller waits for the tasks to be
 * done, not for every worker to show up: a worker the scheduler left
 * sleeping costs nothing, which matters on a shared 2-core machine.
 * Workers spin briefly before sleeping on a condition variable: the GEMMs of
 * one forward pass follow each other within microseconds. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "kernels/kernels.h"

enum { TD_POOL_SPIN = 1 << 12 };
#define CLOSED 0xffffffffu

struct td_pool {
    int n;                      /* threads including the caller */
    pthread_t *threads;         /* [n-1] */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic uint64_t ticket;    /* generation << 32 | next task (CLOSED between calls) */
    atomic_int done;            /* tasks finished in the current generation */
    atomic_int sleepers;        /* workers waiting on cv */
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

/* Claims and runs tasks of generation g until none are left. */
static void run_tasks(td_pool *p, uint32_t g)
{
    for (;;) {
        uint64_t t = atomic_load_explicit(&p->ticket, memory_order_acquire);
        uint32_t idx = (uint32_t)t;
        if ((uint32_t)(t >> 32) != g || idx == CLOSED || (int)idx >= p->ntasks)
            return;
        if (!atomic_compare_exchange_weak_explicit(&p->ticket, &t, t + 1,
                                                   memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        p->fn(p->arg, (int)idx);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

static void *worker_main(void *arg)
{
    td_pool *p = arg;
    uint32_t seen = 0;
    for (;;) {
        uint32_t g = (uint32_t)(atomic_load_explicit(&p->ticket, memory_order_acquire) >> 32);
        for (int s = 0; g == seen && s < TD_POOL_SPIN; s++) {
            cpu_relax();
            g = (uint32_t)(atomic_load_explicit(&p->ticket, memory_order_acquire) >> 32);
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while ((g = (uint32_t)(atomic_load(&p->ticket) >> 32)) == seen &&
                   !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load_explicit(&p->stop, memory_order_acquire))
            break;
        seen = g;
        run_tasks(p, g);
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
    atomic_store(&p->ticket, (uint64_t)CLOSED);
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
    /* The ticket is CLOSED here (no claim can succeed), so the job fields can
     * be written; opening the next generation publishes them. */
    uint32_t g = (uint32_t)(atomic_load_explicit(&p->ticket, memory_order_relaxed) >> 32) + 1;
    p->fn = fn;
    p->arg = arg;
    p->ntasks = ntasks;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    /* seq_cst store then load, mirrored in the worker (sleepers++, then load
     * ticket): one side always sees the other, so no wake-up is lost. */
    atomic_store(&p->ticket, (uint64_t)g << 32);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    run_tasks(p, g);
    for (int s = 0; atomic_load_explicit(&p->done, memory_order_acquire) < ntasks; s++) {
        if (s < TD_POOL_SPIN)
            cpu_relax();
        else
            sched_yield();
    }
    /* Close the generation before the next call rewrites the job. */
    atomic_store_explicit(&p->ticket, ((uint64_t)g << 32) | CLOSED, memory_order_release);
}
