/* worker/: what a worker sends the router, in order, over real nng. KV
 * events sent before the registration went out (a restarted worker
 * announcing its disk at once) are held and follow it, so the router files
 * them under the new registration instead of the old one it then forgets;
 * once registered, events go at once. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "tests/td_test.h"
#include "transport/ctl/ctl_link.h"
#include "worker/worker.h"

/* What the "router" received, heartbeats left out (nng thread). */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int kinds[16];
static size_t sizes[16];
static int nkinds;

static void on_recv(void *arg, td_ctl_msg *msg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    if (msg->body_case != TANDEM__CTL__ENVELOPE__BODY_HEARTBEAT && nkinds < 16) {
        sizes[nkinds] = msg->body_case == TANDEM__CTL__ENVELOPE__BODY_KV_EVENTS
                            ? msg->kv_events->n_stored + msg->kv_events->n_removed
                            : 0;
        kinds[nkinds++] = msg->body_case;
    }
    pthread_mutex_unlock(&mu);
    td_ctl_free(msg);
}

static int received(void)
{
    pthread_mutex_lock(&mu);
    int n = nkinds;
    pthread_mutex_unlock(&mu);
    return n;
}

static void wait_for(uv_loop_t *loop, int n)
{
    for (int i = 0; i < 5000 && received() < n; i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
}

static void events_follow_the_registration(void)
{
    char err[256];
    td_ctl_in *router;
    TD_CHECK(td_ctl_in_open(&router, "tcp://127.0.0.1:0", on_recv, NULL, err, sizeof err) ==
             TD_OK);
    uv_loop_t loop;
    uv_loop_init(&loop);
    td_wk_opts o = {.worker_id = "w1", .role = TANDEM__CTL__ROLE__ROLE_PREFILL,
                    .router_url = td_ctl_in_url(router), .heartbeat_ms = 50,
                    .layout_version = 1, .max_batch = 4,
                    .metrics_port = -1};
    td_wk *w;
    TD_CHECK(td_wk_create(&w, &loop, &o, err, sizeof err) == TD_OK);
    /* before the loop ran: nothing registered yet, so these wait */
    uint64_t a[3] = {1, 2, 3}, b[1] = {9};
    TD_CHECK(td_wk_send_kv(w, true, a, 3) == TD_OK);
    TD_CHECK(td_wk_send_kv(w, false, b, 1) == TD_OK);
    usleep(100 * 1000);
    TD_CHECK_EQ_INT(received(), 0);
    wait_for(&loop, 3);
    TD_CHECK_EQ_INT(received(), 3);
    TD_CHECK_EQ_INT(kinds[0], TANDEM__CTL__ENVELOPE__BODY_REGISTER);
    TD_CHECK_EQ_INT(kinds[1], TANDEM__CTL__ENVELOPE__BODY_KV_EVENTS);
    TD_CHECK_EQ_INT((int)sizes[1], 3);
    TD_CHECK_EQ_INT(kinds[2], TANDEM__CTL__ENVELOPE__BODY_KV_EVENTS);
    TD_CHECK_EQ_INT((int)sizes[2], 1);
    /* registered: at once */
    TD_CHECK(td_wk_send_kv(w, true, b, 1) == TD_OK);
    wait_for(&loop, 4);
    TD_CHECK_EQ_INT(received(), 4);
    TD_CHECK_EQ_INT(kinds[3], TANDEM__CTL__ENVELOPE__BODY_KV_EVENTS);
    td_wk_destroy(w);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    td_ctl_in_close(router);
}

/* Held events die with a worker that never registered. */
static void held_events_freed(void)
{
    char err[256];
    uv_loop_t loop;
    uv_loop_init(&loop);
    td_wk_opts o = {.worker_id = "w2", .role = TANDEM__CTL__ROLE__ROLE_DECODE,
                    .router_url = "tcp://127.0.0.1:1", .heartbeat_ms = 50, .metrics_port = -1};
    td_wk *w;
    TD_CHECK(td_wk_create(&w, &loop, &o, err, sizeof err) == TD_OK);
    uint64_t a[2] = {4, 5};
    TD_CHECK(td_wk_send_kv(w, true, a, 2) == TD_OK);
    td_wk_destroy(w);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}

TD_TEST_MAIN({"events_follow_the_registration", events_follow_the_registration},
             {"held_events_freed", held_events_freed})
