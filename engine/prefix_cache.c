/* See prefix_cache.h. Entries sit on a list in recency order (most recent
 * first); a lookup compares token lists directly. Few entries fit in any
 * realistic budget (a V4-Flash state is ~3.5 KB per token), so a scan is
 * cheap next to the prefill it saves. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/prefix_cache.h"
#include "model/state.h"

typedef struct entry {
    struct entry *next;
    int32_t *tokens;
    size_t n;
    uint8_t *state;
    size_t len;
    int64_t used_ms;             /* last put or restore, monotonic */
    bool keep;                   /* an idle spill failed: stays until evicted */
} entry;

struct td_pcache {
    size_t budget;
    td_pcache_event_fn on_event;
    void *arg;
    entry *head;                 /* most recently used first */
    td_pcache_stats st;
    td_pcache_spill_fn spill;
    void *spill_arg;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t cost(const entry *e) { return e->len + e->n * sizeof(int32_t); }

static void entry_free(entry *e)
{
    free(e->tokens);
    free(e->state);
    free(e);
}

td_err td_pcache_create(td_pcache **out, size_t budget, td_pcache_event_fn on_event,
                        void *arg)
{
    td_pcache *c = calloc(1, sizeof *c);
    if (!c)
        return TD_ENOMEM;
    c->budget = budget;
    c->on_event = on_event;
    c->arg = arg;
    *out = c;
    return TD_OK;
}

void td_pcache_destroy(td_pcache *c)
{
    if (!c)
        return;
    while (c->head) {
        entry *e = c->head;
        c->head = e->next;
        entry_free(e);
    }
    free(c);
}

/* tell: whether the event function hears of it (not when the state went
 * to disk: the worker still holds it, and the router may keep sending the
 * conversation here). */
static void unlink_entry(td_pcache *c, entry *e, bool tell)
{
    for (entry **pp = &c->head; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    c->st.bytes -= cost(e);
    c->st.entries--;
    if (c->on_event && tell)
        c->on_event(c->arg, false, e->tokens, e->n);
}

/* A state larger than the whole budget goes straight to the disk tier:
 * a long session is exactly what the tier is for. */
static td_err spill_big(td_pcache *c, const td_v4_seq *seq, const int32_t *tokens, size_t n,
                        size_t len)
{
    uint8_t *buf = malloc(len);
    int32_t *toks = malloc(n * sizeof *toks);
    size_t w = 0;
    td_err er = buf && toks ? td_v4_seq_save(seq, buf, len, &w) : TD_ENOMEM;
    if (!er) {
        memcpy(toks, tokens, n * sizeof *toks);
        if (c->spill(c->spill_arg, toks, n, buf, w) == TD_OK) {
            if (c->on_event)
                c->on_event(c->arg, true, tokens, n);  /* held, on (its way to) disk */
            return TD_OK;
        }
    }
    free(buf);
    free(toks);
    return er;
}

/* Offers e's arrays to the spill function; true if it took them (e is then
 * left without them, to be freed). */
static bool hand_to_spill(td_pcache *c, entry *e)
{
    if (!c->spill || c->spill(c->spill_arg, e->tokens, e->n, e->state, e->len) != TD_OK)
        return false;
    e->state = NULL;  /* the spill function's now (unlinked untold: no tokens needed) */
    e->tokens = NULL;
    return true;
}

td_err td_pcache_put(td_pcache *c, const td_v4_seq *seq, const int32_t *tokens, size_t n)
{
    size_t len = td_v4_seq_state_size(seq);
    if (n == 0)
        return TD_OK;
    if (len + n * sizeof(int32_t) > c->budget)
        return c->spill ? spill_big(c, seq, tokens, n, len) : TD_OK;
    for (entry *e = c->head; e; e = e->next)
        if (e->n == n && !memcmp(e->tokens, tokens, n * sizeof *tokens)) {
            unlink_entry(c, e, true);
            entry_free(e);
            break;
        }
    entry *e = calloc(1, sizeof *e);
    if (!e || !(e->tokens = malloc(n * sizeof *tokens)) || !(e->state = malloc(len))) {
        if (e)
            entry_free(e);
        return TD_ENOMEM;
    }
    memcpy(e->tokens, tokens, n * sizeof *tokens);
    e->n = n;
    size_t w = 0;
    td_err er = td_v4_seq_save(seq, e->state, len, &w);
    if (er) {
        entry_free(e);
        return er;
    }
    e->len = w;
    e->used_ms = now_ms();
    /* Make room: the least recently used go first (to disk, if a tier
     * takes them). */
    while (c->head && c->st.bytes + cost(e) > c->budget) {
        entry *last = c->head;
        while (last->next)
            last = last->next;
        bool kept = hand_to_spill(c, last);
        unlink_entry(c, last, !kept);
        entry_free(last);
        c->st.evictions++;
    }
    e->next = c->head;
    c->head = e;
    c->st.bytes += cost(e);
    c->st.entries++;
    if (c->on_event)
        c->on_event(c->arg, true, e->tokens, e->n);
    return TD_OK;
}

size_t td_pcache_restore(td_pcache *c, td_v4_seq *seq, const int32_t *prompt, size_t n,
                         size_t min)
{
    c->st.lookups++;
    entry *best = NULL;
    for (entry *e = c->head; e; e = e->next)
        if (e->n < n && e->n > min && (!best || e->n > best->n) &&
            !memcmp(e->tokens, prompt, e->n * sizeof *prompt))
            best = e;
    if (!best)
        return 0;
    char err[128];
    if (td_v4_seq_load(seq, best->state, best->len, err, sizeof err) != TD_OK) {
        /* cannot happen for a state we saved with this model: drop it */
        unlink_entry(c, best, true);
        entry_free(best);
        return 0;
    }
    for (entry **pp = &c->head; *pp; pp = &(*pp)->next)
        if (*pp == best) {  /* most recently used now */
            *pp = best->next;
            best->next = c->head;
            c->head = best;
            break;
        }
    best->used_ms = now_ms();
    c->st.hits++;
    c->st.tokens_reused += best->n;
    return best->n;
}

size_t td_pcache_common(const td_pcache *c, const int32_t *prompt, size_t n)
{
    size_t best = 0;
    for (const entry *e = c->head; e; e = e->next) {
        size_t m = e->n < n ? e->n : n, k = 0;
        if (m <= best || e->tokens[best] != prompt[best])
            continue;   /* cannot beat best: they differ at or before it */
        while (k < m && e->tokens[k] == prompt[k])
            k++;
        if (k > best)
            best = k;
    }
    return best;
}

td_pcache_stats td_pcache_get_stats(const td_pcache *c) { return c->st; }

void td_pcache_set_spill(td_pcache *c, td_pcache_spill_fn fn, void *arg)
{
    c->spill = fn;
    c->spill_arg = arg;
}

/* Spills and frees every entry (all) or those idle for idle_ms; returns the
 * ms until the next one is due, -1 if none is. */
static int64_t spill_where(td_pcache *c, int64_t idle_ms, bool all)
{
    int64_t now = now_ms(), next = -1;
    if (!c->spill)
        return -1;
    for (entry **pp = &c->head; *pp;) {
        entry *e = *pp;
        int64_t left = e->used_ms + idle_ms - now;
        if (!all && (left > 0 || e->keep)) {
            if (!e->keep && (next < 0 || left < next))
                next = left;
            pp = &e->next;
            continue;
        }
        bool kept = hand_to_spill(c, e);
        if (!kept && !all) {
            e->keep = true;  /* the tier logged and counted why */
            pp = &e->next;
            continue;
        }
        /* kept: on (its way to) disk; at stop nobody is told (the worker
         * is going away); *pp is e->next */
        unlink_entry(c, e, !kept && !all);
        entry_free(e);
    }
    return next;
}

int64_t td_pcache_spill_idle(td_pcache *c, int64_t idle_ms) { return spill_where(c, idle_ms, false); }

void td_pcache_spill_all(td_pcache *c) { spill_where(c, 0, true); }

void td_pcache_adopt(td_pcache *c, int32_t *tokens, size_t n, uint8_t *state, size_t len)
{
    entry *e = calloc(1, sizeof *e);
    if (!e || c->st.bytes + len + n * sizeof *tokens > c->budget) {
        if (c->on_event)
            c->on_event(c->arg, false, tokens, n);
        free(e);
        free(tokens);
        free(state);
        return;
    }
    for (const entry *x = c->head; x; x = x->next)
        if (x->n == n && !memcmp(x->tokens, tokens, n * sizeof *tokens)) {
            free(e);  /* stored again meanwhile: the same bytes */
            free(tokens);
            free(state);
            return;
        }
    *e = (entry){.tokens = tokens, .n = n, .state = state, .len = len, .used_ms = now_ms(),
                 .keep = true};
    entry **pp = &c->head;  /* least recently used: first to go for room */
    while (*pp)
        pp = &(*pp)->next;
    *pp = e;
    c->st.bytes += cost(e);
    c->st.entries++;
}
