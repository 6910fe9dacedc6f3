/* Open addressing with linear probing over (hash, count) slots; a removed
 * key leaves a tombstone (count 0, key kept) so probe chains stay intact,
 * and the table is rebuilt when tombstones and keys fill it. Hash values
 * are already uniform (XXH3), so they index the table directly. */
#include <stdbool.h>
#include <stdlib.h>

#include "cluster/prefix_index.h"

typedef struct {
    uint64_t key;
    uint32_t count;   /* 0 with used: a tombstone */
    bool used;
} slot;

struct td_pidx {
    slot *s;
    size_t cap;       /* a power of two */
    size_t live;      /* keys with count > 0 */
    size_t used;      /* live + tombstones */
};

td_err td_pidx_create(td_pidx **out)
{
    td_pidx *x = calloc(1, sizeof *x);
    if (!x || !(x->s = calloc(64, sizeof *x->s))) {
        free(x);
        return TD_ENOMEM;
    }
    x->cap = 64;
    *out = x;
    return TD_OK;
}

void td_pidx_destroy(td_pidx *x)
{
    if (x)
        free(x->s);
    free(x);
}

static slot *find(const td_pidx *x, uint64_t key)
{
    for (size_t i = key & (x->cap - 1);; i = (i + 1) & (x->cap - 1)) {
        slot *s = &x->s[i];
        if (!s->used || s->key == key)
            return s;
    }
}

static td_err grow(td_pidx *x, size_t need)
{
    size_t cap = x->cap;
    while ((x->live + need) * 2 > cap)
        cap *= 2;
    slot *ns = calloc(cap, sizeof *ns);
    if (!ns)
        return TD_ENOMEM;
    slot *old = x->s;
    size_t oldcap = x->cap;
    x->s = ns;
    x->cap = cap;
    x->used = x->live;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].used && old[i].count)
            *find(x, old[i].key) = old[i];
    free(old);
    return TD_OK;
}

td_err td_pidx_add(td_pidx *x, const uint64_t *chain, size_t n)
{
    if ((x->used + n) * 2 > x->cap && grow(x, n))
        return TD_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        slot *s = find(x, chain[i]);
        if (!s->used) {
            *s = (slot){.key = chain[i], .used = true};
            x->used++;
        }
        if (s->count++ == 0)
            x->live++;
    }
    return TD_OK;
}

void td_pidx_remove(td_pidx *x, const uint64_t *chain, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        slot *s = find(x, chain[i]);
        if (s->used && s->count && --s->count == 0)
            x->live--;
    }
}

size_t td_pidx_match(const td_pidx *x, const uint64_t *chain, size_t n)
{
    size_t k = 0;
    while (k < n) {
        const slot *s = find(x, chain[k]);
        if (!s->used || !s->count)
            break;
        k++;
    }
    return k;
}

size_t td_pidx_blocks(const td_pidx *x) { return x->live; }
