/* See local.h. */
#include <stdlib.h>

#include "worker/local.h"

typedef struct ljob {
    struct ljob *next;
    td_wk_local *l;
    uint64_t rid, eid, index;
    bool cancelled;
} ljob;

struct td_wk_local {
    td_wk *wk;                   /* NULL once detached */
    td_engine *engine;
    td_router_engine ei;
    ljob *jobs;
    int running;
};

td_err td_wk_local_create(td_wk_local **out, td_wk *wk, td_engine *e)
{
    td_wk_local *l = calloc(1, sizeof *l);
    if (!l)
        return TD_ENOMEM;
    l->wk = wk;
    l->engine = e;
    l->ei = td_engine_interface(e);
    *out = l;
    return TD_OK;
}

void td_wk_local_detach(td_wk_local *l)
{
    if (l)
        l->wk = NULL;
}

void td_wk_local_destroy(td_wk_local *l)
{
    if (!l)
        return;
    while (l->jobs) {
        ljob *j = l->jobs;
        l->jobs = j->next;
        free(j);
    }
    free(l);
}

static void on_token(void *arg, int32_t t)
{
    ljob *j = arg;
    if (j->l->wk && !j->cancelled)
        td_wk_send_tokens(j->l->wk, j->rid, j->index, &t, 1,
                          TANDEM__CTL__FINISH_REASON__FINISH_UNSPECIFIED, NULL);
    j->index++;
}

/* Usage news before the first token: a chunk with only cached_tokens. */
static void on_cached(void *arg, size_t n)
{
    ljob *j = arg;
    if (!j->l->wk || j->cancelled)
        return;
    Tandem__Ctl__TokenChunk tc = TANDEM__CTL__TOKEN_CHUNK__INIT;
    tc.request_id = j->rid;
    tc.index = j->index;
    tc.cached_tokens = n;
    tc.error = "";
    td_ctl_msg env = TANDEM__CTL__ENVELOPE__INIT;
    env.body_case = TANDEM__CTL__ENVELOPE__BODY_TOKENS;
    env.tokens = &tc;
    td_wk_send(j->l->wk, &env);
}

static void on_finish(void *arg, td_router_finish why, td_err err)
{
    ljob *j = arg;
    td_wk_local *l = j->l;
    static const Tandem__Ctl__FinishReason map[] = {
        [TD_ROUTER_FINISH_STOP] = TANDEM__CTL__FINISH_REASON__FINISH_STOP,
        [TD_ROUTER_FINISH_LENGTH] = TANDEM__CTL__FINISH_REASON__FINISH_LENGTH,
        [TD_ROUTER_FINISH_CANCELLED] = TANDEM__CTL__FINISH_REASON__FINISH_CANCELLED,
        [TD_ROUTER_FINISH_ERROR] = TANDEM__CTL__FINISH_REASON__FINISH_ERROR,
    };
    if (l->wk && !j->cancelled)
        td_wk_send_tokens(l->wk, j->rid, j->index, NULL, 0, map[why],
                          why == TD_ROUTER_FINISH_ERROR ? td_strerror(err) : NULL);
    for (ljob **pp = &l->jobs; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    l->running--;
    free(j);
}

void td_wk_local_start(td_wk_local *l, const Tandem__Ctl__PrefillRequest *m)
{
    const Tandem__Ctl__SamplingParams *s = m->sampling;
    ljob *j = calloc(1, sizeof *j);
    if (!j) {
        td_wk_send_tokens(l->wk, m->request_id, 0, NULL, 0,
                          TANDEM__CTL__FINISH_REASON__FINISH_ERROR, "out of memory");
        return;
    }
    j->l = l;
    j->rid = m->request_id;
    td_engine_req x = {
        .gen = {.prompt = m->token_ids, .n_prompt = m->n_token_ids,
                .max_tokens = s->max_tokens,
                .sampling = {.temperature = s->temperature, .top_p = s->top_p,
                             .top_k = (int)s->top_k, .seed = s->seed},
                .stop_ids = s->stop_token_ids, .n_stop_ids = s->n_stop_token_ids,
                .session_id = m->session_id && m->session_id[0] ? m->session_id : NULL,
                .constraint = td_wk_constraint(s)},
    };
    td_router_gen_cb cb = {.on_token = on_token, .on_finish = on_finish,
                           .on_cached = on_cached, .arg = j};
    td_err e = td_engine_submit(l->engine, &x, &cb, &j->eid);
    if (e) {
        td_wk_send_tokens(l->wk, j->rid, 0, NULL, 0, TANDEM__CTL__FINISH_REASON__FINISH_ERROR,
                          td_strerror(e));
        free(j);
        return;
    }
    j->next = l->jobs;
    l->jobs = j;
    l->running++;
}

static ljob *find(td_wk_local *l, uint64_t rid)
{
    for (ljob *j = l->jobs; j; j = j->next)
        if (j->rid == rid)
            return j;
    return NULL;
}

bool td_wk_local_cancel(td_wk_local *l, uint64_t rid)
{
    ljob *j = l ? find(l, rid) : NULL;
    if (!j)
        return false;
    j->cancelled = true;
    l->ei.cancel(l->ei.ctx, j->eid);
    return true;
}

bool td_wk_local_pause(td_wk_local *l, uint64_t rid, bool paused)
{
    ljob *j = l ? find(l, rid) : NULL;
    if (!j)
        return false;
    l->ei.pause(l->ei.ctx, j->eid, paused);
    return true;
}

int td_wk_local_running(const td_wk_local *l) { return l ? l->running : 0; }
