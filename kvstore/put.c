/* td_kv_put / td_kv_put_many: room, allocation, writes, the log record.
 *
 * Ordering (docs/kvstore.md): blocks written and fdatasync'd -> PUT records
 * durable -> the replaced entries' pages become free; an evicted entry's DEL
 * record is durable before its pages are reused. So no page is reused while
 * a durable record may still point at it. On any error before the log write
 * the store is as it was. */
#include <stdlib.h>
#include <string.h>

#include "kvstore/internal.h"

td_err kv_drop(td_kv *kv, kv_entry *e, char *err, size_t errlen)
{
    kv_rec r = {.type = KV_REC_DEL, .key = e->key, .section = e->section};
    td_err x = kv_log_append(kv, &r, NULL, 1, err, errlen);
    if (!x)
        kv_index_remove(kv, e);
    return x;
}

static void release(td_kv *kv, kv_entry *e)
{
    for (uint32_t k = 0; k < e->n_ext; k++)
        kv_space_release(kv, e->ext[k]);
    e->n_ext = 0;
}

/* Allocates e's extents, one run per block, merging neighbours. */
static td_err alloc_value(td_kv *kv, kv_entry *e, char *err, size_t errlen)
{
    uint32_t n = kv_blocks_of(kv, e->value_len);
    for (uint32_t i = 0; i < n; i++) {
        kv_ext x;
        td_err r = kv_space_alloc(kv, kv_block_pages(kv, e->value_len, i), &x, err, errlen);
        if (r) {
            release(kv, e);
            return r;
        }
        kv_ext *last = e->n_ext ? &e->ext[e->n_ext - 1] : NULL;
        if (last && last->seg == x.seg && last->page + last->pages == x.page)
            last->pages += x.pages;
        else
            e->ext[e->n_ext++] = x;
    }
    return TD_OK;
}

/* Room and pages for every entry: evict by count first, then further while
 * fragmentation leaves no run for some block. */
static td_err make_room(td_kv *kv, kv_entry **ents, size_t n, uint64_t need, char *err,
                        size_t errlen)
{
    /* Lowest free pages first, then next fit for the rest: space written
     * before is reused (overwriting allocated extents is about twice as
     * fast as writing fresh ones) and the store stays compact, so gc can
     * give back whole segments. */
    kv->hint_seg = kv->hint_page = 0;
    td_err r = TD_OK;
    while (!r && kv->used_pages + need > kv->cap_pages)
        r = kv_evict_one(kv, need, NULL, err, errlen);
    char why[256] = "";
    for (size_t i = 0; i < n && !r; i++) {
        while (!r && (r = alloc_value(kv, ents[i], why, sizeof(why))) == TD_ENOSPC)
            r = kv_evict_one(kv, need, why, err, errlen);
        if (r && r != TD_ENOSPC && why[0])
            td_errf(err, errlen, r, "%s", why);
    }
    return r;
}

static int cmp_item(const void *a, const void *b)
{
    const td_kv_item *x = *(const td_kv_item *const *)a, *y = *(const td_kv_item *const *)b;
    if (x->key.hi != y->key.hi)
        return x->key.hi < y->key.hi ? -1 : 1;
    if (x->key.lo != y->key.lo)
        return x->key.lo < y->key.lo ? -1 : 1;
    return x->section < y->section ? -1 : x->section > y->section;
}

static td_err check_items(td_kv *kv, const td_kv_item *it, size_t n, uint64_t *need, char *err,
                          size_t errlen)
{
    if (kv->read_only)
        return td_errf(err, errlen, TD_EINVAL, "kvstore: %s is open read-only", kv->dir);
    *need = 0;
    for (size_t i = 0; i < n; i++)
        if (it[i].keep && !kv_find(kv, it[i].key, it[i].section)) {
            char hex[33];
            td_kv_key_hex(it[i].key, hex);
            return td_errf(err, errlen, TD_ENOENT, "kvstore: item %zu (key %s section %u) is to "
                           "be kept but %s has no such entry", i, hex, it[i].section, kv->dir);
        }
    /* A state of many token ranges is thousands of items: sorted, not
     * pairwise. */
    const td_kv_item **v = malloc(n * sizeof(*v));
    if (!v)
        return td_errf(err, errlen, TD_ENOMEM, "kvstore: batch of %zu", n);
    for (size_t i = 0; i < n; i++)
        v[i] = &it[i];
    qsort(v, n, sizeof(*v), cmp_item);
    for (size_t i = 1; i < n; i++)
        if (!cmp_item(&v[i - 1], &v[i])) {
            size_t a = (size_t)(v[i - 1] - it), b = (size_t)(v[i] - it);
            free(v);
            return td_errf(err, errlen, TD_EINVAL, "kvstore: items %zu and %zu have the same key and section",
                           a < b ? a : b, a < b ? b : a);
        }
    free(v);
    for (size_t i = 0; i < n; i++) {
        uint64_t p = it[i].keep ? 0 : kv_value_pages(kv, it[i].len);
        if (p > kv->cap_pages || (*need += p) > kv->cap_pages)
            return td_errf(err, errlen, TD_ENOSPC, "kvstore: %zu bytes of values exceed the capacity of %s",
                           it[i].len, kv->dir);
    }
    return TD_OK;
}

td_err td_kv_put_many(td_kv *kv, const td_kv_item *it_all, size_t n_all, char *err,
                      size_t errlen)
{
    uint64_t need = 0;
    td_err r = check_items(kv, it_all, n_all, &need, err, errlen);
    if (r || n_all == 0)
        return r;
    /* The items to write, then the entries kept (td_kv_item.keep): those
     * are held out of eviction while this put makes room, priced with the
     * batch and touched once it is durable. */
    size_t nkept = 0;
    for (size_t i = 0; i < n_all; i++)
        nkept += it_all[i].keep != 0;
    size_t n = n_all - nkept;
    const td_kv_item *it = it_all;
    td_kv_item *wr = NULL;
    kv_entry **kept = nkept ? calloc(nkept, sizeof(*kept)) : NULL;
    if (nkept && (!kept || (n && !(wr = malloc(n * sizeof(*wr)))))) {
        free(kept);
        return td_errf(err, errlen, TD_ENOMEM, "kvstore: batch of %zu", n_all);
    }
    if (nkept) {
        size_t a = 0, b = 0;
        for (size_t i = 0; i < n_all; i++) {
            if (!it_all[i].keep) {
                wr[a++] = it_all[i];
                continue;
            }
            kv_entry *k = kv_find(kv, it_all[i].key, it_all[i].section);
            k->replacing = 1;   /* not a victim of this put */
            kv_evict_sync(kv, k, 0);
            kept[b++] = k;
        }
        it = wr;
    }
    /* Per batch, not per block: entries, the entries they replace, log
     * records and their extents. */
    kv_entry **ents = calloc(n ? n : 1, sizeof(*ents));
    kv_entry **olds = calloc(n ? n : 1, sizeof(*olds));
    kv_rec *recs = calloc(n ? n : 1, sizeof(*recs));
    const kv_ext **exts = calloc(n ? n : 1, sizeof(*exts));
    if (!ents || !olds || !recs || !exts)
        r = td_errf(err, errlen, TD_ENOMEM, "kvstore: batch of %zu", n);
    for (size_t i = 0; i < n && !r; i++) {
        kv_entry *e = calloc(1, sizeof(*e));
        kv_ext *x = e ? malloc(kv_blocks_of(kv, it[i].len) * sizeof(kv_ext)) : NULL;
        if (!x) {
            free(e);
            r = td_errf(err, errlen, TD_ENOMEM, "kvstore: entry of %zu bytes", it[i].len);
            break;
        }
        olds[i] = kv_find(kv, it[i].key, it[i].section);
        if (olds[i]) {
            olds[i]->replacing = 1;   /* not a victim of its own replacement */
            kv_evict_sync(kv, olds[i], 0);
        }
        *e = (kv_entry){.key = it[i].key, .section = it[i].section,
                        .pinned = olds[i] ? olds[i]->pinned : 0, .tokens = it[i].tokens,
                        .value_len = it[i].len, .seq = kv->next_seq++, .ext = x,
                        .uses = kv_evict_uses_after(olds[i])};
        ents[i] = e;
    }
    if (!r) {
        kv_evict_batch(kv, ents, n, kept, nkept);
        r = make_room(kv, ents, n, need, err, errlen);
    }
    const void **values = r || !n ? NULL : calloc(n, sizeof(*values));
    if (!r && n && !values)
        r = td_errf(err, errlen, TD_ENOMEM, "kvstore: batch of %zu", n);
    for (size_t i = 0; i < n && !r; i++)
        values[i] = it[i].value;
    if (!r && n)
        r = kv_io_write(kv, (const kv_entry *const *)ents, values, n, err, errlen);
    free(values);
    /* Even after a failed write: clears the dirty marks (and keeps the
     * first error's message). */
    td_err s = kv_io_sync(kv, r ? NULL : err, r ? 0 : errlen);
    if (!r)
        r = s;
    for (size_t i = 0; i < n && !r; i++) {
        kv_entry *e = ents[i];
        recs[i] = (kv_rec){.type = KV_REC_PUT, .key = e->key, .section = e->section,
                           .pinned = e->pinned, .tokens = e->tokens, .value_len = e->value_len,
                           .seq = e->seq, .n_ext = e->n_ext};
        exts[i] = e->ext;
    }
    if (!r && n)
        r = kv_log_append(kv, recs, exts, n, err, errlen);
    for (size_t i = 0; ents && olds && i < n; i++) {
        if (olds[i]) {
            olds[i]->replacing = 0;
            kv_evict_sync(kv, olds[i], 0);
        }
        if (!ents[i])
            continue;
        if (r) {
            release(kv, ents[i]);
            free(ents[i]->ext);
            free(ents[i]);
            continue;
        }
        if (olds[i])
            kv_index_remove(kv, olds[i]);
        kv_index_insert(kv, ents[i]);
        kv->st.puts++;
        kv->st.put_bytes += ents[i]->value_len;
    }
    for (size_t i = 0; i < nkept; i++) {
        kept[i]->replacing = 0;
        if (r)
            kv_evict_sync(kv, kept[i], 0);
        else
            kv_touch(kv, kept[i]);
    }
    free(kept);
    free(wr);
    free(ents);
    free(olds);
    free(recs);
    free(exts);
    if (!r && kv->log_records >= kv->checkpoint_every)
        kv_checkpoint(kv, NULL, 0);   /* the puts are durable in the log either way */
    return r;
}

td_err td_kv_put(td_kv *kv, td_kv_key key, uint32_t section, uint64_t tokens,
                 const void *value, size_t len, char *err, size_t errlen)
{
    td_kv_item it = {.key = key, .section = section, .tokens = tokens, .value = value, .len = len};
    return td_kv_put_many(kv, &it, 1, err, errlen);
}
