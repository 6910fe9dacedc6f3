/* libFuzzer target for the serialised sequence state (td_v4_seq_load): bytes
 * that arrive from another worker or from disk. Any input must load or fail
 * with a message, never crash; a failed load must leave the sequence as it
 * was, and a state that loads must decode one more token without trouble.
 * The streamed loader (td_v4_seq_load_begin/feed/end, what a resume from
 * disk uses) gets the same bytes in pieces whose sizes come from the input:
 * it must accept exactly what td_v4_seq_load accepts, load the same
 * sequence (saved back, the same bytes), and leave an empty one on failure.
 * Uses models/tiny-v4 (TD_SOURCE_ROOT). Seeds: states of 1, 5 and 17 tokens
 * (tests/fuzz/corpus/state). For inputs of even length the harness rewrites
 * the trailing checksum so mutations reach the checks behind it. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "model/model.h"
#include "model/state.h"
#include "model/weights.h"

#ifndef TD_SOURCE_ROOT
#define TD_SOURCE_ROOT "."
#endif

static td_v4_weights *W;
static td_v4_model *M;
static td_v4_seq *S, *S2;

static void setup(void)
{
    char err[512];
    if (td_v4_weights_load(&W, TD_SOURCE_ROOT "/models/tiny-v4", err, sizeof err) ||
        td_v4_model_create(&M, W, &(td_v4_model_opts){.max_rows = 32, .nthreads = 1},
                           err, sizeof err) ||
        td_v4_seq_create(&S, M, 64, err, sizeof err) ||
        td_v4_seq_create(&S2, M, 64, err, sizeof err)) {
        fprintf(stderr, "state_fuzz: %s\n", err);
        abort();
    }
    td_kernels_init(-1);
}

/* The same bytes through the streamed loader, fed in steps of 1 + (a byte
 * of the input) * 97 bytes. */
static void streamed(const uint8_t *buf, size_t size, bool want_ok)
{
    char err[256];
    td_v4_seq_loader *ld;
    td_v4_seq_reset(S2);
    if (td_v4_seq_load_begin(&ld, S2, size))
        abort();
    td_err e = TD_OK;
    for (size_t avail = 0, i = 0; avail < size && !e; i++) {
        size_t step = 1 + (size_t)buf[i % size] * 97;
        avail = size - avail < step ? size : avail + step;
        e = td_v4_seq_load_feed(ld, buf, avail, err, sizeof err);
    }
    if (size == 0)
        e = td_v4_seq_load_feed(ld, buf, 0, err, sizeof err);
    e = e ? (td_v4_seq_load_abort(ld), e) : td_v4_seq_load_end(ld, err, sizeof err);
    if ((e == TD_OK) != want_ok)
        abort();    /* the two loaders disagree */
    if (e) {
        if (td_v4_seq_len(S2) != 0)
            abort();    /* a failed streamed load must leave it empty */
        return;
    }
    size_t n = td_v4_seq_state_size(S), w1 = 0, w2 = 0;
    uint8_t *a = malloc(n), *b = malloc(n);
    if (!a || !b || td_v4_seq_state_size(S2) != n || td_v4_seq_save(S, a, n, &w1) ||
        td_v4_seq_save(S2, b, n, &w2) || w1 != w2 || memcmp(a, b, w1))
        abort();    /* loaded differently */
    free(a);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!W)
        setup();
    char err[256];
    td_v4_seq_reset(S);
    int32_t t = 5;
    float logits[512];
    td_v4_step st = {.seq = S, .tokens = &t, .n = 1, .logits = logits};
    td_v4_forward(M, &st, 1, err, sizeof err);
    uint8_t *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    if (size >= 72 && size % 2 == 0) {
        uint64_t h = XXH3_64bits(buf, size - 8);
        for (int i = 0; i < 8; i++)
            buf[size - 8 + i] = (uint8_t)(h >> (8 * i));
    }
    bool ok = td_v4_seq_load(S, buf, size, err, sizeof err) == TD_OK;
    if (!ok && td_v4_seq_len(S) != 1)
        abort();    /* a failed load changed the sequence */
    streamed(buf, size, ok);
    if (ok && td_v4_seq_len(S) < 64)
        td_v4_forward(M, &st, 1, err, sizeof err);
    free(buf);
    return 0;
}
