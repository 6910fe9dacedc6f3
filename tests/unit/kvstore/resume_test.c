/* Spill and resume through the store on the tiny model: a session's state
 * at its block boundaries is put under the chain keys of its tokens; after
 * the store is closed and reopened (a worker restart), the longest stored
 * prefix of the next prompt is found, read back, loaded into a fresh
 * sequence, and the rest of the prompt plus a greedy continuation must
 * match a session that never left memory bit for bit (logits and tokens).
 * Both ways of reading: td_kv_get then td_v4_seq_load, and
 * td_kv_get_progress feeding td_v4_seq_load_feed while blocks arrive.
 * Usage: kvstore_resume MODEL_DIR */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/model.h"
#include "model/state.h"
#include "model/weights.h"
#include "tests/td_test.h"
#include "tests/unit/kvstore/kvtest.h"

#define BT 128        /* block_tokens */
#define PROMPT 300    /* the resumed prompt: 2 whole blocks + 44 tokens */
#define GEN 8

static const char *model_dir;
static td_v4_weights *W;
static td_v4_model *M;
static int32_t tokens[PROMPT];

static int V(void) { return W->cfg.vocab_size; }

static td_v4_seq *new_seq(void)
{
    td_v4_seq *s = NULL;
    char err[256];
    if (td_v4_seq_create(&s, M, PROMPT + GEN + 8, err, sizeof err)) {
        fprintf(stderr, "seq: %s\n", err);
        exit(1);
    }
    return s;
}

static void forward(td_v4_seq *s, const int32_t *t, int n, float *logits, int all)
{
    char err[256];
    td_v4_step st = {.seq = s, .tokens = t, .n = n, .logits = logits, .all_logits = all};
    if (td_v4_forward(M, &st, 1, err, sizeof err)) {
        fprintf(stderr, "forward: %s\n", err);
        exit(1);
    }
}

static int32_t argmax(const float *l)
{
    int32_t best = 0;
    for (int i = 1; i < V(); i++)
        if (l[i] > l[best])
            best = i;
    return best;
}

/* Feeds the loader from td_kv_get_progress's reports. */
typedef struct {
    td_v4_seq_loader *ld;
    const uint8_t *buf;
    td_err r;
    int calls;
    char err[256];
} feeder;

static void feed(void *arg, size_t k)
{
    feeder *f = arg;
    f->calls++;
    if (!f->r)
        f->r = td_v4_seq_load_feed(f->ld, f->buf, k, f->err, sizeof f->err);
}

/* Streamed resume of (key, section 0) into a fresh sequence. */
static td_v4_seq *get_streamed(td_kv *kv, td_kv_key key, size_t size, int *calls)
{
    char err[512] = "";
    uint8_t *buf = malloc(size);
    td_v4_seq *r = new_seq();
    feeder f = {.buf = buf};
    TD_CHECK_EQ_INT(td_v4_seq_load_begin(&f.ld, r, size), TD_OK);
    size_t len = 0;
    td_err g = td_kv_get_progress(kv, key, TD_KV_SECTION_STATE, buf, size, &len, feed, &f, err,
                                  sizeof(err));
    TD_CHECK_EQ_INT(g, TD_OK);
    TD_CHECK_EQ_INT(f.r, TD_OK);
    if (g || f.r) {
        fprintf(stderr, "streamed resume: %s %s\n", err, f.err);
        td_v4_seq_load_abort(f.ld);
    } else {
        TD_CHECK_EQ_INT(td_v4_seq_load_end(f.ld, err, sizeof(err)), TD_OK);
    }
    *calls = f.calls;
    free(buf);
    return r;
}

/* Prompt positions [from, PROMPT) then GEN greedy steps: the logits of
 * each row, and the generated tokens. */
static float *finish(td_v4_seq *s, int from, int32_t *gen)
{
    int rows = PROMPT - from + GEN;
    float *l = malloc(sizeof(float) * (size_t)rows * V());
    forward(s, tokens + from, PROMPT - from, l, 1);
    float *last = l + (size_t)(PROMPT - from - 1) * V();
    for (int g = 0; g < GEN; g++) {
        gen[g] = argmax(last);
        forward(s, &gen[g], 1, last + V(), 0);
        last += V();
    }
    return l;
}

static void test_resume(void)
{
    uint64_t fp = td_v4_layout_fingerprint(td_v4_model_config(M));
    char dir[256], err[512] = "";
    kvt_dir(dir, sizeof(dir), "s");
    td_kv_opts o = {.dir = dir, .fingerprint = fp, .create = 1, .block_tokens = BT,
                    .block_bytes = 16384, .segment_bytes = 64u << 20, .capacity_bytes = 64u << 20};

    /* The session that never leaves memory. */
    td_v4_seq *ref = new_seq();
    forward(ref, tokens, BT * 2, NULL, 0);
    int32_t ref_gen[GEN];
    float *ref_l = finish(ref, BT * 2, ref_gen);

    /* The spilled one: state saved at each block boundary it crosses. */
    td_kv *kv = NULL;
    TD_CHECK_EQ_INT(td_kv_open(&kv, &o, err, sizeof(err)), TD_OK);
    if (!kv)
        return;
    td_kv_key keys[2];
    TD_CHECK_EQ_INT(td_kv_chain(fp, BT, tokens, BT * 2, keys, 2), 2);
    td_v4_seq *s = new_seq();
    for (int b = 0; b < 2; b++) {
        forward(s, tokens + b * BT, BT, NULL, 0);
        size_t n = td_v4_seq_state_size(s), w = 0;
        uint8_t *buf = malloc(n);
        TD_CHECK_EQ_INT(td_v4_seq_save(s, buf, n, &w), TD_OK);
        TD_CHECK_EQ_INT(td_kv_put(kv, keys[b], TD_KV_SECTION_STATE, (uint64_t)(b + 1) * BT, buf, w,
                                  err, sizeof(err)), TD_OK);
        free(buf);
    }
    td_v4_seq_destroy(s);
    td_kv_close(kv);

    /* Restart: find, read, load, continue. Two blocks in flight, so the
     * streamed read below reports more than once. */
    o.create = 0;
    o.queue_depth = 2;
    TD_CHECK_EQ_INT(td_kv_open(&kv, &o, err, sizeof(err)), TD_OK);
    if (!kv)
        return;
    uint64_t have = 0;
    td_kv_key key;
    TD_CHECK_EQ_INT(td_kv_longest_prefix(kv, tokens, PROMPT, TD_KV_SECTION_STATE, &have, &key), TD_OK);
    TD_CHECK_EQ_INT(have, BT * 2);
    td_kv_entry_info info;
    TD_CHECK_EQ_INT(td_kv_stat_entry(kv, key, TD_KV_SECTION_STATE, &info), TD_OK);
    uint8_t *buf = malloc(info.value_bytes);
    size_t len = 0;
    TD_CHECK_EQ_INT(td_kv_get(kv, key, TD_KV_SECTION_STATE, buf, info.value_bytes, &len, err, sizeof(err)), TD_OK);
    td_v4_seq *r = new_seq();
    TD_CHECK_EQ_INT(td_v4_seq_load(r, buf, len, err, sizeof(err)), TD_OK);
    TD_CHECK_EQ_INT(td_v4_seq_len(r), BT * 2);
    int32_t gen[GEN];
    float *l = finish(r, (int)have, gen);
    size_t rows = (size_t)(PROMPT - BT * 2 + GEN);
    TD_CHECK(memcmp(l, ref_l, sizeof(float) * rows * V()) == 0);
    TD_CHECK(memcmp(gen, ref_gen, sizeof(gen)) == 0);
    /* Streamed: the same continuation, and the state came in more than one
     * report (it spans several 16 KiB blocks). */
    int calls = 0;
    td_v4_seq *r2 = get_streamed(kv, key, info.value_bytes, &calls);
    TD_CHECK_EQ_INT(td_v4_seq_len(r2), BT * 2);
    fprintf(stderr, "  %llu bytes in %u blocks, %d progress reports\n",
            (unsigned long long)info.value_bytes, info.blocks, calls);
    TD_CHECK(info.blocks > 1 && calls > 1);
    float *l2 = finish(r2, (int)have, gen);
    TD_CHECK(memcmp(l2, ref_l, sizeof(float) * rows * V()) == 0);
    TD_CHECK(memcmp(gen, ref_gen, sizeof(gen)) == 0);
    free(l2);
    td_v4_seq_destroy(r2);
    /* A model of another geometry may not open this store. */
    td_kv_close(kv);
    o.fingerprint = fp ^ 1;
    kv = NULL;
    TD_CHECK_EQ_INT(td_kv_open(&kv, &o, err, sizeof(err)), TD_EFORMAT);
    free(buf);
    free(l);
    free(ref_l);
    td_v4_seq_destroy(r);
    td_v4_seq_destroy(ref);
    kvt_cleanup(dir);
}

int main(int argc, char **argv)
{
    model_dir = argc > 1 ? argv[1] : "models/tiny-v4";
    char err[512];
    if (td_v4_weights_load(&W, model_dir, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    td_kernels_init(-1);
    td_v4_model_opts mo = {.max_rows = 64, .nthreads = 2};
    if (td_v4_model_create(&M, W, &mo, err, sizeof err)) {
        fprintf(stderr, "model: %s\n", err);
        return 1;
    }
    uint32_t x = 777;
    for (int i = 0; i < PROMPT; i++) {
        x = x * 1103515245u + 12345u;
        tokens[i] = (int32_t)((x >> 8) % (uint32_t)V());
    }
    static const td_test_case cases[] = {{"resume", test_resume}, {NULL, NULL}};
    char *none[] = {argv[0]};
    int rc = td_test_run(cases, 1, none);
    td_v4_model_destroy(M);
    td_v4_weights_destroy(W);
    return rc;
}
