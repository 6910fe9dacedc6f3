/* Sampling. Temperature scales logits, top-k keeps the k largest, top-p keeps
 * the smallest prefix of the sorted distribution whose mass reaches p, then
 * one draw from the renormalised rest. The RNG is splitmix64/xoshiro-style
 * state of our own so a seed reproduces a stream on every platform. */
#include <math.h>
#include <stdlib.h>

#include "model/sample.h"

struct td_sampler {
    int vocab;
    td_sample_opts o;
    uint64_t rng;
    int32_t *idx;   /* [vocab] */
    float *prob;    /* [vocab] */
};

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(td_sampler *s)
{
    return (double)(splitmix64(&s->rng) >> 11) * 0x1.0p-53;
}

td_err td_sampler_create(td_sampler **out, int vocab, const td_sample_opts *opts)
{
    *out = NULL;
    if (vocab <= 0 || !opts || !(opts->temperature >= 0.0f) ||
        !(opts->top_p > 0.0f && opts->top_p <= 1.0f) || opts->top_k < 0)
        return TD_EINVAL;
    td_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return TD_ENOMEM;
    s->vocab = vocab;
    s->o = *opts;
    s->rng = opts->seed;
    s->idx = malloc(sizeof(int32_t) * (size_t)vocab);
    s->prob = malloc(sizeof(float) * (size_t)vocab);
    if (!s->idx || !s->prob) {
        td_sampler_destroy(s);
        return TD_ENOMEM;
    }
    *out = s;
    return TD_OK;
}

void td_sampler_destroy(td_sampler *s)
{
    if (!s)
        return;
    free(s->idx);
    free(s->prob);
    free(s);
}

static int32_t argmax(const float *x, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* Sorts idx[0..n) by prob descending (ties: lower id first). */
static void sort_desc(int32_t *idx, const float *logit, int n)
{
    /* Shell sort: no recursion, no allocation, good enough for a vocab
     * after top-k, and only reached when top-p is in use. */
    for (int gap = n / 2; gap > 0; gap /= 2)
        for (int i = gap; i < n; i++) {
            int32_t v = idx[i];
            int j = i;
            while (j >= gap && (logit[idx[j - gap]] < logit[v] ||
                                (logit[idx[j - gap]] == logit[v] && idx[j - gap] > v))) {
                idx[j] = idx[j - gap];
                j -= gap;
            }
            idx[j] = v;
        }
}

void td_sampler_skip(td_sampler *s)
{
    if (s->o.temperature != 0.0f)
        (void)uniform01(s);  /* a pick draws exactly one number */
}

int32_t td_sampler_pick(td_sampler *s, const float *logits)
{
    int V = s->vocab;
    if (s->o.temperature == 0.0f)
        return argmax(logits, V);
    int n = V;
    for (int i = 0; i < V; i++)
        s->idx[i] = i;
    if (s->o.top_k > 0 && s->o.top_k < V) {
        /* Partial selection of the k largest to the front. */
        int k = s->o.top_k;
        for (int i = 0; i < k; i++) {
            int best = i;
            for (int j = i + 1; j < V; j++) {
                float a = logits[s->idx[j]], b = logits[s->idx[best]];
                if (a > b || (a == b && s->idx[j] < s->idx[best]))
                    best = j;
            }
            int32_t t = s->idx[i];
            s->idx[i] = s->idx[best];
            s->idx[best] = t;
        }
        n = k;
    }
    if (s->o.top_p < 1.0f)
        sort_desc(s->idx, logits, n);
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        mx = fmaxf(mx, logits[s->idx[i]]);
    double z = 0.0;
    for (int i = 0; i < n; i++) {
        s->prob[i] = (float)exp((double)(logits[s->idx[i]] - mx) / s->o.temperature);
        z += s->prob[i];
    }
    if (s->o.top_p < 1.0f) {
        double mass = 0.0;
        int keep = n;
        for (int i = 0; i < n; i++) {
            mass += s->prob[i] / z;
            if (mass >= s->o.top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
        z = 0.0;
        for (int i = 0; i < n; i++)
            z += s->prob[i];
    }
    double u = uniform01(s) * z, acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += s->prob[i];
        if (u < acc)
            return s->idx[i];
    }
    return s->idx[n - 1];
}
