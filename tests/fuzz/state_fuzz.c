/* libFuzzer target for the serialised sequence state (td_v4_seq_load): bytes
 * that arrive from another worker or from disk. Any input must load or fail
 * with a message, never crash; a failed load must leave the sequence as it
 * was, and a state that loads must decode one more token without trouble.
 * Uses models/tiny-v4 (TD_SOURCE_ROOT). Seeds: states of 1, 5 and 17 tokens
 * (tests/fuzz/corpus/state). For inputs of even length the harness rewrites
 * the trailing checksum so mutations reach the checks behind it. */
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
static td_v4_seq *S;

static void setup(void)
{
    char err[512];
    if (td_v4_weights_load(&W, TD_SOURCE_ROOT "/models/tiny-v4", err, sizeof err) ||
        td_v4_model_create(&M, W, &(td_v4_model_opts){.max_rows = 32, .nthreads = 1},
                           err, sizeof err) ||
        td_v4_seq_create(&S, M, 64, err, sizeof err)) {
        fprintf(stderr, "state_fuzz: %s\n", err);
        abort();
    }
    td_kernels_init(-1);
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
    if (td_v4_seq_load(S, buf, size, err, sizeof err) == TD_OK) {
        if (td_v4_seq_len(S) < 64)
            td_v4_forward(M, &st, 1, err, sizeof err);
    } else if (td_v4_seq_len(S) != 1) {
        abort();    /* a failed load changed the sequence */
    }
    free(buf);
    return 0;
}
