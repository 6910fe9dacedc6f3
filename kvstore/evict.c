/* Eviction: which unpinned entry goes when a put needs room.
 *
 * LRU takes the head of the use-ordered list. The cost policy is
 * GreedyDual-Size-Frequency: an entry is worth the prefill time it saves per
 * page it holds, cost(tokens) / pages, times its uses; its priority is
 * clock + uses * cost / pages, set at each use; the lowest priority goes and
 * the clock rises to it. So an entry's credit over the clock is spent as the
 * store evicts (an entry not used for long goes, however costly), and the
 * clock always sits at or below every priority in the heap. Uses saturate at
 * KV_USES_MAX so that no entry gets more than that many times its own credit.
 * A binary heap keyed by (priority, tick) finds the victim in O(log n); the
 * tick is the LRU order, so equal priorities go least recently used first.
 *
 * Values put in one td_kv_put_many are a unit (the sections of one state, or
 * a state and the small records that make it findable): one is worth nothing
 * without the others, so all are priced as the whole, the prefill of its
 * longest prefix over all its pages (kv_evict_batch). Priced alone, a
 * one-page index record of a state of P pages would outlive its state P
 * times over, and records naming gone states would fill a third to a half of
 * the store (docs/kvstore.md).
 *
 * Both policies' state is kept up to date whichever is in force, and saved in
 * the checkpoint (manifest.c), so a store can switch and a restart keeps the
 * order. docs/kvstore.md has the cost model and its measurements. */
#include <stdlib.h>

#include "kvstore/internal.h"

void kv_evict_init(td_kv *kv, const td_kv_opts *o)
{
    kv->policy = o->eviction;
    kv->knee = o->cost_knee_tokens ? o->cost_knee_tokens : 16384;
    kv->on_evict = o->on_evict;
    kv->on_evict_arg = o->on_evict_arg;
}

void kv_evict_resolve(td_kv *kv, td_kv_evict recorded)
{
    if (kv->policy == TD_KV_EVICT_DEFAULT)
        kv->policy = recorded != TD_KV_EVICT_DEFAULT ? recorded : TD_KV_EVICT_COST;
}

void kv_evict_fini(td_kv *kv)
{
    free(kv->heap);
    kv->heap = NULL;
    kv->heap_n = kv->heap_cap = 0;
}

/* ---- the heap ---- */

static int before(const kv_entry *a, const kv_entry *b)
{
    return a->prio < b->prio || (a->prio == b->prio && a->tick < b->tick);
}

static void place(td_kv *kv, size_t i, kv_entry *e)
{
    kv->heap[i] = e;
    e->hidx = i;
}

static void sift_up(td_kv *kv, size_t i)
{
    kv_entry *e = kv->heap[i];
    while (i > 0 && before(e, kv->heap[(i - 1) / 2])) {
        place(kv, i, kv->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    place(kv, i, e);
}

static void sift_down(td_kv *kv, size_t i)
{
    kv_entry *e = kv->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= kv->heap_n)
            break;
        if (c + 1 < kv->heap_n && before(kv->heap[c + 1], kv->heap[c]))
            c++;
        if (!before(kv->heap[c], e))
            break;
        place(kv, i, kv->heap[c]);
        i = c;
    }
    place(kv, i, e);
}

static void heap_fix(td_kv *kv, kv_entry *e)
{
    sift_up(kv, e->hidx);
    sift_down(kv, e->hidx);
}

static void heap_push(td_kv *kv, kv_entry *e)
{
    if (kv->heap_n == kv->heap_cap) {
        size_t cap = kv->heap_cap ? 2 * kv->heap_cap : 1024;
        kv_entry **h = realloc(kv->heap, cap * sizeof(*h));
        if (!h)
            return;   /* out of memory: e stays outside, a victim once the heap is empty */
        kv->heap = h;
        kv->heap_cap = cap;
    }
    place(kv, kv->heap_n++, e);
    sift_up(kv, e->hidx);
}

static void heap_remove(td_kv *kv, kv_entry *e)
{
    size_t i = e->hidx;
    kv_entry *last = kv->heap[--kv->heap_n];
    e->hidx = KV_NO_HEAP;
    if (last == e)
        return;
    place(kv, i, last);
    heap_fix(kv, last);
}

/* ---- priorities ---- */

/* Prefill work of the prefix, in token-equivalents (docs/kvstore.md). */
static double cost(const td_kv *kv, uint64_t tokens)
{
    double n = (double)tokens;
    return n + n * n / kv->knee;
}

void kv_evict_batch(const td_kv *kv, kv_entry *const *ents, size_t n, kv_entry *const *kept,
                    size_t nkept)
{
    uint64_t longest = 0, pages = 0;
    for (size_t i = 0; i < n + nkept; i++) {
        const kv_entry *e = i < n ? ents[i] : kept[i - n];
        if (e->tokens > longest)
            longest = e->tokens;
        pages += kv_value_pages(kv, e->value_len);
    }
    double unit = pages ? cost(kv, longest) / (double)pages : 0;
    for (size_t i = 0; i < n; i++)
        ents[i]->unit = unit;
    /* A range several states share is worth what the most costly of them
     * is: losing it loses every one. */
    for (size_t i = 0; i < nkept; i++)
        if (kept[i]->unit < unit)
            kept[i]->unit = unit;
}

/* Priority at the current clock. */
static double worth(const td_kv *kv, const kv_entry *e)
{
    return kv->clock + (double)e->uses * e->unit;
}

static void price(td_kv *kv, kv_entry *e)
{
    e->prio = worth(kv, e);
    e->tick = ++kv->tick;
}

void kv_evict_sync(td_kv *kv, kv_entry *e, int rebase)
{
    int want = !e->pinned && !e->replacing;
    if (rebase)
        e->prio = worth(kv, e);
    if (want && e->hidx == KV_NO_HEAP)
        heap_push(kv, e);
    else if (!want && e->hidx != KV_NO_HEAP)
        heap_remove(kv, e);
    else if (e->hidx != KV_NO_HEAP)
        heap_fix(kv, e);
}

uint32_t kv_evict_uses_after(const kv_entry *old)
{
    uint32_t u = old ? old->uses + 1 : 1;
    return u > KV_USES_MAX ? KV_USES_MAX : u;
}

void kv_evict_insert(td_kv *kv, kv_entry *e)
{
    if (e->uses == 0)
        e->uses = 1;
    e->hidx = KV_NO_HEAP;
    price(kv, e);
    kv_evict_sync(kv, e, 0);
}

void kv_evict_remove(td_kv *kv, kv_entry *e)
{
    if (e->hidx != KV_NO_HEAP)
        heap_remove(kv, e);
}

void kv_evict_use(td_kv *kv, kv_entry *e)
{
    if (e->uses < KV_USES_MAX)
        e->uses++;
    e->read = 1;
    price(kv, e);
    kv_evict_sync(kv, e, 0);
}

void kv_evict_restore(td_kv *kv, kv_entry *e, const kv_prio *p)
{
    e->prio = p->prio > kv->clock ? p->prio : kv->clock;
    e->unit = p->unit;
    e->uses = p->uses;
    e->read = p->read;
    kv_evict_sync(kv, e, 0);
}

/* ---- victims ---- */

static kv_entry *victim(td_kv *kv)
{
    /* The heap holds every evictable entry unless memory ran out growing
     * it; then the walk below finds the rest. */
    if (kv->policy == TD_KV_EVICT_COST && kv->heap_n)
        return kv->heap[0];
    kv_entry *v = kv->lru_head;
    while (v && (v->pinned || v->replacing))
        v = v->next;
    return v;
}

td_err kv_evict_one(td_kv *kv, uint64_t need, const char *why, char *err, size_t errlen)
{
    kv_entry *v = victim(kv);
    if (!v)
        return td_errf(err, errlen, TD_ENOSPC,
                       "kvstore: %s full: %llu of %llu bytes used, %zu entries pinned, need %llu more%s%s",
                       kv->dir, (unsigned long long)(kv->used_pages * KV_PAGE),
                       (unsigned long long)(kv->cap_pages * KV_PAGE), kv->n_pinned,
                       (unsigned long long)(need * KV_PAGE), why ? "; " : "", why ? why : "");
    td_kv_entry_info info;
    kv_info(kv, v, &info);
    double prio = v->prio;
    uint32_t read = v->read;
    td_err r = kv_drop(kv, v, err, errlen);   /* frees v */
    if (r)
        return r;
    /* The clock is the cost policy's: an LRU victim may price above entries
     * that stay, and raising the clock past them would devalue them. */
    if (kv->policy == TD_KV_EVICT_COST && prio > kv->clock)
        kv->clock = prio;
    kv->st.evictions++;
    kv->st.evicted_tokens += info.tokens;
    kv->st.evicted_bytes += info.value_bytes;
    kv->st.evicted_unread += !read;
    if (kv->on_evict)
        kv->on_evict(kv->on_evict_arg, &info);
    return TD_OK;
}
