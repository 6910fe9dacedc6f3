/* The prefix cache on the tiny model: a prompt that extends a cached state
 * continues bit-identically to a full prefill; the longest proper prefix
 * wins; the byte budget evicts the least recently used; a state that does
 * not fit is not stored. argv[1] is the model directory. */
#include <stdlib.h>
#include <string.h>

#include "engine/prefix_cache.h"
#include "model/model.h"
#include "model/state.h"
#include "model/weights.h"
#include "tests/td_test.h"
#include "tests/unit/engine/tiny_model.h"


#define NTOK 80
static int32_t toks[NTOK];

static td_v4_seq *seq_after(const int32_t *t, int n) { return tm_seq_after(t, n, NTOK + 8); }

/* Last-token logits after feeding t[from..n) to s. */
static float *finish(td_v4_seq *s, const int32_t *t, int from, int n)
{
    float *lg = malloc(sizeof(float) * (size_t)W->cfg.vocab_size);
    char err[256];
    td_v4_step st = {.seq = s, .tokens = t + from, .n = n - from, .logits = lg};
    TD_CHECK(td_v4_forward(M, &st, 1, err, sizeof err) == TD_OK);
    return lg;
}

static void extends_bit_identically(void)
{
    td_pcache *c;
    TD_CHECK(td_pcache_create(&c, 64u << 20, NULL, NULL) == TD_OK);
    for (int cut = 10; cut <= 40; cut += 30) {
        td_v4_seq *s = seq_after(toks, cut);
        TD_CHECK(td_pcache_put(c, s, toks, (size_t)cut) == TD_OK);
        td_v4_seq_destroy(s);
    }
    td_v4_seq *fresh = seq_after(toks, 0);
    TD_CHECK_EQ_INT((int)td_pcache_restore(c, fresh, toks, NTOK, 0), 40);  /* the longest */
    float *a = finish(fresh, toks, 40, NTOK);
    td_v4_seq *full = seq_after(toks, 0);
    float *b = finish(full, toks, 0, NTOK);
    TD_CHECK(memcmp(a, b, sizeof(float) * (size_t)W->cfg.vocab_size) == 0);
    /* A proper prefix only: the same 40 tokens again cannot use 40. */
    td_v4_seq *again = seq_after(toks, 0);
    TD_CHECK_EQ_INT((int)td_pcache_restore(c, again, toks, 40, 0), 10);
    /* Another prompt does not match. */
    int32_t other[NTOK];
    memcpy(other, toks, sizeof other);
    other[3] ^= 1;
    td_v4_seq *o = seq_after(toks, 0);
    TD_CHECK_EQ_INT((int)td_pcache_restore(c, o, other, NTOK, 0), 0);
    TD_CHECK_EQ_INT((int)td_v4_seq_len(o), 0);
    td_pcache_stats st = td_pcache_get_stats(c);
    TD_CHECK(st.lookups == 3 && st.hits == 2 && st.tokens_reused == 50 && st.entries == 2);
    /* Nothing longer than min: untouched (the caller holds a longer state). */
    TD_CHECK_EQ_INT((int)td_pcache_restore(c, again, toks, NTOK, 40), 0);
    TD_CHECK_EQ_INT((int)td_v4_seq_len(again), 10);
    free(a);
    free(b);
    td_v4_seq_destroy(fresh);
    td_v4_seq_destroy(full);
    td_v4_seq_destroy(again);
    td_v4_seq_destroy(o);
    td_pcache_destroy(c);
}

static int n_stored, n_dropped;
static size_t last_dropped;

static void on_event(void *arg, bool stored, const int32_t *t, size_t n)
{
    (void)arg;
    (void)t;
    if (stored) {
        n_stored++;
    } else {
        n_dropped++;
        last_dropped = n;
    }
}

static void budget_evicts_least_recent(void)
{
    td_v4_seq *s20 = seq_after(toks, 20), *s30 = seq_after(toks, 30);
    size_t one = td_v4_seq_state_size(s30) + 30 * sizeof(int32_t);
    td_pcache *c;
    TD_CHECK(td_pcache_create(&c, 2 * one, on_event, NULL) == TD_OK);  /* room for two */
    int32_t b[NTOK];
    memcpy(b, toks, sizeof b);
    b[0] ^= 7;  /* a second conversation */
    TD_CHECK(td_pcache_put(c, s20, toks, 20) == TD_OK);
    TD_CHECK(td_pcache_put(c, s30, toks, 30) == TD_OK);
    td_v4_seq *x = seq_after(toks, 0);
    TD_CHECK_EQ_INT((int)td_pcache_restore(c, x, toks, 25, 0), 20);  /* 20 is now recent */
    td_v4_seq *sb = seq_after(b, 30);
    TD_CHECK(td_pcache_put(c, sb, b, 30) == TD_OK);                /* evicts 30 */
    td_pcache_stats st = td_pcache_get_stats(c);
    TD_CHECK(st.evictions == 1 && st.entries == 2 && st.bytes <= 2 * one);
    TD_CHECK(n_stored == 3 && n_dropped == 1 && last_dropped == 30);  /* events */
    td_v4_seq *y = seq_after(toks, 0);
    TD_CHECK_EQ_INT((int)td_pcache_restore(c, y, toks, NTOK, 0), 20);
    /* Too big for the budget: not stored, nothing evicted. */
    td_pcache *tiny;
    TD_CHECK(td_pcache_create(&tiny, 100, NULL, NULL) == TD_OK);
    TD_CHECK(td_pcache_put(tiny, s30, toks, 30) == TD_OK);
    TD_CHECK(td_pcache_get_stats(tiny).entries == 0);
    td_pcache_destroy(tiny);
    td_v4_seq_destroy(s20);
    td_v4_seq_destroy(s30);
    td_v4_seq_destroy(sb);
    td_v4_seq_destroy(x);
    td_v4_seq_destroy(y);
    td_pcache_destroy(c);
}

/* Where a prompt branches off the cached ones: the longest common prefix
 * with any entry, whether or not that entry is a prefix of the prompt. */
static void common_prefix(void)
{
    td_v4_seq *s30 = seq_after(toks, 30);
    td_pcache *c;
    TD_CHECK(td_pcache_create(&c, 1 << 20, NULL, NULL) == TD_OK);
    int32_t p[NTOK];
    memcpy(p, toks, sizeof p);
    TD_CHECK_EQ_INT((int)td_pcache_common(c, p, NTOK), 0);   /* empty cache */
    TD_CHECK(td_pcache_put(c, s30, toks, 30) == TD_OK);
    p[17] ^= 5;   /* shares 17 tokens, then differs */
    TD_CHECK_EQ_INT((int)td_pcache_common(c, p, NTOK), 17);
    td_v4_seq *x = seq_after(toks, 0);
    TD_CHECK_EQ_INT((int)td_pcache_restore(c, x, p, NTOK, 0), 0);  /* not a prefix of it */
    TD_CHECK_EQ_INT((int)td_pcache_common(c, p, 10), 10);       /* the prompt ends first */
    TD_CHECK_EQ_INT((int)td_pcache_common(c, toks, NTOK), 30);  /* the entry ends first */
    p[0] ^= 1;
    TD_CHECK_EQ_INT((int)td_pcache_common(c, p, NTOK), 0);
    td_v4_seq_destroy(s30);
    td_v4_seq_destroy(x);
    td_pcache_destroy(c);
}

static int spilled, spill_fails;
static size_t spilled_n;
/* Takes the arrays (as the disk tier does) when it does not fail. */
static td_err spill_fn(void *arg, int32_t *t, size_t n, uint8_t *state, size_t len)
{
    (void)arg;
    TD_CHECK(t != toks && t[0] == toks[0]);
    TD_CHECK(len > 8 && state);
    spilled++;
    spilled_n = n;
    if (spill_fails)
        return TD_ENOSPC;
    free(t);
    free(state);
    return TD_OK;
}

/* A state the tier took and could not write comes back: kept (and not
 * offered again when idle) if it fits beside what is held, restorable as
 * before; dropped, and the event function told, if it does not. */
static void adopt_back(void)
{
    td_pcache *c;
    td_v4_seq *s20 = seq_after(toks, 20), *s30 = seq_after(toks, 30), *into = seq_after(toks, 0);
    size_t one = td_v4_seq_state_size(s30) + 30 * sizeof(int32_t);
    TD_CHECK(td_pcache_create(&c, 2 * one, on_event, NULL) == TD_OK);
    size_t len = td_v4_seq_state_size(s20), w = 0;
    uint8_t *st = malloc(len);
    int32_t *t = malloc(20 * sizeof *t);
    TD_CHECK(st && t && td_v4_seq_save(s20, st, len, &w) == TD_OK);
    memcpy(t, toks, 20 * sizeof *t);
    td_pcache_adopt(c, t, 20, st, w);
    int dropped = n_dropped;
    TD_CHECK(td_pcache_get_stats(c).entries == 1 && n_dropped == dropped);
    TD_CHECK_EQ_INT((int)td_pcache_restore(c, into, toks, 25, 0), 20);
    td_pcache_set_spill(c, spill_fn, NULL);
    int before = spilled;
    TD_CHECK(td_pcache_spill_idle(c, 0) == -1);        /* adopted: not offered again */
    TD_CHECK_EQ_INT(spilled, before);
    TD_CHECK(td_pcache_put(c, s30, toks, 30) == TD_OK);
    len = td_v4_seq_state_size(s30);
    st = malloc(len);
    t = malloc(30 * sizeof *t);
    TD_CHECK(st && t && td_v4_seq_save(s30, st, len, &w) == TD_OK);
    memcpy(t, toks, 30 * sizeof *t);
    t[29] ^= 1;                                        /* other tokens: no room for it */
    td_pcache_adopt(c, t, 30, st, w);
    TD_CHECK(td_pcache_get_stats(c).entries == 2 && n_dropped == dropped + 1 &&
             last_dropped == 30);
    td_v4_seq_destroy(into);
    td_pcache_destroy(c);
    td_v4_seq_destroy(s20);
    td_v4_seq_destroy(s30);
}

/* The disk tier's hooks: idle entries are handed over and freed; one the
 * tier cannot take stays (and is not offered again when idle); an entry
 * evicted for room, or larger than the budget, is handed over too. */
static void spill_hooks(void)
{
    td_pcache *c;
    td_v4_seq *s20 = seq_after(toks, 20), *s30 = seq_after(toks, 30);
    size_t one = td_v4_seq_state_size(s30) + 30 * sizeof(int32_t);
    TD_CHECK(td_pcache_create(&c, 2 * one, NULL, NULL) == TD_OK);
    td_pcache_set_spill(c, spill_fn, NULL);
    TD_CHECK(td_pcache_put(c, s20, toks, 20) == TD_OK);
    TD_CHECK(td_pcache_spill_idle(c, 60000) > 0);      /* not idle yet */
    TD_CHECK_EQ_INT(spilled, 0);
    spill_fails = 1;
    TD_CHECK(td_pcache_spill_idle(c, 0) == -1);        /* fails: kept, not due again */
    TD_CHECK_EQ_INT(spilled, 1);
    TD_CHECK(td_pcache_get_stats(c).entries == 1);
    TD_CHECK(td_pcache_spill_idle(c, 0) == -1);
    TD_CHECK_EQ_INT(spilled, 1);
    spill_fails = 0;
    TD_CHECK(td_pcache_put(c, s30, toks, 30) == TD_OK);
    TD_CHECK(td_pcache_spill_idle(c, 0) == -1);        /* s30 goes; s20 stays */
    TD_CHECK(spilled == 2 && spilled_n == 30 && td_pcache_get_stats(c).entries == 1);
    td_pcache_spill_all(c);
    TD_CHECK(spilled == 3 && spilled_n == 20 && td_pcache_get_stats(c).entries == 0);
    td_pcache *tiny;                                   /* too big: straight to the tier */
    TD_CHECK(td_pcache_create(&tiny, 100, NULL, NULL) == TD_OK);
    td_pcache_set_spill(tiny, spill_fn, NULL);
    TD_CHECK(td_pcache_put(tiny, s30, toks, 30) == TD_OK);
    TD_CHECK(spilled == 4 && td_pcache_get_stats(tiny).entries == 0);
    td_pcache_destroy(tiny);
    td_pcache_destroy(c);
    td_v4_seq_destroy(s20);
    td_v4_seq_destroy(s30);
}

int main(int argc, char **argv)
{
    static const td_test_case cases[] = {
        {"extends_bit_identically", extends_bit_identically},
        {"budget_evicts_least_recent", budget_evicts_least_recent},
        {"spill_hooks", spill_hooks},
        {"adopt_back", adopt_back},
        {"common_prefix", common_prefix},
        {NULL, NULL},
    };
    return tm_main(argc, argv, cases, toks, NTOK);
}
