/* See ucx_thread.h. */
#include <stdio.h>

#include "worker/ucx_thread.h"
#include "worker/worker.h"

void td_wk_ucx_init(td_wk_ucx *u, int peer_errors)
{
    *u = (td_wk_ucx){.peer_errors = peer_errors};
    pthread_mutex_init(&u->mu, NULL);
    pthread_cond_init(&u->cv, NULL);
}

bool td_wk_ucx_ready(td_wk_ucx *u)
{
    td_xfer_opts o = {.peer_errors = u->peer_errors};
    td_err e = td_xfer_ctx_create(&o, &u->xfer, u->err, sizeof u->err);
    if (!e)
        e = td_xfer_ctx_address(u->xfer, &u->addr, &u->addr_len);
    pthread_mutex_lock(&u->mu);
    u->state = e ? -1 : 1;
    pthread_cond_broadcast(&u->cv);
    pthread_mutex_unlock(&u->mu);
    return !e;
}

td_err td_wk_ucx_start(td_wk_ucx *u, void *(*main)(void *), void *arg, char *err,
                       size_t errlen)
{
    if (pthread_create(&u->thread, NULL, main, arg) != 0)
        return td_errf(err, errlen, TD_ENOMEM, "cannot start the UCX thread");
    u->started = true;
    pthread_mutex_lock(&u->mu);
    while (u->state == 0)
        pthread_cond_wait(&u->cv, &u->mu);
    pthread_mutex_unlock(&u->mu);
    if (u->state < 0)
        return td_errf(err, errlen, TD_EIO, "UCX: %s", u->err);
    return TD_OK;
}

void td_wk_ucx_join(td_wk_ucx *u)
{
    if (u->started)
        pthread_join(u->thread, NULL);
    u->started = false;
}

void td_wk_ucx_fini(td_wk_ucx *u)
{
    td_xfer_ctx_destroy(u->xfer);
    u->xfer = NULL;
    pthread_mutex_destroy(&u->mu);
    pthread_cond_destroy(&u->cv);
}

td_err td_wk_ucx_bring_up(td_wk_ucx *u, const char *load_err, void *(*main)(void *),
                          void *arg, uv_loop_t *loop, td_wk_opts *opts, td_wk **wk,
                          char *err, size_t errlen)
{
    if (load_err)
        return td_errf(err, errlen, TD_EIO, "%s", load_err);
    td_err e = td_wk_ucx_start(u, main, arg, err, errlen);
    if (e)
        return e;
    opts->ucx_address = u->addr;
    opts->ucx_address_len = u->addr_len;
    return td_wk_create(wk, loop, opts, err, errlen);
}
