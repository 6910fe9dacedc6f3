/* td_mbox: hands items from any thread to a libuv loop.
 *
 * Worker threads (the UCX shipper and receiver, nng's aio threads) never
 * touch the loop's state: they post an item, and the loop thread runs the
 * mailbox's function on it. Order is kept per posting thread. */
#ifndef TD_TRANSPORT_CTL_MAILBOX_H
#define TD_TRANSPORT_CTL_MAILBOX_H

#include <uv.h>

#include "common/err.h"

typedef struct td_mbox td_mbox;
typedef void (*td_mbox_fn)(void *arg, void *item);

/* Called on the loop thread. */
td_err td_mbox_create(td_mbox **out, uv_loop_t *loop, td_mbox_fn fn, void *arg);
/* Any thread. TD_ECLOSED once the mailbox is being destroyed (the item is
 * then the caller's again). */
td_err td_mbox_post(td_mbox *m, void *item);
/* Loop thread: delivers what is queued, refuses later posts, and frees the
 * mailbox once the loop has closed its handle. */
void td_mbox_destroy(td_mbox *m);

#endif
