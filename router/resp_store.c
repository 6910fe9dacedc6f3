/* The Responses store (see resp_store.h): a chained hash table of entries
 * by id, and a doubly linked list in least-recently-used order. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router/resp_store.h"

typedef struct entry {
    char *id, *prev_id;
    json_t *input, *response;
    size_t bytes;
    struct entry *hnext;             /* bucket chain */
    struct entry *newer, *older;     /* use order */
} entry;

struct td_resp_store {
    size_t budget;
    entry **buckets;
    size_t nbuckets;                 /* a power of two */
    entry *newest, *oldest;
    td_resp_store_stats st;
};

static uint64_t hash_id(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;  /* FNV-1a: ids are short and server-made */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

static entry **slot(td_resp_store *s, const char *id)
{
    entry **p = &s->buckets[hash_id(id) & (s->nbuckets - 1)];
    while (*p && strcmp((*p)->id, id))
        p = &(*p)->hnext;
    return p;
}

static void unlink_use(td_resp_store *s, entry *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        s->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        s->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void push_newest(td_resp_store *s, entry *e)
{
    e->older = s->newest;
    e->newer = NULL;
    if (s->newest)
        s->newest->newer = e;
    s->newest = e;
    if (!s->oldest)
        s->oldest = e;
}

static void free_entry(entry *e)
{
    json_decref(e->input);
    json_decref(e->response);
    free(e->id);
    free(e->prev_id);
    free(e);
}

static void remove_entry(td_resp_store *s, entry **at)
{
    entry *e = *at;
    *at = e->hnext;
    unlink_use(s, e);
    s->st.entries--;
    s->st.bytes -= e->bytes;
    free_entry(e);
}

static td_err grow(td_resp_store *s)
{
    size_t n = s->nbuckets * 2;
    entry **b = calloc(n, sizeof *b);
    if (!b)
        return TD_ENOMEM;
    for (size_t i = 0; i < s->nbuckets; i++)
        for (entry *e = s->buckets[i], *next; e; e = next) {
            next = e->hnext;
            entry **p = &b[hash_id(e->id) & (n - 1)];
            e->hnext = *p;
            *p = e;
        }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
    return TD_OK;
}

td_err td_resp_store_create(td_resp_store **out, size_t budget_bytes)
{
    td_resp_store *s = calloc(1, sizeof *s);
    if (!s)
        return TD_ENOMEM;
    s->budget = budget_bytes;
    s->nbuckets = 64;
    if (!(s->buckets = calloc(s->nbuckets, sizeof *s->buckets))) {
        free(s);
        return TD_ENOMEM;
    }
    *out = s;
    return TD_OK;
}

void td_resp_store_destroy(td_resp_store *s)
{
    if (!s)
        return;
    while (s->oldest)
        remove_entry(s, slot(s, s->oldest->id));
    free(s->buckets);
    free(s);
}

static size_t json_size(const json_t *v)
{
    return json_dumpb(v, NULL, 0, JSON_COMPACT);
}

td_err td_resp_store_put(td_resp_store *s, const char *id, const char *prev_id, json_t *input,
                         json_t *response)
{
    size_t bytes = sizeof(entry) + strlen(id) + (prev_id ? strlen(prev_id) : 0) +
                   json_size(input) + json_size(response);
    entry *e = NULL;
    td_err rc = TD_OK;
    if (bytes > s->budget) {
        rc = TD_ENOSPC;
        goto fail;
    }
    if (!(e = calloc(1, sizeof *e)) || !(e->id = strdup(id)) ||
        (prev_id && !(e->prev_id = strdup(prev_id))) ||
        (s->st.entries >= s->nbuckets && grow(s))) {
        rc = TD_ENOMEM;
        goto fail;
    }
    entry **at = slot(s, id);
    if (*at)
        remove_entry(s, at);
    while (s->st.bytes + bytes > s->budget && s->oldest) {
        remove_entry(s, slot(s, s->oldest->id));
        s->st.evictions++;
    }
    e->input = input;
    e->response = response;
    e->bytes = bytes;
    at = slot(s, id);
    *at = e;
    push_newest(s, e);
    s->st.entries++;
    s->st.bytes += bytes;
    return TD_OK;
fail:
    if (e) {
        free(e->id);
        free(e->prev_id);
        free(e);
    }
    json_decref(input);
    json_decref(response);
    return rc;
}

static entry *find(td_resp_store *s, const char *id, bool touch)
{
    entry *e = *slot(s, id);
    if (e && touch) {
        unlink_use(s, e);
        push_newest(s, e);
    }
    return e;
}

json_t *td_resp_store_response(td_resp_store *s, const char *id)
{
    entry *e = find(s, id, true);
    return e ? json_incref(e->response) : NULL;
}

static td_err conversation(td_resp_store *s, const char *id, bool last_output, json_t **out)
{
    /* Walk back to the first turn, then append oldest first. The walk is
     * bounded by the entry count, so a malformed chain cannot loop. */
    size_t n = 0, cap = 16;
    entry **chain = malloc(cap * sizeof *chain);
    if (!chain)
        return TD_ENOMEM;
    td_err rc = TD_OK;
    for (const char *at = id; at; ) {
        entry *e = find(s, at, true);
        if (!e || n > s->st.entries) {
            rc = TD_ENOENT;
            goto done;
        }
        if (n == cap) {
            entry **c = realloc(chain, 2 * cap * sizeof *c);
            if (!c) {
                rc = TD_ENOMEM;
                goto done;
            }
            chain = c, cap *= 2;
        }
        chain[n++] = e;
        at = e->prev_id;
    }
    json_t *items = json_array();
    if (!items) {
        rc = TD_ENOMEM;
        goto done;
    }
    for (size_t i = n; i-- > 0;) {
        json_t *output = i || last_output ? json_object_get(chain[i]->response, "output")
                                          : NULL;
        if (json_array_extend(items, chain[i]->input) ||
            (output && json_array_extend(items, output))) {
            json_decref(items);
            rc = TD_ENOMEM;
            goto done;
        }
    }
    *out = items;
done:
    free(chain);
    return rc;
}

td_err td_resp_store_history(td_resp_store *s, const char *id, json_t **out)
{
    return conversation(s, id, true, out);
}

td_err td_resp_store_inputs(td_resp_store *s, const char *id, json_t **out)
{
    return conversation(s, id, false, out);
}

bool td_resp_store_delete(td_resp_store *s, const char *id)
{
    entry **at = slot(s, id);
    if (!*at)
        return false;
    remove_entry(s, at);
    return true;
}

td_resp_store_stats td_resp_store_get_stats(const td_resp_store *s)
{
    return s->st;
}
