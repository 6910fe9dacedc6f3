/* Bytes of KV state one sequence holds, in the stored format the runtime
 * uses (spec §3.2, docs/kv-layout.md):
 *   main KV entry = (hd - rd) e4m3 + rd bf16 + one E8M0 scale per 64 nope
 *                   dims, padded to a multiple of 8 bytes (584 B for Flash);
 *   indexer key   = index_head_dim/2 bytes of packed FP4 + one E8M0 scale
 *                   per 32 dims (68 B for Flash).
 * Per main layer: a window of min(N, W) entries; CSA (ratio 4) adds
 * floor(N/4) entries and floor(N/4) indexer keys; HCA (ratio R) adds
 * floor(N/R) entries. The headline total is spec §3.3's formula (main
 * layers only); the fixed-size fp32 compressor state and the MTP block are
 * reported separately. */
#ifndef TD_MODEL_KVSIZE_H
#define TD_MODEL_KVSIZE_H

#include <stdint.h>

#include "common/err.h"
#include "model/config.h"

/* Largest token count accepted; keeps every product inside int64. */
#define TD_V4_KV_MAX_TOKENS ((int64_t)1 << 40)

/* GQA baseline: 8 KV heads x head_dim 128, K and V, bf16, per token per layer. */
#define TD_V4_GQA_BYTES_PER_TOKEN_LAYER 4096

/* One kind of layer (aggregated over the layers of that kind). */
typedef struct {
    int layers;
    int ratio;                  /* compress ratio; -1 when the kind mixes ratios */
    int64_t window_bytes;       /* layers x min(N, W) x entry */
    int64_t compressed_bytes;   /* layers x floor(N/R) x entry */
    int64_t indexer_bytes;      /* CSA: layers x floor(N/4) x indexer key */
    int64_t state_bytes;        /* fp32 compressor state, fixed per sequence */
} td_v4_kv_kind;

typedef struct {
    int64_t tokens;
    int entry_bytes;            /* main KV record (584 for Flash) */
    int index_key_bytes;        /* indexer key record (68 for Flash) */
    td_v4_kv_kind window_only;  /* ratio 0 main layers */
    td_v4_kv_kind csa;          /* ratio 4 main layers */
    td_v4_kv_kind hca;          /* other ratios, main layers */
    td_v4_kv_kind mtp;          /* MTP layers, excluded from every total */
    int64_t kv_bytes;           /* headline: window + compressed + indexer, main layers */
    int64_t state_bytes;        /* compressor state of the main layers */
    int64_t total_with_state;   /* kv_bytes + state_bytes */
    int64_t gqa_bytes;          /* n_layers x N x 4096 */
    double ratio;               /* kv_bytes / gqa_bytes (0 when N = 0) */
} td_v4_kv_bytes;

/* Record sizes for a config. */
int td_v4_kv_entry_bytes(const td_v4_config *cfg);
int td_v4_kv_index_key_bytes(const td_v4_config *cfg);

/* Fills *out for one sequence of `tokens` tokens; TD_ERANGE (and *out
 * zeroed) when tokens is negative or above TD_V4_KV_MAX_TOKENS, or when a
 * byte count would not fit int64 (only absurd configs at huge N). */
td_err td_v4_kv_size(const td_v4_config *cfg, int64_t tokens, td_v4_kv_bytes *out);

#endif
