/* The mailbox: a mutex-protected array swapped out whole by the loop thread,
 * so posting costs a lock and (amortised) no allocation. */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "transport/ctl/mailbox.h"

typedef struct {
    void **v;
    size_t n, cap;
} items;

struct td_mbox {
    uv_async_t async;
    td_mbox_fn fn;
    void *arg;
    pthread_mutex_t mu;
    items in;         /* under mu */
    items out;        /* loop thread */
    bool closed;      /* under mu */
};

static void drain(td_mbox *m)
{
    pthread_mutex_lock(&m->mu);
    items t = m->in;
    m->in = m->out;
    m->in.n = 0;
    pthread_mutex_unlock(&m->mu);
    m->out = t;
    for (size_t i = 0; i < m->out.n; i++)
        m->fn(m->arg, m->out.v[i]);
    m->out.n = 0;
}

static void on_async(uv_async_t *a) { drain(a->data); }

td_err td_mbox_create(td_mbox **out, uv_loop_t *loop, td_mbox_fn fn, void *arg)
{
    td_mbox *m = calloc(1, sizeof *m);
    if (!m)
        return TD_ENOMEM;
    m->fn = fn;
    m->arg = arg;
    pthread_mutex_init(&m->mu, NULL);
    if (uv_async_init(loop, &m->async, on_async)) {
        pthread_mutex_destroy(&m->mu);
        free(m);
        return TD_ENOMEM;
    }
    m->async.data = m;
    *out = m;
    return TD_OK;
}

td_err td_mbox_post(td_mbox *m, void *item)
{
    pthread_mutex_lock(&m->mu);
    if (m->closed) {
        pthread_mutex_unlock(&m->mu);
        return TD_ECLOSED;
    }
    if (m->in.n == m->in.cap) {
        size_t nc = m->in.cap ? 2 * m->in.cap : 32;
        void **nv = realloc(m->in.v, nc * sizeof *nv);
        if (!nv) {
            pthread_mutex_unlock(&m->mu);
            return TD_ENOMEM;
        }
        m->in.v = nv;
        m->in.cap = nc;
    }
    m->in.v[m->in.n++] = item;
    pthread_mutex_unlock(&m->mu);
    uv_async_send(&m->async);
    return TD_OK;
}

static void on_closed(uv_handle_t *h)
{
    td_mbox *m = h->data;
    free(m->in.v);
    free(m->out.v);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void td_mbox_destroy(td_mbox *m)
{
    if (!m)
        return;
    drain(m);
    pthread_mutex_lock(&m->mu);
    m->closed = true;
    pthread_mutex_unlock(&m->mu);
    drain(m);  /* what was posted between the two */
    uv_close((uv_handle_t *)&m->async, on_closed);
}
