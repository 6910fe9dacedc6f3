/* What the engine's unit tests share: the tiny model, loaded once by
 * tm_main; sequences that have processed a prompt; scratch directories. */
#ifndef TD_TESTS_ENGINE_TINY_MODEL_H
#define TD_TESTS_ENGINE_TINY_MODEL_H

#include <stdio.h>
#include <stdlib.h>

#include "model/model.h"
#include "model/weights.h"
#include "tests/td_test.h"

static td_v4_weights *W __attribute__((unused));
static td_v4_model *M __attribute__((unused));

/* A sequence of capacity cap that has processed t[0..n). */
static inline td_v4_seq *tm_seq_after(const int32_t *t, int n, int cap)
{
    td_v4_seq *s = NULL;
    char err[256];
    TD_CHECK(td_v4_seq_create(&s, M, cap, err, sizeof err) == TD_OK);
    if (n) {
        td_v4_step st = {.seq = s, .tokens = t, .n = n};
        TD_CHECK(td_v4_forward(M, &st, 1, err, sizeof err) == TD_OK);
    }
    return s;
}

/* Loads the model at argv[1], fills toks[0..ntok) with a fixed pattern
 * inside the vocabulary, runs the case argv[2] names (all if none). */
static inline int tm_main(int argc, char **argv, const td_test_case *cases, int32_t *toks,
                          int ntok)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [case]\n", argv[0]);
        return 2;
    }
    char err[256];
    td_v4_model_opts mo = {.nthreads = 1};
    if (td_v4_weights_load(&W, argv[1], err, sizeof err) ||
        td_v4_model_create(&M, W, &mo, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    for (int i = 0; i < ntok; i++)
        toks[i] = (int32_t)((i * 37 + 11) % W->cfg.vocab_size);
    int rc = td_test_run(cases, argc - 1, argv + 1);
    td_v4_model_destroy(M);
    td_v4_weights_destroy(W);
    return rc;
}

/* What td_spill_poll reported of a restore: its tag and tokens, and how
 * many were reported. */
typedef struct {
    void *tag;
    size_t tokens;
    int calls;
} done_rec;

static inline void on_done(void *arg, void *tag, size_t tokens)
{
    done_rec *d = arg;
    d->tag = tag;
    d->tokens = tokens;
    d->calls++;
}

static inline void tm_tmpdir(char *dir, size_t cap)
{
    snprintf(dir, cap, "/tmp/tandem-engine-test-XXXXXX");
    TD_CHECK(mkdtemp(dir) != NULL);
}

static inline void tm_rmrf(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    TD_CHECK(system(cmd) == 0);
}

#endif
