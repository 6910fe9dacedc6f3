/* Peer stores and the quick "nothing there" (engine/spill.c): worker B reads
 * worker A's store as a peer. Until B's KV thread has looked at A, a long
 * prompt asks it; after, a prompt that neither store can continue is
 * answered on the engine thread at once, while A's manifest is the one B
 * read. When A spills, B's next prompt that A can continue is queued and
 * resumes from A's store; B's KV thread also looks at A every second, so a
 * prompt that arrives later is answered from a fresh view. argv[1] is the
 * model directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/prefix_cache.h"
#include "engine/spill.h"
#include "model/model.h"
#include "model/weights.h"
#include "tests/td_test.h"
#include "tests/unit/engine/tiny_model.h"

enum { NTOK = 700, CAP = NTOK + 8 };
static int32_t toks[NTOK];

/* Restores prompt[0..n) on s; *queued says whether the KV thread was
 * asked; returns the tokens restored (waiting for a queued one). */
static size_t restore(td_spill *s, td_pcache *c, const int32_t *prompt, size_t n, bool *queued)
{
    td_v4_seq *q = tm_seq_after(prompt, 0, CAP);
    size_t got = td_spill_restore_begin(s, c, q, prompt, n, q, queued);
    if (*queued) {
        done_rec d = {0};
        for (int i = 0; i < 10000 && !d.calls; i++) {
            td_spill_poll(s, c, on_done, &d);
            usleep(1000);
        }
        TD_CHECK_EQ_INT(d.calls, 1);
        got = d.tokens;
        TD_CHECK_EQ_INT((int)td_v4_seq_len(q), (int)got);
    }
    td_v4_seq_destroy(q);
    return got;
}

/* Puts the state after t[0..n) through A's tier and waits for the write. */
static void spill(td_spill *a, td_pcache *c, const int32_t *t, size_t n)
{
    td_v4_seq *q = tm_seq_after(t, (int)n, CAP);
    TD_CHECK(td_pcache_put(c, q, t, n) == TD_OK);  /* too big for memory: to disk */
    for (int i = 0; i < 10000 && !td_spill_news(a); i++)
        usleep(1000);
    td_spill_poll(a, c, NULL, NULL);
    td_v4_seq_destroy(q);
}

static void poll_for(td_spill *s, td_pcache *c, int ms)
{
    done_rec d = {0};
    for (int i = 0; i < ms; i++) {
        td_spill_poll(s, c, on_done, &d);
        usleep(1000);
    }
}

static void quick_miss_with_peers(void)
{
    char da[64], db[64];
    tm_tmpdir(da, sizeof da);
    tm_tmpdir(db, sizeof db);
    td_pcache *ca, *cb;
    td_spill *a, *b;
    TD_CHECK(td_pcache_create(&ca, 4096, NULL, NULL) == TD_OK);
    TD_CHECK(td_pcache_create(&cb, 4096, NULL, NULL) == TD_OK);
    td_spill_opts oa = {.dir = da}, ob = {.dir = db, .peers = da};
    TD_CHECK(td_spill_create(&a, &oa, M, ca) == TD_OK && td_spill_up(a));
    TD_CHECK(td_spill_create(&b, &ob, M, cb) == TD_OK && td_spill_up(b));
    int32_t other[NTOK];
    memcpy(other, toks, sizeof other);
    other[3] ^= 1;
    bool queued;

    /* B has not looked at A yet: asked (a miss); then answered at once */
    TD_CHECK_EQ_INT((int)restore(b, cb, other, NTOK, &queued), 0);
    TD_CHECK(queued);
    TD_CHECK_EQ_INT((int)restore(b, cb, other, NTOK, &queued), 0);
    TD_CHECK(!queued);

    /* A spills: B's view is stale, so B asks, and resumes from A's store */
    spill(a, ca, toks, 600);
    TD_CHECK_EQ_INT((int)restore(b, cb, toks, NTOK, &queued), 600);
    TD_CHECK(queued);
    TD_CHECK_EQ_INT((int)restore(b, cb, other, NTOK, &queued), 0);
    TD_CHECK(!queued);   /* the resume's look refreshed the view */

    /* A spills again; B's KV thread looks on its own within a second */
    other[400] ^= 1;
    spill(a, ca, toks, 650);
    poll_for(b, cb, 1500);
    TD_CHECK_EQ_INT((int)restore(b, cb, other, NTOK, &queued), 0);
    TD_CHECK(!queued);
    TD_CHECK_EQ_INT((int)restore(b, cb, toks, NTOK, &queued), 650);
    TD_CHECK(queued);    /* the view names it: the KV thread loads it */

    td_spill_destroy(b, cb);
    td_spill_destroy(a, ca);
    td_pcache_destroy(ca);
    td_pcache_destroy(cb);
    tm_rmrf(da);
    tm_rmrf(db);
}

/* A peer directory with no store: looked at once, then quick misses until
 * a store appears there. */
static void absent_peer(void)
{
    char da[64], db[64];
    tm_tmpdir(da, sizeof da);
    tm_tmpdir(db, sizeof db);
    char none[128];
    snprintf(none, sizeof none, "%s/not-yet", da);
    td_pcache *cb, *ca;
    td_spill *b, *a;
    TD_CHECK(td_pcache_create(&cb, 4096, NULL, NULL) == TD_OK);
    td_spill_opts ob = {.dir = db, .peers = none};
    TD_CHECK(td_spill_create(&b, &ob, M, cb) == TD_OK && td_spill_up(b));
    bool queued;
    TD_CHECK_EQ_INT((int)restore(b, cb, toks, NTOK, &queued), 0);
    TD_CHECK(queued);
    TD_CHECK_EQ_INT((int)restore(b, cb, toks, NTOK, &queued), 0);
    TD_CHECK(!queued);
    /* the peer starts and spills: found */
    TD_CHECK(td_pcache_create(&ca, 4096, NULL, NULL) == TD_OK);
    td_spill_opts oa = {.dir = none};
    TD_CHECK(td_spill_create(&a, &oa, M, ca) == TD_OK && td_spill_up(a));
    spill(a, ca, toks, 600);
    poll_for(b, cb, 1500);
    TD_CHECK_EQ_INT((int)restore(b, cb, toks, NTOK, &queued), 600);
    TD_CHECK(queued);
    td_spill_destroy(a, ca);
    td_spill_destroy(b, cb);
    td_pcache_destroy(ca);
    td_pcache_destroy(cb);
    tm_rmrf(da);
    tm_rmrf(db);
}

int main(int argc, char **argv)
{
    static const td_test_case cases[] = {
        {"quick_miss_with_peers", quick_miss_with_peers},
        {"absent_peer", absent_peer},
        {NULL, NULL},
    };
    return tm_main(argc, argv, cases, toks, NTOK);
}
