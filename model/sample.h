/* Token sampling: greedy, temperature, top-k, top-p, seeded.
 * A sampler owns scratch for one vocabulary and allocates nothing per token. */
#ifndef TD_MODEL_SAMPLE_H
#define TD_MODEL_SAMPLE_H

#include <stdint.h>

#include "common/err.h"

typedef struct {
    float temperature;   /* 0 = greedy (argmax, ties to the lower id) */
    float top_p;         /* 1 = off */
    int top_k;           /* 0 = off */
    uint64_t seed;
} td_sample_opts;

typedef struct td_sampler td_sampler;

td_err td_sampler_create(td_sampler **out, int vocab, const td_sample_opts *opts);
void   td_sampler_destroy(td_sampler *s);
/* Picks a token from logits[vocab] (not modified). */
int32_t td_sampler_pick(td_sampler *s, const float *logits);

/* Leaves s as one td_sampler_pick would, whatever the logits: a decode
 * worker continues the stream of a request whose first token another
 * process sampled with the same seed. */
void   td_sampler_skip(td_sampler *s);

#endif
