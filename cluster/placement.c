/* Placement (cluster/internal.h): which prefill and decode worker a request
 * goes to. The prefix policy keeps an agent's conversation where its state
 * is cached: first the worker its session last used, then the worker
 * whose announced prefixes (KvEvents, prefix_index.c) cover most of the
 * prompt, unless either is too busy to be worth it. */
#include <stdlib.h>
#include <string.h>

#include "cluster/internal.h"
#include "proto/blockhash.h"

bool td_cl_can_prefill(const wkr *w)
{
    return w->role == TANDEM__CTL__ROLE__ROLE_PREFILL || w->role == TANDEM__CTL__ROLE__ROLE_BOTH;
}

bool td_cl_can_decode(const wkr *w)
{
    return w->role == TANDEM__CTL__ROLE__ROLE_DECODE || w->role == TANDEM__CTL__ROLE__ROLE_BOTH;
}

void td_cluster_workers(const td_cluster *c, int *prefill, int *decode)
{
    *prefill = *decode = 0;
    for (const wkr *w = c->workers; w; w = w->next) {
        *prefill += td_cl_can_prefill(w);
        *decode += td_cl_can_decode(w);
    }
}

wkr *td_cl_find_worker(td_cluster *c, const char *id)
{
    for (wkr *w = c->workers; w; w = w->next)
        if (!strcmp(w->id, id))
            return w;
    return NULL;
}

/* Least loaded by what we placed on it plus what it reports waiting. */
wkr *td_cl_least_loaded(td_cluster *c, bool (*can)(const wkr *))
{
    wkr *best = NULL;
    long best_load = 0;
    for (wkr *w = c->workers; w; w = w->next) {
        if (!can(w) || w->draining)
            continue;
        long load = (long)w->assigned + (long)w->waiting;
        if (!best || load < best_load) {
            best = w;
            best_load = load;
        }
    }
    return best;
}

static long load_of(const wkr *w) { return (long)w->assigned + (long)w->waiting; }

static sess *session_find(td_cluster *c, const char *id)
{
    for (sess **pp = &c->sessions; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->id, id)) {
            sess *s = *pp;  /* to the front: most recent */
            *pp = s->next;
            s->next = c->sessions;
            c->sessions = s;
            return s;
        }
    return NULL;
}

void td_cl_session_remember(td_cluster *c, const char *id, const wkr *w)
{
    sess *s = session_find(c, id);
    if (s) {
        char *nw = strdup(w->id);
        if (nw) {
            free(s->worker);
            s->worker = nw;
        }
        return;
    }
    if (!(s = calloc(1, sizeof *s)) || !(s->id = strdup(id)) || !(s->worker = strdup(w->id))) {
        if (s)
            free(s->id);
        free(s);
        return;
    }
    s->next = c->sessions;
    c->sessions = s;
    if (++c->n_sessions > MAX_SESSIONS) {  /* forget the least recent */
        sess **pp = &c->sessions;
        while ((*pp)->next)
            pp = &(*pp)->next;
        free((*pp)->id);
        free((*pp)->worker);
        free(*pp);
        *pp = NULL;
        c->n_sessions--;
    }
}

/* A worker busier than the least loaded by more than the slack is not
 * worth its cached prefix: queueing behind others costs more than the
 * prefill it saves. */
static bool affordable(const wkr *w, const wkr *least)
{
    return !w->draining && load_of(w) <= load_of(least) + LOAD_SLACK;
}

wkr *td_cl_choose_prefill(td_cluster *c, const creq *r, td_cl_why *why, size_t *held)
{
    wkr *least = td_cl_least_loaded(c, td_cl_can_prefill);
    *why = TD_CL_WHY_LEAST_LOADED;
    *held = 0;
    if (!least || c->o.policy == TD_CLUSTER_POLICY_LEAST_LOADED)
        return least;
    if (c->o.policy == TD_CLUSTER_POLICY_ROUND_ROBIN) {
        *why = TD_CL_WHY_ROUND_ROBIN;
        int n = 0;
        for (wkr *w = c->workers; w; w = w->next)
            n += td_cl_can_prefill(w) && !w->draining;
        int k = (int)(c->rr++ % (unsigned)n);
        for (wkr *w = c->workers; w; w = w->next)
            if (td_cl_can_prefill(w) && !w->draining && k-- == 0)
                return w;
        return least;
    }
    sess *s = r->session ? session_find(c, r->session) : NULL;
    wkr *w = s ? td_cl_find_worker(c, s->worker) : NULL;
    if (w && td_cl_can_prefill(w) && affordable(w, least)) {
        *why = TD_CL_WHY_SESSION;
        *held = td_pidx_match(w->prefixes, r->chain, r->n_chain);
        return w;
    }
    wkr *best = NULL;
    size_t best_m = 0;
    for (w = c->workers; w; w = w->next) {
        if (!td_cl_can_prefill(w) || !affordable(w, least))
            continue;
        size_t m = td_pidx_match(w->prefixes, r->chain, r->n_chain);
        if (m > best_m) {
            best = w;
            best_m = m;
        }
    }
    if (!best)
        return least;
    *why = TD_CL_WHY_PREFIX;
    *held = best_m;
    return best;
}

wkr *td_cl_choose_local(td_cluster *c, const creq *r, const wkr *P, size_t *held)
{
    int64_t max_left = c->o.local_prefill_max ? c->o.local_prefill_max : 1024;
    wkr *least = td_cl_least_loaded(c, td_cl_can_decode);
    if (c->o.policy != TD_CLUSTER_POLICY_PREFIX || max_left < 0 || !least || r->max_tokens == 1)
        return NULL;
    size_t have = P ? td_pidx_match(P->prefixes, r->chain, r->n_chain) : 0;
    wkr *best = NULL;
    for (wkr *w = c->workers; w; w = w->next) {
        if (!td_cl_can_decode(w) || w == P || !affordable(w, least))
            continue;
        size_t m = td_pidx_match(w->prefixes, r->chain, r->n_chain);
        if (m > have) {
            best = w;
            have = m;
        }
    }
    if (!best || (int64_t)(r->n_prompt - have * TD_BLOCKHASH_TOKENS) > max_left)
        return NULL;
    *held = have;
    return best;
}

/* Decode: the least loaded; among equals the one with most free KV. */
wkr *td_cl_choose_decode(td_cluster *c)
{
    wkr *best = NULL;
    for (wkr *w = c->workers; w; w = w->next) {
        if (!td_cl_can_decode(w) || w->draining)
            continue;
        if (!best || load_of(w) < load_of(best) ||
            (load_of(w) == load_of(best) && w->kv_free > best->kv_free))
            best = w;
    }
    return best;
}

void td_cl_sessions_free(td_cluster *c)
{
    while (c->sessions) {
        sess *s = c->sessions;
        c->sessions = s->next;
        free(s->id);
        free(s->worker);
        free(s);
    }
    c->n_sessions = 0;
}

td_err td_cluster_policy_parse(const char *name, td_cluster_policy *out)
{
    static const char *const names[] = {"prefix", "least-loaded", "round-robin"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, names[i])) {
            *out = (td_cluster_policy)i;
            return TD_OK;
        }
    return TD_EINVAL;
}
