/* See arena.h. Extents are few (one per request in flight at most, plus
 * one), so a linked list is the right size of structure. */
#include <stdlib.h>

#include "worker/arena.h"

typedef struct ext {
    struct ext *next;
    size_t off, len;
} ext;

struct td_arena {
    ext *free;                   /* offset order, never adjacent */
    size_t size, avail;
};

static size_t round_up(size_t n) { return (n + TD_ARENA_ALIGN - 1) & ~(size_t)(TD_ARENA_ALIGN - 1); }

td_err td_arena_create(td_arena **out, size_t size)
{
    td_arena *a = calloc(1, sizeof *a);
    ext *e = calloc(1, sizeof *e);
    if (!a || !e) {
        free(a);
        free(e);
        return TD_ENOMEM;
    }
    size &= ~(size_t)(TD_ARENA_ALIGN - 1);
    *e = (ext){.off = 0, .len = size};
    *a = (td_arena){.free = size ? e : NULL, .size = size, .avail = size};
    if (!size)
        free(e);
    *out = a;
    return TD_OK;
}

void td_arena_destroy(td_arena *a)
{
    if (!a)
        return;
    while (a->free) {
        ext *e = a->free;
        a->free = e->next;
        free(e);
    }
    free(a);
}

td_err td_arena_alloc(td_arena *a, size_t size, size_t *off)
{
    size_t n = round_up(size ? size : 1);
    for (ext **pp = &a->free; *pp; pp = &(*pp)->next) {
        ext *e = *pp;
        if (e->len < n)
            continue;
        *off = e->off;
        e->off += n;
        e->len -= n;
        if (!e->len) {
            *pp = e->next;
            free(e);
        }
        a->avail -= n;
        return TD_OK;
    }
    return TD_ENOMEM;
}

void td_arena_free(td_arena *a, size_t off, size_t size)
{
    size_t n = round_up(size ? size : 1);
    ext **pp = &a->free;
    while (*pp && (*pp)->off < off)
        pp = &(*pp)->next;
    ext *next = *pp;
    ext *prev = pp == &a->free ? NULL : (ext *)((char *)pp - offsetof(ext, next));
    a->avail += n;
    if (prev && prev->off + prev->len == off) {  /* grow the one before */
        prev->len += n;
        if (next && prev->off + prev->len == next->off) {
            prev->len += next->len;
            prev->next = next->next;
            free(next);
        }
        return;
    }
    if (next && off + n == next->off) {          /* grow the one after */
        next->off = off;
        next->len += n;
        return;
    }
    ext *e = malloc(sizeof *e);
    if (!e) {
        a->avail -= n;  /* the extent is lost to the arena, not to the process */
        return;
    }
    *e = (ext){.next = next, .off = off, .len = n};
    *pp = e;
}

size_t td_arena_free_bytes(const td_arena *a) { return a->avail; }
