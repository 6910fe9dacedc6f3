/* The V4 forward pass: prefill (one-shot or chunked) and decode over the
 * same per-sequence state, for many sequences in one call.
 *
 * Every row (token) is computed by the same code whatever else shares the
 * call (docs/numerics.md), so decode logits equal prefill logits bit for
 * bit and the chunk size never changes a result.
 */
#ifndef TD_MODEL_MODEL_H
#define TD_MODEL_MODEL_H

#include <stdint.h>

#include "common/err.h"
#include "model/weights.h"

typedef struct td_v4_model td_v4_model;
typedef struct td_v4_seq td_v4_seq;

typedef struct {
    int max_rows;   /* tokens per internal step (chunk size); 0 = 256 */
    int nthreads;   /* 0 = one per CPU */
} td_v4_model_opts;

/* Borrows w (must outlive the model). Allocates all scratch up front. */
td_err td_v4_model_create(td_v4_model **out, const td_v4_weights *w,
                          const td_v4_model_opts *opts, char *err, size_t errlen);
void   td_v4_model_destroy(td_v4_model *m);
const td_v4_config *td_v4_model_config(const td_v4_model *m);

/* Weight bytes the GEMMs have streamed since creation: with a step's
 * duration, the memory bandwidth decode achieved. */
uint64_t td_v4_model_weight_bytes(const td_v4_model *m);

/* A sequence's decode state (window ring, compressed entries, indexer keys,
 * compressor tails; docs/kv-layout.md), sized for `capacity` tokens. */
td_err td_v4_seq_create(td_v4_seq **out, const td_v4_model *m, int64_t capacity,
                        char *err, size_t errlen);
void   td_v4_seq_destroy(td_v4_seq *s);
/* Forget everything: the next token is position 0. */
void   td_v4_seq_reset(td_v4_seq *s);
int64_t td_v4_seq_len(const td_v4_seq *s);
int64_t td_v4_seq_capacity(const td_v4_seq *s);

/* One sequence's part of a forward call: append tokens[0..n) to seq. */
typedef struct {
    td_v4_seq *seq;
    const int32_t *tokens;
    int n;
    /* Where logits go: NULL for none; otherwise [n][vocab] when all_logits,
     * else [vocab] for the last token only. */
    float *logits;
    int all_logits;
    /* If non-NULL, [n][hc_mult*dim]: each token's final residual streams
     * (before the head), the input of the MTP block. */
    float *hidden;
    /* If non-NULL, called in the call's last internal step for this
     * sequence, right after main layer l has processed its last token:
     * layer l's state is then final for this call (td_v4_seq_save_layer),
     * while layers after it still run. Runs on the calling thread. */
    void (*on_layer)(void *arg, int layer);
    void *layer_arg;
} td_v4_step;

/* Runs the steps (distinct sequences). On error (a token id out of range, a
 * sequence past its capacity) nothing is changed: the check comes first. */
td_err td_v4_forward(td_v4_model *m, td_v4_step *steps, int nsteps,
                     char *err, size_t errlen);

/* The MTP (multi-token prediction) block, for speculative decoding: row i
 * pairs hidden[i] (the main model's final streams at some position p, from
 * td_v4_step.hidden) with next_tokens[i] (the token at p+1) and predicts the
 * token at p+2 into logits[i][vocab]. The block keeps its own window state in
 * seq and runs at positions td_v4_seq_mtp_len(seq), +1, ... (spec §2.11). */
td_err td_v4_mtp_forward(td_v4_model *m, td_v4_seq *seq, const float *hidden,
                         const int32_t *next_tokens, int n, float *logits,
                         char *err, size_t errlen);
int64_t td_v4_seq_mtp_len(const td_v4_seq *s);

#endif
