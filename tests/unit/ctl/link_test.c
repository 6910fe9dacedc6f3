/* Control links over real nng sockets on loopback TCP: messages arrive
 * intact and in order; garbage from a peer is counted and dropped and the
 * link keeps working. */
#include <nng/nng.h>
#include <nng/protocol/pipeline0/push.h>
#include <pthread.h>
#include <time.h>

#include "tests/td_test.h"
#include "transport/ctl/ctl_link.h"

enum { N = 500 };

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int got;
    int in_order;
    uint64_t last_id;
} sink;

static void on_msg(void *arg, td_ctl_msg *m)
{
    sink *s = arg;
    pthread_mutex_lock(&s->mu);
    if (m->body_case == TANDEM__CTL__ENVELOPE__BODY_CANCEL) {
        if (m->cancel->request_id != s->last_id + 1)
            s->in_order = 0;
        s->last_id = m->cancel->request_id;
    }
    s->got++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    td_ctl_free(m);
}

/* Waits until s->got >= n or 10 s pass; returns s->got. */
static int wait_for(sink *s, int n)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    pthread_mutex_lock(&s->mu);
    while (s->got < n && pthread_cond_timedwait(&s->cv, &s->mu, &dl) == 0)
        ;
    int got = s->got;
    pthread_mutex_unlock(&s->mu);
    return got;
}

static void send_cancel(td_ctl_out *o, uint64_t id)
{
    char err[256];
    Tandem__Ctl__Cancel c = TANDEM__CTL__CANCEL__INIT;
    c.request_id = id;
    td_ctl_msg env = TANDEM__CTL__ENVELOPE__INIT;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_CANCEL;
    env.cancel = &c;
    TD_CHECK(td_ctl_out_send(o, &env, err, sizeof err) == TD_OK);
}

static void messages_arrive_in_order(void)
{
    sink s = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 1, 0};
    char err[256];
    td_ctl_in *in;
    td_ctl_out *out;
    TD_CHECK(td_ctl_in_open(&in, "tcp://127.0.0.1:0", on_msg, &s, err, sizeof err) == TD_OK);
    TD_CHECK(strcmp(td_ctl_in_url(in), "tcp://127.0.0.1:0") != 0);   /* port resolved */
    TD_CHECK(td_ctl_out_open(&out, td_ctl_in_url(in), 5000, err, sizeof err) == TD_OK);
    for (uint64_t i = 1; i <= N; i++)
        send_cancel(out, i);
    TD_CHECK_EQ_INT(wait_for(&s, N), N);
    TD_CHECK(s.in_order);
    /* A message that fails validation is not sent at all. */
    td_ctl_msg empty = TANDEM__CTL__ENVELOPE__INIT;
    TD_CHECK(td_ctl_out_send(out, &empty, err, sizeof err) == TD_ECORRUPT);
    td_ctl_out_close(out);
    td_ctl_in_close(in);
}

static void garbage_is_dropped(void)
{
    sink s = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 1, 0};
    char err[256];
    td_ctl_in *in;
    TD_CHECK(td_ctl_in_open(&in, "tcp://127.0.0.1:0", on_msg, &s, err, sizeof err) == TD_OK);
    nng_socket raw;
    TD_CHECK(nng_push0_open(&raw) == 0);
    TD_CHECK(nng_dial(raw, td_ctl_in_url(in), NULL, 0) == 0);
    const char junk[] = "not a protobuf envelope \xff\xff\xff";
    TD_CHECK(nng_send(raw, (void *)junk, sizeof junk, 0) == 0);
    uint8_t wrong_version[] = {0x08, 0x09, 0x82, 0x01, 0x02, 0x08, 0x01};
    TD_CHECK(nng_send(raw, wrong_version, sizeof wrong_version, 0) == 0);
    uint8_t good[] = {0x08, 0x01, 0x82, 0x01, 0x02, 0x08, 0x01};   /* cancel 1 */
    TD_CHECK(nng_send(raw, good, sizeof good, 0) == 0);
    TD_CHECK_EQ_INT(wait_for(&s, 1), 1);
    TD_CHECK_EQ_INT(td_ctl_in_rejected(in), 2);
    nng_close(raw);
    td_ctl_in_close(in);
}

TD_TEST_MAIN({"messages_arrive_in_order", messages_arrive_in_order},
             {"garbage_is_dropped", garbage_is_dropped})
