/* kvstore_resume_bench: resume from the store vs recompute, one sequence.
 *
 *   BUILD/kvstore/kvstore_resume_bench MODEL_DIR STORE_DIR N [threads]
 *
 * Prefills N tokens (recompute: what a session without the store pays on
 * its next turn), saves the state and puts it into a fresh store (spill),
 * closes and reopens the store (a worker restart), then finds the longest
 * stored prefix of the same tokens, gets it and loads it into a fresh
 * sequence (resume), and checks that the next token's logits agree. Prints
 * one line of name=value pairs. STORE_DIR must not hold a store. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"
#include "kvstore/kvstore.h"
#include "model/model.h"
#include "model/state.h"
#include "model/weights.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "kvstore_resume_bench: %s: %s\n", what, err);
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: kvstore_resume_bench MODEL_DIR STORE_DIR N [threads]\n");
        return 2;
    }
    int n = atoi(argv[3]), threads = argc > 4 ? atoi(argv[4]) : 0;
    char err[512];
    td_v4_weights *w;
    td_v4_model *m;
    if (td_v4_weights_load(&w, argv[1], err, sizeof(err)))
        die("weights", err);
    td_kernels_init(-1);
    td_v4_model_opts mo = {.max_rows = 256, .nthreads = threads};
    if (td_v4_model_create(&m, w, &mo, err, sizeof(err)))
        die("model", err);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)(n + 1));
    uint32_t x = 4242;
    for (int i = 0; i <= n; i++) {
        x = x * 1103515245u + 12345u;
        tok[i] = (int32_t)((x >> 8) % (uint32_t)w->cfg.vocab_size);
    }
    size_t V = (size_t)w->cfg.vocab_size;
    float *la = malloc(sizeof(float) * V), *lb = malloc(sizeof(float) * V);
    td_v4_seq *s = NULL, *r = NULL;
    if (td_v4_seq_create(&s, m, n + 1, err, sizeof(err)) || td_v4_seq_create(&r, m, n + 1, err, sizeof(err)))
        die("seq", err);

    double t0 = now_s();
    td_v4_step st = {.seq = s, .tokens = tok, .n = n};
    if (td_v4_forward(m, &st, 1, err, sizeof(err)))
        die("prefill", err);
    double recompute = now_s() - t0;

    uint64_t fp = td_v4_layout_fingerprint(td_v4_model_config(m));
    uint32_t bt = 128;
    int whole = n / (int)bt * (int)bt;   /* state is stored at a block boundary */
    if (whole != n)
        die("N", "must be a multiple of 128");
    td_kv_opts o = {.dir = argv[2], .fingerprint = fp, .create = 1, .block_tokens = bt,
                    .block_bytes = 1u << 20, .queue_depth = 16, .segment_bytes = 1ull << 30,
                    .capacity_bytes = 8ull << 30};
    td_kv *kv;
    if (td_kv_open(&kv, &o, err, sizeof(err)))
        die("open", err);
    size_t bytes = td_v4_seq_state_size(s), wrote = 0;
    uint8_t *buf = malloc(bytes);
    td_kv_key *keys = malloc(sizeof(td_kv_key) * (size_t)(n / (int)bt));
    t0 = now_s();
    if (td_v4_seq_save(s, buf, bytes, &wrote))
        die("save", "buffer");
    size_t nk = td_kv_chain(fp, bt, tok, (size_t)n, keys, (size_t)(n / (int)bt));
    if (td_kv_put(kv, keys[nk - 1], TD_KV_SECTION_STATE, (uint64_t)n, buf, wrote, err, sizeof(err)))
        die("put", err);
    double spill = now_s() - t0;
    td_kv_close(kv);

    o.create = 0;
    if (td_kv_open(&kv, &o, err, sizeof(err)))
        die("reopen", err);
    memset(buf, 0, bytes);
    t0 = now_s();
    uint64_t have;
    td_kv_key key;
    size_t len;
    td_kv_longest_prefix(kv, tok, (size_t)n, TD_KV_SECTION_STATE, &have, &key);
    if (have != (uint64_t)n || td_kv_get(kv, key, TD_KV_SECTION_STATE, buf, bytes, &len, err, sizeof(err)) ||
        td_v4_seq_load(r, buf, len, err, sizeof(err)))
        die("resume", have != (uint64_t)n ? "prefix not found" : err);
    double resume = now_s() - t0;
    td_kv_close(kv);

    td_v4_step sa = {.seq = s, .tokens = tok + n, .n = 1, .logits = la};
    td_v4_step sb = {.seq = r, .tokens = tok + n, .n = 1, .logits = lb};
    if (td_v4_forward(m, &sa, 1, err, sizeof(err)) || td_v4_forward(m, &sb, 1, err, sizeof(err)))
        die("next token", err);
    int same = memcmp(la, lb, sizeof(float) * V) == 0;
    printf("model=%s tokens=%d state_bytes=%zu recompute_s=%.3f spill_s=%.3f resume_s=%.3f "
           "speedup=%.1f next_logits_identical=%s\n",
           argv[1], n, wrote, recompute, spill, resume, recompute / resume, same ? "yes" : "NO");
    free(keys);
    free(buf);
    free(tok);
    free(la);
    free(lb);
    td_v4_seq_destroy(s);
    td_v4_seq_destroy(r);
    td_v4_model_destroy(m);
    td_v4_weights_destroy(w);
    return same ? 0 : 1;
}
