/* Stop strings over streamed text (see router_internal.h). */
#include <stdlib.h>
#include <string.h>

#include "router/router_internal.h"

td_err td_router_stop_init(td_router_stop *s, char *const *stops, const size_t *lens, int n)
{
    memset(s, 0, sizeof *s);
    if (n == 0)
        return TD_OK;
    s->stops = calloc((size_t)n, sizeof *s->stops);
    s->lens = calloc((size_t)n, sizeof *s->lens);
    if (!s->stops || !s->lens)
        goto fail;
    for (int i = 0; i < n; i++) {
        if (!(s->stops[i] = malloc(lens[i] + 1)))
            goto fail;
        memcpy(s->stops[i], stops[i], lens[i]);
        s->stops[i][lens[i]] = '\0';
        s->lens[i] = lens[i];
        s->n = i + 1;
    }
    return TD_OK;
fail:
    td_router_stop_free(s);
    return TD_ENOMEM;
}

void td_router_stop_free(td_router_stop *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->stops[i]);
    free(s->stops);
    free(s->lens);
    free(s->held);
    memset(s, 0, sizeof *s);
}

/* Length of the longest suffix of text that is a proper prefix of stop. */
static size_t partial_suffix(const char *text, size_t len, const char *stop, size_t slen)
{
    size_t k = slen - 1 < len ? slen - 1 : len;
    for (; k > 0; k--)
        if (!memcmp(text + len - k, stop, k))
            return k;
    return 0;
}

bool td_router_stop_feed(td_router_stop *s, const char *text, size_t len, bool final,
                         const char **emit, size_t *emit_len)
{
    *emit = "";
    *emit_len = 0;
    if (s->matched)
        return true;
    if (s->n == 0) {
        /* Nothing to look for: pass the text straight through. */
        *emit = text;
        *emit_len = len;
        return false;
    }
    if (s->consumed) {
        memmove(s->held, s->held + s->consumed, s->held_len - s->consumed);
        s->held_len -= s->consumed;
        s->consumed = 0;
    }
    if (s->held_len + len > s->held_cap) {
        size_t nc = s->held_cap ? s->held_cap : 64;
        while (nc < s->held_len + len)
            nc *= 2;
        char *nh = realloc(s->held, nc);
        if (!nh) {
            /* Cannot hold text back: emit it unchecked rather than lose it. */
            *emit = text;
            *emit_len = len;
            return false;
        }
        s->held = nh;
        s->held_cap = nc;
    }
    if (len)
        memcpy(s->held + s->held_len, text, len);
    s->held_len += len;

    /* The earliest match wins, whichever stop string it is. */
    size_t best = s->held_len;
    /* Nothing held yet (held may still be NULL): nothing can match. */
    for (int i = 0; s->held_len > 0 && i < s->n; i++) {
        const char *m = memmem(s->held, s->held_len, s->stops[i], s->lens[i]);
        if (m && (size_t)(m - s->held) < best)
            best = (size_t)(m - s->held);
    }
    if (best < s->held_len) {
        s->matched = true;
        *emit = s->held;
        *emit_len = best;
        return true;
    }
    size_t keep = 0;
    if (!final)
        for (int i = 0; i < s->n; i++) {
            size_t k = partial_suffix(s->held, s->held_len, s->stops[i], s->lens[i]);
            if (k > keep)
                keep = k;
        }
    *emit = s->held;
    *emit_len = s->held_len - keep;
    s->consumed = *emit_len;
    return false;
}
