/* KV-state byte arithmetic (spec §3.2, §3.3; docs/kv-layout.md). */
#include "model/kvsize.h"

#include <string.h>

int td_v4_kv_entry_bytes(const td_v4_config *cfg)
{
    int nope = cfg->head_dim - cfg->rope_dim;
    int bytes = nope                 /* e4m3 nope dims */
              + 2 * cfg->rope_dim    /* bf16 rope dims */
              + nope / 64;           /* one E8M0 scale per 64 nope dims */
    return (bytes + 7) & ~7;         /* records are 8-byte aligned */
}

int td_v4_kv_index_key_bytes(const td_v4_config *cfg)
{
    return cfg->index_head_dim / 2 + cfg->index_head_dim / 32;
}

/* acc += a * b, remembering overflow (extreme configs x 2^40 tokens). */
static void mad(int64_t *acc, int64_t a, int64_t b, int *ovf)
{
    int64_t p;
    if (__builtin_mul_overflow(a, b, &p) || __builtin_add_overflow(*acc, p, acc))
        *ovf = 1;
}

/* Adds one layer of compress ratio r to kind k. */
static void add_layer(td_v4_kv_kind *k, const td_v4_config *cfg, int r, int64_t n,
                      int64_t entry, int64_t ikey, int *ovf)
{
    int64_t hd = cfg->head_dim, dI = cfg->index_head_dim;
    if (k->layers == 0)
        k->ratio = r;
    else if (k->ratio != r)
        k->ratio = -1;
    k->layers++;
    mad(&k->window_bytes, n < cfg->window ? n : cfg->window, entry, ovf);
    if (r > 0)
        mad(&k->compressed_bytes, n / r, entry, ovf);
    if (r == 4) {
        mad(&k->indexer_bytes, n / 4, ikey, ovf);
        /* kv_state + score_state, [8][2*hd] main and [8][2*dI] indexer, fp32 */
        k->state_bytes += 2 * 8 * (2 * hd) * 4 + 2 * 8 * (2 * dI) * 4;
    } else if (r > 0) {
        k->state_bytes += 2 * (int64_t)r * hd * 4;   /* [R][hd] x 2, fp32 */
    }
}

static int64_t kind_kv(const td_v4_kv_kind *k, int *ovf)
{
    int64_t s = 0;
    mad(&s, k->window_bytes, 1, ovf);
    mad(&s, k->compressed_bytes, 1, ovf);
    mad(&s, k->indexer_bytes, 1, ovf);
    return s;
}

td_err td_v4_kv_size(const td_v4_config *cfg, int64_t tokens, td_v4_kv_bytes *out)
{
    memset(out, 0, sizeof(*out));
    if (tokens < 0 || tokens > TD_V4_KV_MAX_TOKENS)
        return TD_ERANGE;
    int64_t entry = td_v4_kv_entry_bytes(cfg), ikey = td_v4_kv_index_key_bytes(cfg);
    out->tokens = tokens;
    out->entry_bytes = (int)entry;
    out->index_key_bytes = (int)ikey;
    int ovf = 0;
    for (int i = 0; i < cfg->n_layers + cfg->n_mtp_layers && i < cfg->n_ratios; i++) {
        int r = cfg->compress_ratios[i];
        td_v4_kv_kind *k = i >= cfg->n_layers ? &out->mtp
                         : r == 0 ? &out->window_only
                         : td_v4_is_csa(r) ? &out->csa : &out->hca;
        add_layer(k, cfg, r, tokens, entry, ikey, &ovf);
    }
    out->kv_bytes = 0;
    mad(&out->kv_bytes, kind_kv(&out->window_only, &ovf), 1, &ovf);
    mad(&out->kv_bytes, kind_kv(&out->csa, &ovf), 1, &ovf);
    mad(&out->kv_bytes, kind_kv(&out->hca, &ovf), 1, &ovf);
    kind_kv(&out->mtp, &ovf);
    out->state_bytes = out->window_only.state_bytes + out->csa.state_bytes +
                       out->hca.state_bytes;
    out->total_with_state = out->kv_bytes;
    mad(&out->total_with_state, out->state_bytes, 1, &ovf);
    mad(&out->gqa_bytes, (int64_t)cfg->n_layers * TD_V4_GQA_BYTES_PER_TOKEN_LAYER, tokens, &ovf);
    if (ovf) {
        memset(out, 0, sizeof(*out));
        return TD_ERANGE;
    }
    out->ratio = out->gqa_bytes ? (double)out->kv_bytes / (double)out->gqa_bytes : 0.0;
    return TD_OK;
}
