/* States filed in token ranges (engine/spill_ranges.c) on the tiny model,
 * with ranges of 256 tokens and a real store: a session's next turn writes
 * only the range it added and its rest; another session that shares the
 * first range writes only what differs; each state resumes from disk and
 * continues bit-identically; a range gone from the store makes the states
 * built on it misses (not faults, not announced at start) while a state
 * that does not need it still resumes. argv[1] is the model directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "engine/prefix_cache.h"
#include "engine/spill.h"
#include "kvstore/kvstore.h"
#include "model/model.h"
#include "model/state.h"
#include "model/weights.h"
#include "tests/td_test.h"
#include "tests/unit/engine/tiny_model.h"

enum { NTOK = 900, RANGE = 256, CAP = NTOK + 8 };
static int32_t toks[NTOK];

static float *logits_after(td_v4_seq *s, const int32_t *t, int from, int to)
{
    float *lg = malloc(sizeof(float) * (size_t)W->cfg.vocab_size);
    char err[256];
    td_v4_step st = {.seq = s, .tokens = t + from, .n = to - from, .logits = lg};
    TD_CHECK(td_v4_forward(M, &st, 1, err, sizeof err) == TD_OK);
    return lg;
}

static double metric(td_spill *s, const char *name)
{
    td_prom_buf b = {0};
    td_spill_metrics(s, &b);
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = b.p ? strstr(b.p, key) : NULL;
    double v = p ? atof(p + strlen(key)) : -1;
    free(b.p);
    return v;
}

/* Collects until no restore is in flight, or (none queued) until the KV
 * thread has reported something. */
static void wait_idle(td_spill *s, td_pcache *c, void (*done)(void *, void *, size_t), void *arg)
{
    bool any = td_spill_resuming(s) > 0;
    for (int i = 0; i < 10000 && (any ? td_spill_resuming(s) > 0 : !td_spill_news(s)); i++) {
        if (td_spill_news(s))
            td_spill_poll(s, c, done, arg);
        usleep(1000);
    }
    td_spill_poll(s, c, done, arg);
}

static uint64_t state_hash(const td_v4_seq *q)
{
    size_t len = td_v4_seq_state_size(q), w = 0;
    uint8_t *b = malloc(len);
    TD_CHECK(td_v4_seq_save(q, b, len, &w) == TD_OK);
    uint64_t h = XXH3_64bits(b, w);
    free(b);
    return h;
}

/* Writes q's state (after t[0..n)) through the tier; bytes the tier
 * wrote. *len and *hash: the state's size and XXH3. */
static double spill(td_spill *s, td_pcache *c, td_v4_seq *q, const int32_t *t, int n, size_t *len,
                    uint64_t *hash)
{
    double before = metric(s, "tandem_kv_spill_bytes_total");
    double spills = metric(s, "tandem_kv_spills_total");
    *len = td_v4_seq_state_size(q);
    *hash = state_hash(q);
    TD_CHECK(td_pcache_put(c, q, t, (size_t)n) == TD_OK);  /* too big for memory: to disk */
    for (int i = 0; i < 10000 && metric(s, "tandem_kv_spills_total") == spills; i++) {
        usleep(1000);
        td_spill_poll(s, c, NULL, NULL);
    }
    td_spill_poll(s, c, NULL, NULL);
    return metric(s, "tandem_kv_spill_bytes_total") - before;
}

/* Bytes of the ranges [0, upto) in a state of n tokens. */
static size_t range_bytes(int n, int upto)
{
    td_v4_span sp[2 * TD_V4_MAX_LAYERS];
    int k = td_v4_state_range_spans(M, n, 0, 0, upto, sp);
    size_t b = 0;
    for (int i = 0; i < k; i++)
        b += sp[i].len;
    return b;
}

/* Restores prompt[0..n) from disk; checks the tokens it got, that the
 * state is the one spilled (hash), and with live (the session that was
 * spilled, never stored) that both continue to the same logits. */
static void resumes(td_spill *s, td_pcache *c, const int32_t *prompt, int n, size_t want,
                    uint64_t hash, td_v4_seq *live)
{
    td_v4_seq *q = tm_seq_after(prompt, 0, CAP);
    bool queued = false;
    size_t mem = td_spill_restore_begin(s, c, q, prompt, (size_t)n, q, &queued);
    TD_CHECK_EQ_INT((int)mem, 0);
    done_rec d = {0};
    if (queued)
        wait_idle(s, c, on_done, &d);
    TD_CHECK_EQ_INT((int)d.tokens, (int)want);
    TD_CHECK_EQ_INT((int)td_v4_seq_len(q), (int)want);
    if (want)
        TD_CHECK(state_hash(q) == hash);
    if (want && live) {
        float *a = logits_after(q, prompt, (int)want, n), *b = logits_after(live, prompt, (int)want, n);
        TD_CHECK(!memcmp(a, b, sizeof(float) * (size_t)W->cfg.vocab_size));
        free(a);
        free(b);
    }
    td_v4_seq_destroy(q);
}

static int announced;
static void on_held(void *arg, bool stored, const int32_t *t, size_t n)
{
    (void)arg;
    (void)t;
    (void)n;
    announced += stored;
}

/* Polls until `want` states were announced (bounded), then a little
 * longer: no more may come. */
static void wait_announced(td_spill *s, td_pcache *c, int want)
{
    done_rec d = {0};
    for (int i = 0; i < 10000 && announced < want; i++) {
        td_spill_poll(s, c, on_done, &d);
        usleep(1000);
    }
    for (int i = 0; i < 100; i++) {
        td_spill_poll(s, c, on_done, &d);
        usleep(1000);
    }
}

static void open_tier(td_spill **s, td_pcache **c, const char *dir)
{
    TD_CHECK(td_pcache_create(c, 4096, NULL, NULL) == TD_OK);  /* every state: too big */
    td_spill_opts o = {.dir = dir, .range_tokens = RANGE, .on_held = on_held};
    TD_CHECK(td_spill_create(s, &o, M, *c) == TD_OK && td_spill_up(*s));
}

static void close_tier(td_spill *s, td_pcache *c)
{
    td_spill_destroy(s, c);
    td_pcache_destroy(c);
}

static void ranges_shared_and_resumed(void)
{
    char dir[64];
    tm_tmpdir(dir, sizeof dir);
    td_spill *s;
    td_pcache *c;
    open_tier(&s, &c, dir);
    /* turn 1: 600 tokens, two ranges and a rest; all written */
    size_t len1, len2, len3;
    uint64_t h1, h2, h3;
    td_v4_seq *q = tm_seq_after(toks, 600, CAP);
    double w1 = spill(s, c, q, toks, 600, &len1, &h1);
    TD_CHECK_EQ_INT((long long)w1, (long long)len1);
    /* turn 2 extends it to 850: only the third range and a rest */
    char err[256];
    td_v4_step st = {.seq = q, .tokens = toks + 600, .n = 250};
    TD_CHECK(td_v4_forward(M, &st, 1, err, sizeof err) == TD_OK);
    double w2 = spill(s, c, q, toks, 850, &len2, &h2);
    fprintf(stderr, "  turn 2: %zu-byte state, %.0f bytes written\n", len2, w2);
    TD_CHECK_EQ_INT((long long)w2, (long long)(len2 - range_bytes(850, 512)));
    /* another session, the same first 300 tokens: range 0 shared */
    int32_t other[NTOK];
    memcpy(other, toks, sizeof other);
    other[300] ^= 1;
    td_v4_seq *o = tm_seq_after(other, 700, CAP);
    double w3 = spill(s, c, o, other, 700, &len3, &h3);
    TD_CHECK_EQ_INT((long long)w3, (long long)(len3 - range_bytes(700, 256)));
    TD_CHECK_EQ_INT((int)metric(s, "tandem_kv_spill_errors_total{op=\"spill\",reason=\"io\"}"),
                    0);
    /* each resumes: the state spilled, and it continues as the live one */
    resumes(s, c, toks, NTOK, 850, h2, q);
    resumes(s, c, toks, 700, 600, h1, NULL);
    resumes(s, c, other, 800, 700, h3, NULL);
    td_v4_seq_destroy(q);
    td_v4_seq_destroy(o);
    close_tier(s, c);

    /* the session's second range disappears (say, evicted) */
    announced = 0;
    open_tier(&s, &c, dir);
    wait_announced(s, c, 3);
    TD_CHECK_EQ_INT(announced, 3);
    close_tier(s, c);
    td_kv *kv;
    td_kv_opts ko = {.dir = dir, .fingerprint = td_v4_layout_fingerprint(&W->cfg)};
    TD_CHECK(td_kv_open(&kv, &ko, err, sizeof err) == TD_OK);
    td_kv_key keys[4];
    td_kv_chain(ko.fingerprint, 128, toks, 512, keys, 4);
    TD_CHECK(td_kv_del(kv, keys[3], 0x72000000u | (RANGE / 128) << 8 | 0, err, sizeof err) ==
             TD_OK);
    td_kv_close(kv);
    announced = 0;
    open_tier(&s, &c, dir);
    wait_announced(s, c, 1);
    TD_CHECK_EQ_INT(announced, 1);             /* only the other session's */
    resumes(s, c, toks, NTOK, 0, 0, NULL);     /* a miss, not a fault */
    resumes(s, c, other, 800, 700, h3, NULL);
    TD_CHECK_EQ_INT((int)metric(s, "tandem_kv_resumes_total"), 1);
    TD_CHECK_EQ_INT((int)metric(s, "tandem_kv_spill_errors_total{op=\"resume\",reason=\"corrupt\"}"),
                    0);
    close_tier(s, c);
    tm_rmrf(dir);
}

/* Ranges off (range_tokens < 0): states are written whole, as before. */
static void whole_when_off(void)
{
    char dir[64];
    tm_tmpdir(dir, sizeof dir);
    td_pcache *c;
    TD_CHECK(td_pcache_create(&c, 4096, NULL, NULL) == TD_OK);
    td_spill *s;
    td_spill_opts o = {.dir = dir, .range_tokens = -1};
    TD_CHECK(td_spill_create(&s, &o, M, c) == TD_OK && td_spill_up(s));
    size_t len1, len2;
    uint64_t h1, h2;
    td_v4_seq *q = tm_seq_after(toks, 600, CAP);
    double w1 = spill(s, c, q, toks, 600, &len1, &h1);
    char err[256];
    td_v4_step st = {.seq = q, .tokens = toks + 600, .n = 250};
    TD_CHECK(td_v4_forward(M, &st, 1, err, sizeof err) == TD_OK);
    double w2 = spill(s, c, q, toks, 850, &len2, &h2);
    TD_CHECK_EQ_INT((long long)w1, (long long)len1);
    TD_CHECK_EQ_INT((long long)w2, (long long)len2);
    resumes(s, c, toks, NTOK, 850, h2, NULL);
    td_v4_seq_destroy(q);
    close_tier(s, c);
    tm_rmrf(dir);
}

int main(int argc, char **argv)
{
    static const td_test_case cases[] = {
        {"ranges_shared_and_resumed", ranges_shared_and_resumed},
        {"whole_when_off", whole_when_off},
        {NULL, NULL},
    };
    return tm_main(argc, argv, cases, toks, NTOK);
}
