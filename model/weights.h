/* Every tensor of a V4 checkpoint, bound to the model's structures after
 * its name, dtype and shape were checked against the config
 * (spec §4.2; names without a "model." prefix). Pointers borrow from the
 * mmap'd safetensors files, except wo_a, which is dequantised once to bf16
 * as the official convert.py does (owned by td_v4_weights). */
#ifndef TD_MODEL_WEIGHTS_H
#define TD_MODEL_WEIGHTS_H

#include <stdint.h>

#include "kernels/kernels.h"
#include "model/config.h"

typedef struct td_safetensors td_safetensors;

typedef struct {
    const float *fn;      /* [mix][hc*D] F32; mix = (2+hc)*hc, or hc at the head */
    const float *base;    /* [mix] */
    const float *scale;   /* [3] (or [1] at the head) */
} td_v4_hc;

typedef struct {
    td_weight wkv;          /* [c*d][D] bf16 (c = 2 when ratio 4) */
    td_weight wgate;        /* [c*d][D] bf16 */
    const float *ape;       /* [ratio][c*d] F32 */
    const uint16_t *norm;   /* [d] bf16 */
    int d, ratio, overlap;
} td_v4_compressor;

typedef struct {
    td_weight w1, w2, w3;   /* w1,w3 [inter][D]; w2 [D][inter] */
} td_v4_expert;

typedef struct {
    int ratio;              /* compress ratio: 0, 4 (CSA) or other (HCA) */
    int hash;               /* 1 when routed by tid2eid */
    td_v4_hc hc_attn, hc_ffn;
    const uint16_t *attn_norm, *ffn_norm;   /* [D] bf16 */
    /* attention */
    const float *attn_sink;                 /* [H] */
    td_weight wq_a;                         /* [q_lora][D] */
    const uint16_t *q_norm;                 /* [q_lora] */
    td_weight wq_b;                         /* [H*hd][q_lora] */
    td_weight wkv;                          /* [hd][D] */
    const uint16_t *kv_norm;                /* [hd] */
    td_weight wo_a;                         /* [G*o_lora][H*hd/G], TD_W_BF16 (dequantised) */
    td_weight wo_b;                         /* [D][G*o_lora] */
    td_v4_compressor compressor;            /* ratio > 0 */
    /* indexer (ratio 4) */
    td_weight idx_wq_b;                     /* [nI*dI][q_lora] */
    td_weight idx_weights_proj;             /* [nI][D] bf16 */
    td_v4_compressor idx_compressor;        /* d = index_head_dim */
    /* MoE */
    td_weight gate;                         /* [E][D] bf16 */
    const float *gate_bias;                 /* [E] or NULL (hash layers) */
    const int64_t *tid2eid;                 /* [vocab][topk] or NULL */
    td_v4_expert *experts;                  /* [E], owned array of borrowed weights */
    td_v4_expert shared;
} td_v4_layer;

typedef struct {
    td_v4_layer block;                      /* ratio 0, score-routed */
    td_weight e_proj, h_proj;               /* [D][D] */
    const uint16_t *enorm, *hnorm, *norm;   /* [D] */
    td_v4_hc hc_head;
} td_v4_mtp;

typedef struct {
    td_v4_config cfg;
    const uint16_t *embed;                  /* [vocab][D] bf16 */
    td_v4_layer *layers;                    /* [n_layers] */
    const uint16_t *norm;                   /* [D] */
    td_weight head;                         /* [vocab][D] bf16 */
    td_v4_hc hc_head;
    td_v4_mtp *mtp;                         /* [n_mtp_layers] */
    /* owned */
    td_safetensors *st;
    uint16_t **owned;                       /* dequantised copies (wo_a), freed at destroy */
    int n_owned;
} td_v4_weights;

/* Loads config.json and the safetensors of a model directory, checks every
 * tensor and binds it. On error *out is NULL and err names the problem
 * (file, tensor, expected vs found). */
td_err td_v4_weights_load(td_v4_weights **out, const char *model_dir,
                          char *err, size_t errlen);
void   td_v4_weights_destroy(td_v4_weights *w);

#endif
