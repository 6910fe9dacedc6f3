/* The model configuration, read from a Hugging Face config.json with
 * model_type "deepseek_v4" (spec: ../shared/spec/v4-architecture.md §1). */
#ifndef TD_MODEL_CONFIG_H
#define TD_MODEL_CONFIG_H

#include <stddef.h>

#include "common/err.h"
#include "kernels/kernels.h"

#define TD_V4_MAX_LAYERS 128   /* main layers + MTP layers */

typedef struct {
    int vocab_size;           /* vocab_size */
    int dim;                  /* hidden_size, D */
    int n_layers;             /* num_hidden_layers */
    int n_mtp_layers;         /* num_nextn_predict_layers */
    int n_heads;              /* num_attention_heads, H */
    int head_dim;             /* head_dim, hd */
    int rope_dim;             /* qk_rope_head_dim, rd */
    int q_lora_rank;          /* q_lora_rank */
    int o_groups;             /* o_groups, G */
    int o_lora_rank;          /* o_lora_rank */
    int window;               /* sliding_window, W */
    int index_n_heads;        /* index_n_heads */
    int index_head_dim;       /* index_head_dim */
    int index_topk;           /* index_topk */
    int n_routed_experts;     /* n_routed_experts, E */
    int n_activated_experts;  /* num_experts_per_tok */
    int n_shared_experts;     /* n_shared_experts (must be 1) */
    int moe_inter_dim;        /* moe_intermediate_size */
    int n_hash_layers;        /* num_hash_layers */
    int hc_mult;              /* hc_mult (streams) */
    int hc_sinkhorn_iters;    /* hc_sinkhorn_iters */
    float hc_eps;             /* hc_eps */
    float norm_eps;           /* rms_norm_eps */
    float rope_theta;         /* rope_theta (window-only layers) */
    float compress_rope_theta;/* compress_rope_theta (CSA/HCA layers) */
    float rope_factor;        /* rope_scaling.factor */
    int original_seq_len;     /* rope_scaling.original_max_position_embeddings */
    float beta_fast;          /* rope_scaling.beta_fast */
    float beta_slow;          /* rope_scaling.beta_slow */
    float route_scale;        /* routed_scaling_factor */
    float swiglu_limit;       /* swiglu_limit */
    int max_position;         /* max_position_embeddings */
    int bos_id, eos_id;       /* bos_token_id, eos_token_id */
    td_wtype dtype;           /* non-expert linears: TD_W_FP8 (quantization_config) or TD_W_BF16 */
    td_wtype expert_dtype;    /* routed experts: TD_W_FP4 ("fp4"), TD_W_FP8 or TD_W_BF16 */
    int n_ratios;             /* n_layers + n_mtp_layers */
    int compress_ratios[TD_V4_MAX_LAYERS]; /* 0, 4 or any other R > 0 (non-overlapping) */
} td_v4_config;

/* Parses config.json text. On error returns TD_EFORMAT/TD_ECORRUPT/TD_ERANGE
 * and writes a message naming the field into err. */
td_err td_v4_config_parse(td_v4_config *cfg, const char *json, size_t len,
                          char *err, size_t errlen);
td_err td_v4_config_load(td_v4_config *cfg, const char *path, char *err, size_t errlen);

/* Layer kinds by compress ratio. */
static inline int td_v4_is_csa(int ratio) { return ratio == 4; }

#endif
