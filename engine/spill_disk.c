/* The disk tier's work on the stores, run by the KV thread (spill.c):
 * index records, writing a state, finding and loading the longest one a
 * prompt continues, peer stores. The scheme is in spill.h and
 * docs/kvstore.md ("The disk tier"). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xxhash.h>

#include "common/log.h"
#include "engine/spill_index.h"
#include "engine/spill_internal.h"
#include "model/state.h"

enum {
    IDX_CAP = TD_SPILL_IDX_CAP,
    MAX_TAILS = TD_SPILL_IDX_MAX_STATES,
    MAX_TAIL = SPILL_MAX_TAIL,   /* block_tokens of the store is 128 */
    MAX_PROBES = 8,              /* block prefixes tried per lookup */
};

typedef td_spill_index_entry ient;

const char *const td_spill_reason_name[NREASONS] = {"corrupt", "format", "nospc", "io", "other"};
const char *const td_spill_op_name[NOPS] = {"open", "spill", "resume"};

static int reason_of(td_err e)
{
    switch (e) {
    case TD_ECORRUPT: return R_CORRUPT;
    case TD_EFORMAT: return R_FORMAT;
    case TD_ENOSPC: return R_NOSPC;
    case TD_EIO: case TD_EBUSY: case TD_ENOENT: return R_IO;
    default: return R_OTHER;
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void td_spill_publish(td_spill *s)
{
    if (s->kv)
        td_kv_stats_get(s->kv, &s->c.kv);
    pthread_mutex_lock(&s->mu);
    s->pub = s->c;
    pthread_mutex_unlock(&s->mu);
}

/* Counts a failure; the first of each kind is an ERROR with the whole
 * message, later ones a WARN (they are in the metrics either way). */
static void failed(td_spill *s, int op, td_err e, const char *msg)
{
    int r = reason_of(e);
    s->c.failures[op][r]++;
    static const char *const then[NOPS] = {"", " (the state stays in memory, or is dropped)",
                                        " (the prompt is prefilled instead)"};
    td_log(s->logged[op][r] ? TD_LOG_WARN : TD_LOG_ERROR, "kv spill: %s failed (%s)%s: %s",
           td_spill_op_name[op], td_strerror(e), then[op], msg && msg[0] ? msg : td_strerror(e));
    s->logged[op][r] = true;
}

/* The store prices a state by the prefill it saves: n + n^2 / knee token
 * equivalents, the knee where the CSA indexer's per-token work (it scores
 * n/4 compressed entries with index_n_heads x index_head_dim each) equals
 * the rest of the forward pass (~ the active parameters per token). An
 * estimate from the geometry (attention, indexer, routed + shared experts,
 * the output head); the tiny model gives ~12K where its measured prefill
 * times fit 16K (docs/kvstore.md), V4-Flash ~6M: nearly linear. */
static uint32_t knee_tokens(const td_v4_config *c)
{
    double per_layer = (double)c->dim * c->q_lora_rank +
                       (double)c->q_lora_rank * c->n_heads * c->head_dim +
                       (double)c->dim * c->head_dim +
                       (double)c->n_heads * c->head_dim * c->o_lora_rank +
                       (double)c->o_groups * c->o_lora_rank * c->dim +
                       3.0 * c->dim * c->moe_inter_dim * (c->n_activated_experts + c->n_shared_experts) +
                       (double)c->q_lora_rank * c->index_n_heads * c->index_head_dim +
                       (double)c->dim * c->index_head_dim;
    double active = per_layer * c->n_layers + (double)c->vocab_size * c->dim;
    double knee = 4.0 * active / ((double)(c->index_n_heads ? c->index_n_heads : 1) *
                                  (c->index_head_dim ? c->index_head_dim : 1));
    return knee < 1024 ? 1024 : knee > 2e9 ? 2000000000u : (uint32_t)knee;
}

/* The store evicted e for room (inside a put, on the KV thread): noted,
 * and dealt with once the put returns (the store may not be called now). */
static void on_evict(void *arg, const td_kv_entry_info *e)
{
    td_spill *s = arg;
    /* A range's piece is not told: the states made of it fail their next
     * lookup (a stale router placement, slower but not wrong). */
    if (e->section != TD_KV_SECTION_STATE && e->section != SPILL_SECTION_REST &&
        e->section != SPILL_SECTION_INDEX)
        return;
    if (s->nevicted == s->cap_evicted) {
        size_t nc = s->cap_evicted ? 2 * s->cap_evicted : 16;
        td_kv_entry_info *v = realloc(s->evicted, nc * sizeof *v);
        if (!v)
            return;  /* the router keeps a stale view: a placement that recomputes */
        s->evicted = v;
        s->cap_evicted = nc;
    }
    s->evicted[s->nevicted++] = *e;
}

/* Opens our store and notes the peers'; a store that cannot be opened is
 * logged and counted and leaves s->kv NULL (the tier is off). */
td_err td_spill_open_store(td_spill *s, const td_spill_opts *o)
{
    if (!(s->idx_old = malloc(IDX_CAP)) || !(s->idx_rec = malloc(IDX_CAP)))
        return TD_ENOMEM;
    td_kv_opts ko = {.dir = o->dir, .fingerprint = s->fingerprint, .create = 1,
                     .capacity_bytes = o->capacity_bytes,
                     .cost_knee_tokens = knee_tokens(td_v4_model_config(s->m)),
                     .on_evict = on_evict, .on_evict_arg = s};
    char err[512] = "";
    td_err e = td_kv_open(&s->kv, &ko, err, sizeof err);
    if (e) {
        s->kv = NULL;
        failed(s, OP_OPEN, e, err);
        td_log(TD_LOG_ERROR, "kv spill: store %s unusable: serving without the disk tier",
               o->dir);
    } else {
        td_kv_stats st;
        td_kv_stats_get(s->kv, &st);
        s->bt = st.block_tokens;
        if (s->bt > MAX_TAIL) {
            failed(s, OP_OPEN, TD_EFORMAT, "the store's blocks are longer than 128 tokens");
            td_kv_close(s->kv);
            s->kv = NULL;
        }
        td_v4_span spans[2 * TD_V4_MAX_LAYERS];
        if (s->range_tokens && (s->range_tokens % s->bt ||
                                td_v4_state_range_spans(s->m, s->range_tokens, 0, 0,
                                                        s->range_tokens, spans) <= 0)) {
            td_log(TD_LOG_ERROR, "kv spill: token ranges of %u do not fit blocks of %u tokens "
                   "and this model's compression: states are filed whole", s->range_tokens,
                   s->bt);
            s->range_tokens = 0;
        }
        td_log(TD_LOG_INFO, "kv spill: store %s: %llu entries, %llu of %llu bytes used", o->dir,
               (unsigned long long)st.entries, (unsigned long long)st.bytes_used,
               (unsigned long long)st.capacity_bytes);
    }
    /* peers: a comma-separated list of other workers' store directories */
    for (const char *p = o->peers; p && *p && s->npeers < MAX_PEERS;) {
        size_t k = strcspn(p, ",");
        if (k && k < sizeof s->peers[0].dir) {
            snprintf(s->peers[s->npeers].dir, sizeof s->peers[0].dir, "%.*s", (int)k, p);
            if (strcmp(s->peers[s->npeers].dir, s->dir))
                s->npeers++;
        }
        p += k + (p[k] == ',');
    }
    td_spill_publish(s);
    return TD_OK;
}

void td_spill_close_stores(td_spill *s)
{
    td_kv_close(s->kv);
    s->kv = NULL;
    for (int i = 0; i < s->npeers; i++)
        td_kv_close(s->peers[i].kv);
    free(s->keys);
    free(s->evicted);
    free(s->announce.keys);  /* stopped before all were announced */
    free(s->idx_old);
    free(s->idx_rec);
}

/* Chain keys of tokens[0..n)'s whole blocks into s->keys; how many. */
static size_t chain(td_spill *s, const int32_t *tokens, size_t n)
{
    size_t nb = n / s->bt;
    if (nb > s->nkeys) {
        td_kv_key *k = realloc(s->keys, nb * sizeof *k);
        if (!k)
            return 0;
        s->keys = k;
        s->nkeys = nb;
    }
    return td_kv_chain(s->fingerprint, s->bt, tokens, n, s->keys, nb);
}

/* td_kv_foreach: lists the keys of the entries in l->section. */
static int collect_keys(const td_kv_entry_info *e, void *arg)
{
    spill_keylist *l = arg;
    if (e->section != l->section)
        return 0;
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 64;
        td_kv_key *k = realloc(l->keys, nc * sizeof *k);
        if (!k) {
            l->oom = true;
            return 1;
        }
        l->keys = k;
        l->cap = nc;
    }
    l->keys[l->n++] = e->key;
    return 0;
}

static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }  /* little-endian hosts */
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

/* Reads and parses the index record at key into buf / ents. *n = 0 if
 * there is none; TD_ECORRUPT if it is malformed. */
static td_err read_index(td_spill *s, td_kv *kv, const char *dir, td_kv_key key, uint8_t *buf,
                         ient *ents, size_t *n, char *err, size_t errlen)
{
    size_t len = 0;
    *n = 0;
    td_err e = td_kv_get(kv, key, SPILL_SECTION_INDEX, buf, IDX_CAP, &len, err, errlen);
    if (e == TD_ENOENT)
        return TD_OK;
    if (e)
        return e;
    if (td_spill_index_parse(buf, len, s->bt, ents, n))
        return td_errf(err, errlen, TD_ECORRUPT, "kv spill: %s: malformed index record", dir);
    return TD_OK;
}

/* The key a state is filed under: the block key and the tail, hashed with
 * the model's fingerprint (128 bits, like the chain). */
static td_kv_key tail_key(const td_spill *s, td_kv_key block, const int32_t *tail, uint32_t n)
{
    uint8_t buf[20 + MAX_TAIL * 4];
    put64(buf, block.lo);
    put64(buf + 8, block.hi);
    put32(buf + 16, n);
    memcpy(buf + 20, tail, (size_t)n * 4);
    XXH128_hash_t h = XXH3_128bits_withSeed(buf, 20 + (size_t)n * 4,
                                            s->fingerprint ^ 0x7370696c6c746c31ull);
    return (td_kv_key){h.low64, h.high64};
}

/* The token ids filed with the state at key (malloc'd; NULL if absent or
 * unreadable), *n their count. */
static int32_t *read_tokens(td_spill *s, td_kv_key key, size_t *n)
{
    td_kv_entry_info info;
    char err[256];
    if (td_kv_stat_entry(s->kv, key, SPILL_SECTION_TOKENS, &info) ||
        info.value_bytes != info.tokens * sizeof(int32_t) || !info.tokens)
        return NULL;
    int32_t *t = malloc(info.value_bytes);
    size_t len = 0;
    if (t && td_kv_get(s->kv, key, SPILL_SECTION_TOKENS, t, info.value_bytes, &len, err,
                       sizeof err) == TD_OK && len == info.value_bytes) {
        *n = info.tokens;
        return t;
    }
    free(t);
    return NULL;
}

static void prune_index(td_spill *s, td_kv_key key, const int32_t *t, size_t n);

/* Deletes the state at key and its tokens, and tells the engine (the
 * router was told it is held); prune: its block's index still names it. */
static void drop_state(td_spill *s, td_kv_key key, bool prune)
{
    char err[256];
    size_t n = 0;
    int32_t *t = read_tokens(s, key, &n);
    td_kv_del(s->kv, key, TD_KV_SECTION_STATE, err, sizeof err);
    td_kv_del(s->kv, key, SPILL_SECTION_REST, err, sizeof err);  /* its ranges may be shared */
    td_kv_del(s->kv, key, SPILL_SECTION_TOKENS, err, sizeof err);
    s->dirty = true;
    if (t && prune)
        prune_index(s, key, t, n);
    if (t && s->on_held)
        td_spill_notice(s, t, n, false);
    else
        free(t);
}

/* Takes the state at key (tokens t[0..n)) out of its block's index
 * record, so that no record names states that are gone: rewritten without
 * it, priced with the states it still names, or deleted (and the engine's
 * set told) when it named nothing else. Any failure leaves the record as
 * it was: a lookup that finds the entry then misses, as before. */
static void prune_index(td_spill *s, td_kv_key key, const int32_t *t, size_t n)
{
    size_t nb = chain(s, t, n);
    if (nb == 0)
        return;
    td_kv_key block = s->keys[nb - 1];
    ient ents[MAX_TAILS];
    size_t ne = 0, kept = 0, off = TD_SPILL_IDX_HEADER;
    char err[256];
    if (read_index(s, s->kv, s->dir, block, s->idx_rec, ents, &ne, err, sizeof err) || !ne)
        return;
    uint8_t out[IDX_CAP];
    td_kv_item it[1 + MAX_TAILS];
    for (size_t i = 0; i < ne; i++) {
        if (ents[i].key.lo == key.lo && ents[i].key.hi == key.hi)
            continue;
        off += td_spill_index_entry_write(out + off, &ents[i]);
        it[1 + kept++] = (td_kv_item){.key = ents[i].key, .keep = 1,
                                      .section = ents[i].range ? SPILL_SECTION_REST
                                                               : TD_KV_SECTION_STATE};
    }
    if (kept == ne)
        return;
    if (!kept) {
        if (td_kv_del(s->kv, block, SPILL_SECTION_INDEX, err, sizeof err) == TD_OK)
            td_spill_unindex(s, block);
        return;
    }
    td_spill_index_header_write(out, (uint32_t)kept);
    it[0] = (td_kv_item){.key = block, .section = SPILL_SECTION_INDEX,
                         .tokens = (uint64_t)nb * s->bt, .value = out, .len = off};
    td_kv_put_many(s->kv, it, 1 + kept, err, sizeof err);  /* evictions: evicted() goes on */
}

/* Whether kv holds all of the state x names (keys: the chain of its
 * tokens' blocks, for a state in ranges). */
static bool on_disk(td_spill *s, td_kv *kv, const td_kv_key *keys, const ient *x)
{
    if (x->range)
        return td_spill_ranges_present(s, kv, keys, x->tokens, x->range, x->state_len, x->key);
    td_kv_entry_info info;
    return td_kv_stat_entry(kv, x->key, TD_KV_SECTION_STATE, &info) == TD_OK &&
           info.value_bytes == x->state_len && info.tokens == x->tokens;
}

/* After a put: what the store evicted for room. A state's token ids are
 * read (if the same eviction did not take them too) to tell the router it
 * is gone, then deleted, and its block's index pruned; an index's block key
 * leaves the engine's set. */
static void evicted(td_spill *s)
{
    /* A pruned index is a put, which may evict more: the list grows (and
     * moves) while it is walked. */
    for (size_t i = 0; i < s->nevicted; i++) {
        td_kv_entry_info e = s->evicted[i];
        if (e.section == SPILL_SECTION_INDEX)
            td_spill_unindex(s, e.key);
        else
            drop_state(s, e.key, true);
    }
    s->nevicted = 0;
}

td_err td_spill_disk_put(td_spill *s, const int32_t *tokens, size_t n, const void *state,
                         size_t len, td_kv_key *block_out)
{
    if (!s->kv || n < s->bt || len < 8)
        return TD_ENOTSUP;  /* not worth a disk write: it stays, or goes, in memory */
    double t0 = now_s();
    size_t nb = chain(s, tokens, n);
    if (nb == 0)
        return TD_ENOMEM;
    td_kv_key block = s->keys[nb - 1];
    *block_out = block;
    size_t base = nb * s->bt;
    ient me = {.tokens = n, .ntail = (uint32_t)(n - base), .state_len = len,
               .sum = spill_state_sum(state, len),  /* the state's own XXH3 */
               .range = td_spill_ranges_apply(s, n, len) ? s->range_tokens : 0,
               .tail = (const uint8_t *)(tokens + base)};
    me.key = tail_key(s, block, tokens + base, me.ntail);
    uint8_t *old = s->idx_old, *rec = s->idx_rec;
    ient ents[MAX_TAILS];
    size_t nents = 0;
    char err[512] = "";
    if (read_index(s, s->kv, s->dir, block, old, ents, &nents, err, sizeof err))
        nents = 0;  /* unreadable: the new index replaces it */
    /* The same tokens on disk already: the same bytes (a state depends on
     * its tokens only), so do not write them again. */
    for (size_t i = 0; i < nents; i++)
        if (ents[i].tokens == n && ents[i].sum == me.sum && ents[i].state_len == len &&
            !memcmp(ents[i].tail, me.tail, (size_t)me.ntail * 4) &&
            ents[i].key.lo == me.key.lo && ents[i].key.hi == me.key.hi &&
            on_disk(s, s->kv, s->keys, &ents[i])) {
            s->c.spill_skipped++;
            td_spill_publish(s);
            return TD_OK;
        }
    /* This state first, then the others of the block; the oldest beyond
     * MAX_TAILS are deleted once the new index is durable. */
    size_t off = TD_SPILL_IDX_HEADER, kept = 1;
    off += td_spill_index_entry_write(rec + off, &me);
    ient gone[MAX_TAILS];
    size_t ngone = 0;
    for (size_t i = 0; i < nents; i++) {
        if (ents[i].key.lo == me.key.lo && ents[i].key.hi == me.key.hi)
            continue;  /* replaced */
        if (kept == MAX_TAILS) {
            gone[ngone++] = ents[i];
            continue;
        }
        off += td_spill_index_entry_write(rec + off, &ents[i]);
        kept++;
    }
    td_spill_index_header_write(rec, (uint32_t)kept);
    /* The state (whole, or its ranges and rest) first: a crash inside the
     * log write keeps a prefix of the items, and a state no index names is
     * never used (eviction reclaims it). */
    td_kv_item three[3], *it = three;
    size_t ni = 1, written = len;
    uint8_t *rest = NULL;
    three[0] = (td_kv_item){.key = me.key, .section = TD_KV_SECTION_STATE, .tokens = n,
                            .value = state, .len = len};
    td_err e = TD_OK;
    if (me.range)
        e = td_spill_ranges_items(s, s->keys, n, state, len, me.key, 2, &it, &ni, &rest,
                                  &written);
    if (!e) {
        it[ni++] = (td_kv_item){.key = me.key, .section = SPILL_SECTION_TOKENS, .tokens = n,
                                .value = tokens, .len = n * sizeof *tokens};
        it[ni++] = (td_kv_item){.key = block, .section = SPILL_SECTION_INDEX, .tokens = base,
                                .value = rec, .len = off};
        err[0] = '\0';
        e = td_kv_put_many(s->kv, it, ni, err, sizeof err);
    } else {
        snprintf(err, sizeof err, "kv spill: no memory to file a %zu-byte state in ranges", len);
    }
    if (it != three)
        free(it);
    free(rest);
    evicted(s);
    if (e) {
        failed(s, OP_SPILL, e, err);
    } else {
        for (size_t i = 0; i < ngone; i++)
            drop_state(s, gone[i].key, false);  /* the new index left it out */
        s->c.spills++;
        s->c.spill_bytes += written;
        double dt = now_s() - t0;
        td_prom_observe(&s->c.spill_s, dt);
        td_log(TD_LOG_INFO, "kv spill: %zu tokens (%zu bytes, %zu written) to disk in %.1f ms",
               n, len, written, dt * 1000);
    }
    td_spill_publish(s);
    return e;
}

/* Loads the state x names into seq. TD_ENOENT if the store no longer has
 * it (evicted: not a fault); TD_ECORRUPT if it is not the one x names. */
/* The streamed load: each verified prefix the store reports goes into
 * the sequence while the later blocks are still being read. */
typedef struct {
    td_v4_seq_loader *ld;
    const uint8_t *buf;
    td_err e;                    /* the first feed that failed (final) */
    char err[256];
} feeder;

static void feed(void *arg, size_t k)
{
    feeder *f = arg;
    if (!f->e)
        f->e = td_v4_seq_load_feed(f->ld, f->buf, k, f->err, sizeof f->err);
}

/* Loads the state x names into seq, as it is read. TD_ENOENT if the store
 * no longer has it (evicted: not a fault); TD_ECORRUPT if it is not the one
 * x names. *reset: the failure left seq empty (a streamed load touches seq
 * before the last byte is verified). */
static td_err load_state(td_spill *s, td_kv *kv, const char *dir, td_v4_seq *seq,
                         const int32_t *prompt, const ient *x, int *reset, char *err,
                         size_t errlen)
{
    if (x->range) {
        /* its ranges are named by the chain of the prompt, which begins
         * with the state's tokens */
        if (chain(s, prompt, x->tokens) != x->tokens / s->bt)
            return td_errf(err, errlen, TD_ENOMEM, "kv spill: out of memory for chain keys");
        return td_spill_ranges_load(s, kv, dir, seq, s->keys, x->tokens, x->range, x->key,
                                    x->state_len, x->sum, reset, err, errlen);
    }
    td_kv_entry_info info;
    if (td_kv_stat_entry(kv, x->key, TD_KV_SECTION_STATE, &info) != TD_OK)
        return TD_ENOENT;
    if (info.value_bytes != x->state_len || info.tokens != x->tokens || x->state_len < 8)
        return td_errf(err, errlen, TD_ECORRUPT, "kv spill: %s: the state at %llu tokens is "
                       "not the one its index names", dir, (unsigned long long)x->tokens);
    uint8_t *buf = malloc(x->state_len);
    feeder f = {.buf = buf};
    if (!buf || td_v4_seq_load_begin(&f.ld, seq, x->state_len)) {
        free(buf);
        return td_errf(err, errlen, TD_ENOMEM, "kv spill: out of memory for a %llu-byte state",
                       (unsigned long long)x->state_len);
    }
    size_t len = 0;
    td_err e = td_kv_get_progress(kv, x->key, TD_KV_SECTION_STATE, buf, x->state_len, &len,
                                  feed, &f, err, errlen);
    if (!e && (len != x->state_len || spill_state_sum(buf, len) != x->sum))
        e = td_errf(err, errlen, TD_ECORRUPT, "kv spill: %s: the state at %llu tokens is not "
                    "the one its index names", dir, (unsigned long long)x->tokens);
    if (!e && f.e)
        e = td_errf(err, errlen, f.e, "%s", f.err);
    if (e)
        td_v4_seq_load_abort(f.ld);
    else
        e = td_v4_seq_load_end(f.ld, err, errlen);
    free(buf);
    if (!e && td_v4_seq_len(seq) != (int64_t)x->tokens) {
        td_v4_seq_reset(seq);
        e = td_errf(err, errlen, TD_ECORRUPT, "kv spill: %s: a state of another length "
                    "filed as %llu tokens", dir, (unsigned long long)x->tokens);
    }
    *reset = e != TD_OK;
    return e;
}

/* The disk part of td_spill_restore: a state longer than min_tokens, from
 * kv (this worker's store, or a peer's: whose entries are not ours to
 * delete when they fail their checks). */
static size_t restore_disk(td_spill *s, td_kv *kv, const char *dir, td_v4_seq *seq,
                           const int32_t *prompt, size_t n, size_t min_tokens, int *reset)
{
    *reset = 0;
    if (!kv || n <= s->bt)
        return 0;
    bool own = kv == s->kv;
    double t0 = now_s();
    size_t limit = n - 1, got = 0;  /* one token must remain, for the logits */
    uint8_t *rec = s->idx_old;
    ient ents[MAX_TAILS];
    char err[512];
    for (int probe = 0; probe < MAX_PROBES && !got && !*reset && limit >= s->bt &&
                        limit > min_tokens; probe++) {
        uint64_t have = 0;
        td_kv_key block;
        if (td_kv_longest_prefix(kv, prompt, limit, SPILL_SECTION_INDEX, &have, &block) ||
            have == 0 || have + s->bt <= min_tokens + 1)
            break;  /* nothing, or nothing that beats what memory gave */
        size_t nents = 0;
        err[0] = '\0';
        td_err e = read_index(s, kv, dir, block, rec, ents, &nents, err, sizeof err);
        if (e) {
            failed(s, OP_RESUME, e, err);
            if (own)
                td_kv_del(kv, block, SPILL_SECTION_INDEX, err, sizeof err);
        }
        /* The longest state here that the prompt continues, then shorter. */
        bool tried[MAX_TAILS] = {0};
        for (;;) {
            ient *best = NULL;
            for (size_t i = 0; i < nents; i++) {
                ient *x = &ents[i];
                if (!tried[i] && x->tokens < n && x->tokens > min_tokens &&
                    x->tokens == have + x->ntail &&
                    !memcmp(x->tail, prompt + have, (size_t)x->ntail * 4) &&
                    (!best || x->tokens > best->tokens))
                    best = x;
            }
            if (!best)
                break;
            tried[best - ents] = true;
            err[0] = '\0';
            e = load_state(s, kv, dir, seq, prompt, best, reset, err, sizeof err);
            if (!e) {
                got = best->tokens;
                break;
            }
            if (e != TD_ENOENT) {
                failed(s, OP_RESUME, e, err);
                if (e != TD_ENOMEM && own) {
                    drop_state(s, best->key, true);
                    evicted(s);  /* what the pruned index's put evicted */
                }
            }
            if (*reset)
                break;
        }
        limit = (size_t)have - 1;  /* the next shorter block prefix */
    }
    if (got) {
        s->c.resumes += own;
        s->c.resume_tokens += own ? got : 0;
        s->c.peer_resumes += !own;
        s->c.peer_resume_tokens += own ? 0 : got;
        double dt = now_s() - t0;
        td_prom_observe(&s->c.resume_s, dt);
        td_log(TD_LOG_INFO, "kv spill: resumed %zu of %zu prompt tokens from %s in %.1f ms",
               got, n, own ? "disk" : dir, dt * 1000);
    } else if (own) {
        s->c.resume_misses++;
    }
    td_spill_publish(s);
    return got;
}

/* A peer's store, opened (again) when it changed since we read it: the
 * owner spills and evicts while we look. An open that fails (the peer has
 * not created its store yet, another model's store) is retried a second
 * later, and logged once. */
/* Tells the engine thread what a peer's store holds as just read (nothing,
 * if it could not be opened), so a prompt it cannot continue is answered
 * without the KV thread while that store does not change. */
static void publish_view(td_spill *s, spill_peer *p, const td_kv_manifest_id *failed_at)
{
    spill_keylist v = {.section = SPILL_SECTION_INDEX};
    td_kv_manifest_id id = *failed_at;
    if (p->kv) {
        td_kv_foreach(p->kv, collect_keys, &v);
        td_kv_manifest_id_of(p->kv, &id);
    }
    if (v.oom || (!p->kv && p->told && td_kv_manifest_id_eq(&id, &p->shown))) {
        free(v.keys);  /* no memory: the engine thread keeps asking; or nothing new */
        return;
    }
    p->shown = id;
    p->told = true;
    td_spill_peer_view(s, (int)(p - s->peers), v.keys, v.n, &id);
}

static td_kv *peer_kv(td_spill *s, spill_peer *p)
{
    if (p->kv && !td_kv_stale(p->kv))
        return p->kv;
    double now = now_s();
    if (!p->kv && p->failed_s && now - p->failed_s < 1.0)
        return NULL;
    td_kv_close(p->kv);
    p->kv = NULL;
    /* before the attempt: a store that appears meanwhile has another id */
    td_kv_manifest_id before;
    td_kv_manifest_id_at(p->dir, &before);
    td_kv_opts ko = {.dir = p->dir, .fingerprint = s->fingerprint, .peer = 1};
    char err[512] = "";
    td_err e = td_kv_open(&p->kv, &ko, err, sizeof err);
    td_kv_stats st;
    if (!e) {
        td_kv_stats_get(p->kv, &st);
        if (st.block_tokens != s->bt)
            e = td_errf(err, sizeof err, TD_EFORMAT, "kvstore: %s: blocks of %u tokens, ours "
                        "of %u", p->dir, st.block_tokens, s->bt);
    }
    if (e) {
        td_kv_close(p->kv);
        p->kv = NULL;
        p->failed_s = now;
        if (!p->logged)
            td_log(TD_LOG_WARN, "kv spill: peer store %s not readable (retried): %s", p->dir,
                   err);
        p->logged = true;
        publish_view(s, p, &before);
        return NULL;
    }
    p->failed_s = 0;
    p->logged = false;
    publish_view(s, p, &before);
    return p->kv;
}

void td_spill_disk_look_at_peers(td_spill *s)
{
    for (int i = 0; i < s->npeers; i++)
        peer_kv(s, &s->peers[i]);
}

size_t td_spill_disk_restore(td_spill *s, td_v4_seq *seq, const int32_t *prompt, size_t n,
                             size_t min, int *reset)
{
    size_t got = 0;
    *reset = 0;
    if (s->kv)
        got = restore_disk(s, s->kv, s->dir, seq, prompt, n, min, reset);
    for (int i = 0; i < s->npeers && !*reset; i++) {
        size_t d = restore_disk(s, peer_kv(s, &s->peers[i]), s->peers[i].dir, seq, prompt, n,
                                got > min ? got : min, reset);
        if (d)
            got = d;
    }
    return *reset ? 0 : got;
}

/* ---- announcing what the store holds, at start -------------------------- */

/* A state is announced only if a lookup can find it: its entry is there
 * and its block's index names it (a crash can keep a state whose index
 * write was lost). */
static bool findable(td_spill *s, td_kv_key key, const int32_t *t, size_t n)
{
    size_t nb = chain(s, t, n);
    if (nb == 0)
        return false;
    ient ents[MAX_TAILS];
    size_t nents = 0;
    char err[256];
    if (read_index(s, s->kv, s->dir, s->keys[nb - 1], s->idx_old, ents, &nents, err,
                   sizeof err))
        return false;
    for (size_t i = 0; i < nents; i++)
        if (ents[i].key.lo == key.lo && ents[i].key.hi == key.hi && ents[i].tokens == n)
            return on_disk(s, s->kv, s->keys, &ents[i]);
    return false;
}

void td_spill_disk_announce_begin(td_spill *s)
{
    s->announce = (spill_keylist){.section = SPILL_SECTION_TOKENS};
    if (s->kv)  /* least recently used first; short of memory: what we have */
        td_kv_foreach(s->kv, collect_keys, &s->announce);
    s->announce_told = 0;
}

bool td_spill_disk_announce_some(td_spill *s, size_t max)
{
    spill_keylist *l = &s->announce;
    for (; l->done < l->n && max > 0; l->done++, max--) {
        size_t n = 0;
        int32_t *t = read_tokens(s, l->keys[l->done], &n);
        if (t && findable(s, l->keys[l->done], t, n)) {
            td_spill_notice(s, t, n, true);
            s->announce_told++;
        } else {
            free(t);
        }
    }
    if (l->done < l->n)
        return true;
    if (l->n)
        td_log(TD_LOG_INFO, "kv spill: %zu states on disk announced", s->announce_told);
    free(l->keys);
    *l = (spill_keylist){0};
    td_spill_publish(s);
    return false;
}
