/* Structures shared by the files of the forward pass in model/.
 * Not a public header: the rest of tandem sees model/model.h. */
#ifndef TD_MODEL_INTERNAL_H
#define TD_MODEL_INTERNAL_H

#include <stdint.h>

#include "kernels/kernels.h"
#include "model/model.h"

/* ---- per-sequence state (docs/kv-layout.md) ----------------------------- */

/* One layer's decode state. Records are the stored formats: a main KV
 * record is [nope e4m3][rope bf16][nope/64 E8M0 scales][pad] (kvrec.c), an
 * indexer key is [dI/2 packed e2m1][dI/32 E8M0 scales]. */
typedef struct {
    int ratio;
    uint8_t *win;        /* [W][rec]: slot p % W holds token p */
    uint8_t *comp;       /* [cap / ratio][rec] compressed entries (ratio > 0) */
    uint8_t *ikey;       /* [cap / 4][ikrec] indexer keys (ratio 4) */
    /* Compressor tails, fp32 as the official code keeps them: [c*R][c*d]
     * for kv and for gate scores (c = 2 when overlapping). */
    float *ckv, *csc;
    float *ikv, *isc;    /* indexer compressor, [8][2*dI] */
} td_v4_layer_state;

struct td_v4_seq {
    const td_v4_model *m;
    int64_t pos;         /* tokens processed so far */
    int64_t mtp_pos;     /* tokens the MTP block has processed */
    int64_t cap;         /* capacity in tokens */
    int nlayers;         /* main layers + MTP layers */
    td_v4_layer_state *layer;
    /* attention scratch, sized by capacity at creation (never per token) */
    float *att_kv;       /* [W + max compressed entries][hd] decoded rows */
    float *att_s;        /* [H][W + max compressed entries] scores */
    int32_t *att_idx;    /* [max compressed entries] selected entry ids */
    float *idx_score;    /* [cap / 4] indexer scores */
    int32_t *idx_order;  /* [index_topk] selection heap */
    int8_t *idx_q8;      /* [nI][dI] the row's indexer queries, twice-values */
    int *idx_qe;         /* [nI][dI/32] their scale exponents */
};

/* ---- the model and its scratch ------------------------------------------ */

struct td_v4_model {
    const td_v4_weights *w;
    td_v4_config c;
    td_pool *pool;
    int max_rows;
    uint64_t weight_bytes;  /* weight bytes streamed by GEMMs so far (stats) */
    /* derived sizes */
    int rec;             /* main KV record bytes */
    int ikrec;           /* indexer key record bytes */
    int nope;            /* head_dim - rope_dim */
    int mix;             /* (2 + hc) * hc */
    int max_k;           /* widest linear input */
    /* RoPE frequencies (rope_dim/2): window-only layers and compressed layers */
    float *freq_plain, *freq_yarn;
    float e4m3_lut[256];
    /* row scratch, [max_rows][...] */
    int32_t *row_tok;    /* [R] */
    int64_t *row_pos;    /* [R] */
    td_v4_seq **row_seq; /* [R] */
    float *X;            /* [R][hc*D] residual streams (bf16 values) */
    float *y;            /* [R][D] collapsed stream */
    float *xn;           /* [R][D] normalised sublayer input */
    float *out;          /* [R][D] sublayer output */
    float *hc_m;         /* [R][mix] */
    float *hc_pre, *hc_post, *hc_comb; /* [R][hc], [R][hc], [R][hc*hc] */
    uint8_t *xq;         /* [R][max_k] FP8 codes */
    int8_t *xe;          /* [R][max_k/128] scale exponents */
    float *qr;           /* [R][q_lora] */
    float *q;            /* [R][H*hd] */
    float *kv;           /* [R][hd] */
    float *ca, *cz;      /* [R][2*hd] compressor projections */
    float *iq;           /* [R][nI*dI] indexer queries */
    uint8_t *iqrec;      /* [R][nI][ikrec] the queries as FP4 records */
    float *iw;           /* [R][nI] indexer head weights */
    float *ia, *iz;      /* [R][2*dI] indexer compressor projections */
    float *o;            /* [R][H*hd] attention output */
    float *og;           /* [R][hd*H/G] one group's heads, gathered */
    float *zo;           /* [R][G*o_lora] */
    float *gl;           /* [R][E] gate logits / scores */
    int32_t *sel;        /* [R][topk] selected experts */
    float *selw;         /* [R][topk] routing weights */
    int32_t *erows;      /* [R*topk] row*topk+slot, grouped by expert */
    int32_t *ecount;     /* [E+1] */
    uint8_t *gq;         /* [R][D] FP8 codes of the MoE input */
    int8_t *ge;          /* [R][D/128] */
    uint8_t *hq;         /* [R*topk][D] rows gathered for one expert */
    int8_t *he;          /* [R*topk][D/128] */
    float *ew;           /* [R*topk] their routing weights */
    float *g, *u;        /* [R*topk][inter] */
    float *eout;         /* [R][topk][D] routed expert outputs */
    float *sout;         /* [R][D] shared expert output */
    float *hn;           /* [R][D] final normalised hidden */
};

/* ---- pieces of the forward pass (one file each) ------------------------- */

/* mhc.c: hyper-connections. */
void td_v4_hc_pre(td_v4_model *m, const td_v4_hc *hc, int rows);
void td_v4_hc_post(td_v4_model *m, int rows);
void td_v4_hc_head(td_v4_model *m, const td_v4_hc *hc, const float *X, int rows, float *y);

/* norm.c */
void td_v4_rmsnorm(const float *x, const uint16_t *w, int n, float eps, float *y);
float td_v4_rms_inv(const float *x, int n, float eps);

/* rope.c */
void td_v4_rope_freqs(const td_v4_config *c, int yarn, float *freq);
void td_v4_rope(float *x, int rd, const float *freq, int64_t pos, int inverse);

/* linear.c: the GEMM entry points of the model (they count weight bytes). */
void td_v4_gemm_q(td_v4_model *m, const td_weight *w, const uint8_t *q, const int8_t *e,
                  int rows, float *y, int ldy);
void td_v4_gemm_f(td_v4_model *m, const td_weight *w, const float *x, int rows,
                  float *y, int ldy);
/* y = W x for rows of x, with the activation path the weight needs. */
void td_v4_linear(td_v4_model *m, const td_weight *w, const float *x, int rows,
                  float *y, int ldy, int round_bf16);

/* kvrec.c: stored records. */
void td_v4_kvrec_encode(const td_v4_model *m, float *row, uint8_t *rec);
void td_v4_kvrec_decode(const td_v4_model *m, const uint8_t *rec, float *row);
void td_v4_ikey_encode(const td_v4_model *m, float *row, uint8_t *rec);
void td_v4_ikey_decode(const td_v4_model *m, const uint8_t *rec, float *row);
void td_v4_hadamard(float *x, int n);

/* attention.c */
void td_v4_attention(td_v4_model *m, int layer_idx, const td_v4_layer *L, int rows);

/* compressor.c: feeds one token's projections into a compressor tail and
 * emits the pooled (pre-norm, bf16-rounded) entry when a block completes.
 * Returns 1 when *entry was written. */
int td_v4_compress_step(const td_v4_model *m, const td_v4_compressor *cw,
                        float *kvst, float *scst, const float *a, const float *z,
                        int64_t pos, float *entry);

/* moe.c */
void td_v4_moe(td_v4_model *m, const td_v4_layer *L, int rows);

#endif
