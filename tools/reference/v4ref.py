#!/usr/bin/python3
"""Numpy reference forward pass of DeepSeek-V4, following docs/numerics.md to the letter.

    /usr/bin/python3 tools/reference/v4ref.py --model models/tiny-v4 --ids X.ids.json --out Y.f32
        [--dump DIR] [--chunk N] [--mtp-out Z.f32]
    /usr/bin/python3 tools/reference/v4ref.py --selftest

Incremental semantics (docs/numerics.md, "Decode, one-shot prefill and chunked prefill"): a
Session keeps the per-sequence state of every layer (window KV rows, compressed entries,
indexer keys, compressor pending state) and `forward(tokens)` appends a chunk of tokens at the
next positions and returns their logits. Inside a chunk the work is layer-major: every
row-independent step runs on all rows of the chunk at once, and the steps that read state
(compressors, indexer, attention) run position by position in order. Every dot product is
computed per output element by the same numpy reduction whatever the number of rows, so the
logits do not depend on the chunking (checked by --selftest).

Official source mapped in the comments: yafengge/DeepSeek-V4-Flash @ 60d8d70 (= the Hugging
Face repo deepseek-ai/DeepSeek-V4-Flash), files inference/model.py (M:) and inference/kernel.py
(K:); spec sections (S:) of /work/shared/spec/v4-architecture.md.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import v4num as vn  # noqa: E402
from v4num import F32, F64, bf16  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Config (M: ModelArgs; HF config.json keys, S: 1.1)


class Config:
    def __init__(self, path):
        c = json.load(open(os.path.join(path, "config.json")))
        self.vocab = c["vocab_size"]
        self.dim = c["hidden_size"]
        self.n_layers = c["num_hidden_layers"]
        self.n_mtp = c["num_nextn_predict_layers"]
        self.n_hash = c["num_hash_layers"]
        self.n_heads = c["num_attention_heads"]
        self.head_dim = c["head_dim"]
        self.rd = c["qk_rope_head_dim"]
        self.nd = self.head_dim - self.rd
        self.q_lora = c["q_lora_rank"]
        self.o_groups = c["o_groups"]
        self.o_lora = c["o_lora_rank"]
        self.window = c["sliding_window"]
        self.ratios = c["compress_ratios"]
        self.ih = c["index_n_heads"]
        self.ihd = c["index_head_dim"]
        self.topk = c["index_topk"]
        self.n_experts = c["n_routed_experts"]
        self.n_active = c["num_experts_per_tok"]
        self.route_scale = F32(c["routed_scaling_factor"])
        self.limit = F32(c["swiglu_limit"])
        self.hc = c["hc_mult"]
        self.sinkhorn_iters = c["hc_sinkhorn_iters"]
        self.hc_eps = F32(c["hc_eps"])                 # fp32 value, widened where summed in fp64
        self.norm_eps = F32(c["rms_norm_eps"])
        self.rope_theta = float(c["rope_theta"])
        self.compress_rope_theta = float(c["compress_rope_theta"])
        rs = c["rope_scaling"]
        self.rope_factor = float(rs["factor"])
        self.orig_seq = float(rs["original_max_position_embeddings"])
        self.beta_fast = float(rs["beta_fast"])
        self.beta_slow = float(rs["beta_slow"])
        assert c["scoring_func"] == "sqrtsoftplus" and c["n_shared_experts"] == 1
        assert c["expert_dtype"] == "fp4" and c["num_key_value_heads"] == 1

# ---------------------------------------------------------------------------------------------
# Safetensors reader (our own; format: u64 LE header length, JSON header, data)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dt = {"BF16": np.uint16, "F32": np.float32, "F8_E4M3": np.uint8, "F8_E8M0": np.uint8,
          "I8": np.int8, "I64": np.int64, "I32": np.int32, "F16": np.float16}
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        arr = np.frombuffer(data, dt[h["dtype"]], (b - a) // np.dtype(dt[h["dtype"]]).itemsize, a)
        arr = arr.reshape(h["shape"])
        out[name] = vn.bf16_from_bits(arr) if h["dtype"] == "BF16" else arr
        out[name + "@dtype"] = h["dtype"]
    return out

# ---------------------------------------------------------------------------------------------
# Dot products. Every reduction: fp64 accumulation, one rounding to fp32 (docs/numerics.md).
# dot64 reduces over the contiguous last axis with numpy's sum, so the order for one output
# element depends only on K, never on how many rows are computed together.


def dot64(x, w):
    """x [M, K], w [N, K] -> fp64 [M, N] = sum_k x*w (products exact in fp64)."""
    x = np.ascontiguousarray(x, F64)
    w = np.ascontiguousarray(w, F64)
    M, N, K = x.shape[0], w.shape[0], x.shape[1]
    out = np.empty((M, N), F64)
    nstep = max(1, min(N, (1 << 22) // max(1, K)))       # temporaries of at most 2^22 elements
    mstep = max(1, (1 << 22) // (nstep * max(1, K)))
    for i in range(0, M, mstep):
        for j in range(0, N, nstep):
            out[i:i + mstep, j:j + nstep] = (x[i:i + mstep, None, :] * w[None, j:j + nstep, :]).sum(-1)
    return out


class Linear:
    """One weight in the form its arithmetic needs (S: 4.3; docs/numerics.md "Linears").
    kind fp8: e4m3 values (unscaled, fp64) + E8M0 exponent per 128x128 tile;
    kind fp4: e2m1 values (unscaled) + E8M0 exponent per 1x32;
    kind float: exact values of a bf16 / fp32 weight (fp64)."""

    def __init__(self, kind, w, sexp=None):
        self.kind, self.w, self.sexp = kind, w, sexp
        self.n, self.k = w.shape
        if kind != "float":
            self.wT = np.ascontiguousarray(w.T)

    def __call__(self, x, out_bf16=True):
        x = np.asarray(x, F32)
        if self.kind == "float":
            y = vn.f32(dot64(x, self.w))
        else:
            # M: linear() -> K: act_quant(x, 128, ue8m0) + fp8_gemm / fp4_gemm
            q, sx = vn.fp8_act_quant(x, 128)
            blk = 128 if self.kind == "fp8" else 32
            acc = np.zeros((x.shape[0], self.n), F64)
            for kb in range(self.k // blk):
                # block sum of FP8 x FP8 (or FP8 x FP4) products: every partial sum is a multiple
                # of 2^-18 below 2^25, exact in fp64 in any order, so BLAS may compute it
                part = q[:, kb * blk:(kb + 1) * blk].astype(F64) @ self.wT[kb * blk:(kb + 1) * blk]
                if self.kind == "fp8":
                    sw = np.repeat(np.ldexp(1.0, self.sexp[:, kb]), 128)[:self.n]
                else:
                    sw = np.ldexp(1.0, self.sexp[:, kb])
                acc += part * sx[:, kb * blk // 128, None].astype(F64) * sw[None, :]    # exact scaling
            y = vn.f32(acc)
        return bf16(y) if out_bf16 else y


def load_linear(t, name):
    dt = t[name + ".weight@dtype"]
    if dt == "F8_E4M3":
        return Linear("fp8", vn.E4M3_TABLE[t[name + ".weight"]], t[name + ".scale"].astype(np.int64) - 127)
    if dt == "I8":
        u = t[name + ".weight"].view(np.uint8)
        w = np.stack([vn.E2M1_TABLE[u & 0xF], vn.E2M1_TABLE[u >> 4]], -1).reshape(u.shape[0], -1)
        return Linear("fp4", w, t[name + ".scale"].astype(np.int64) - 127)
    return Linear("float", t[name + ".weight"].astype(F64))


def load_wo_a(t, name):
    """M: convert.py dequantises wo_a once to bf16: bf16(e4m3 * 2^s), exact (S: 4.3)."""
    w = vn.fp8_dequant(t[name + ".weight"], t[name + ".scale"])
    assert np.array_equal(bf16(w), w)
    return Linear("float", w.astype(F64))

# ---------------------------------------------------------------------------------------------
# Elementwise primitives (docs/numerics.md "Primitives")


def exp32(v):
    """f32(exp(v)) from an fp32 argument, exp in fp64."""
    return vn.f32(np.exp(np.asarray(v, F32).astype(F64)))


def rms(x, eps):
    """r = f32(1/sqrt(sum64 x^2 / n + eps)) over the last axis (fp64 throughout)."""
    x = np.asarray(x, F32).astype(F64)
    return vn.f32(1.0 / np.sqrt((x * x).sum(-1) / x.shape[-1] + F64(eps)))


def rmsnorm(x, w, eps):
    """M: RMSNorm.forward. y = bf16((x*r)*w), two fp32 multiplies."""
    r = rms(x, eps)
    return bf16((np.asarray(x, F32) * r[..., None]).astype(F32) * w)


def sigmoid32(v):
    return vn.f32(1.0 / (1.0 + np.exp(-np.asarray(v, F32).astype(F64))))


def softmax32(v, axis=-1):
    """m = max v; e = f32(exp(f32(v - m))); z = f32(sum64 e); p = e / z (fp32). -inf -> 0."""
    v = np.asarray(v, F32)
    m = v.max(axis, keepdims=True)
    e = exp32((v - m).astype(F32))
    z = vn.f32(e.astype(F64).sum(axis, keepdims=True))
    return (e / z).astype(F32)

# ---------------------------------------------------------------------------------------------
# RoPE (M: precompute_freqs_cis, apply_rotary_emb; S: 2.5; numerics step 5)


def rope_freqs(cfg, yarn):
    rd = cfg.rd
    base = cfg.compress_rope_theta if yarn else cfg.rope_theta
    i = np.arange(rd // 2, dtype=F64)
    f = 1.0 / base ** (2 * i / rd)
    if yarn:
        def corr(n):
            return rd * np.log(cfg.orig_seq / (n * 2 * np.pi)) / (2 * np.log(base))
        low = max(np.floor(corr(cfg.beta_fast)), 0.0)
        high = min(np.ceil(corr(cfg.beta_slow)), rd - 1.0)
        if low == high:
            high += 0.001
        ramp = np.clip((i - low) / (high - low), 0.0, 1.0)
        # numerics.md step 5 writes the blend with ramp (official: smooth = 1 - ramp,
        # f/factor*(1-smooth) + f*smooth); the fp32 tables agree for the V4 configs (--selftest)
        f = f / cfg.rope_factor * ramp + f * (1.0 - ramp)
    return vn.f32(f)


def rope(x, freqs, pos, inverse=False):
    """Rotate the trailing len(freqs)*2 dims of x[..., D] (interleaved pairs) at positions pos
    (scalar or array broadcasting over x's leading axes). Returns a new array (bf16 values)."""
    x = np.array(x, F32)
    rd = 2 * len(freqs)
    pos = np.asarray(pos)
    theta = (pos.astype(F32)[..., None] * freqs).astype(F32)           # f32(f32(p) * f_i)
    c, s = vn.f32(np.cos(theta.astype(F64))), vn.f32(np.sin(theta.astype(F64)))
    if inverse:
        s = -s
    while c.ndim < x.ndim:                                           # broadcast over head axes
        c, s = c[..., None, :], s[..., None, :]
    a, b = x[..., -rd::2], x[..., -rd + 1::2]
    na = bf16(((a * c).astype(F32) - (b * s).astype(F32)).astype(F32))
    nb = bf16(((a * s).astype(F32) + (b * c).astype(F32)).astype(F32))
    x[..., -rd::2], x[..., -rd + 1::2] = na, nb
    return x

# ---------------------------------------------------------------------------------------------
# Hadamard (M: rotate_activation = fast_hadamard_transform, scale n^-0.5; numerics step 8)


def hadamard_matrix(n):
    i = np.arange(n)
    pc = np.vectorize(lambda v: bin(v).count("1"))(i[:, None] & i[None, :])
    return np.where(pc % 2 == 0, 1.0, -1.0)


_HAD = {}


def hadamard(x):
    """bf16(f32(sum64 +-x_i * n^-0.5)) per output over the last axis (Sylvester order)."""
    n = x.shape[-1]
    if n not in _HAD:
        _HAD[n] = hadamard_matrix(n)
    flat = np.asarray(x, F32).reshape(-1, n)
    y = dot64(flat, _HAD[n]) * (n ** -0.5)       # sum of +-x exact, one fp64 multiply
    return bf16(vn.f32(y)).reshape(x.shape)

# ---------------------------------------------------------------------------------------------
# Weights


class Compressor:
    """M: Compressor.__init__ (S: 2.7). ratio R, width d, overlap iff R == 4."""

    def __init__(self, t, p, ratio, d, rotate):
        self.ratio, self.d, self.rotate = ratio, d, rotate
        self.overlap = ratio == 4
        self.wkv = load_linear(t, p + "wkv")      # bf16 stored, used as fp32 (exact widening)
        self.wgate = load_linear(t, p + "wgate")
        self.ape = t[p + "ape"]
        self.norm = t[p + "norm.weight"]


class Layer:
    def __init__(self, t, cfg, p, ratio, hash_layer):
        self.ratio, self.hash = ratio, hash_layer
        self.hc_attn = (t[p + "hc_attn_fn"].astype(F64), t[p + "hc_attn_scale"], t[p + "hc_attn_base"])
        self.hc_ffn = (t[p + "hc_ffn_fn"].astype(F64), t[p + "hc_ffn_scale"], t[p + "hc_ffn_base"])
        self.attn_norm = t[p + "attn_norm.weight"]
        self.ffn_norm = t[p + "ffn_norm.weight"]
        a = p + "attn."
        self.sink = t[a + "attn_sink"]
        self.wq_a = load_linear(t, a + "wq_a")
        self.q_norm = t[a + "q_norm.weight"]
        self.wq_b = load_linear(t, a + "wq_b")
        self.wkv = load_linear(t, a + "wkv")
        self.kv_norm = t[a + "kv_norm.weight"]
        self.wo_a = load_wo_a(t, a + "wo_a")
        self.wo_b = load_linear(t, a + "wo_b")
        self.freqs = rope_freqs(cfg, yarn=ratio > 0)  # M: Attention.__init__ (YaRN only if R > 0)
        if ratio:
            self.comp = Compressor(t, a + "compressor.", ratio, cfg.head_dim, False)
        if ratio == 4:
            self.iwq_b = load_linear(t, a + "indexer.wq_b")
            self.iweights = load_linear(t, a + "indexer.weights_proj")
            self.icomp = Compressor(t, a + "indexer.compressor.", 4, cfg.ihd, True)
        f = p + "ffn."
        self.gate = load_linear(t, f + "gate")
        self.tid2eid = t.get(f + "gate.tid2eid")
        self.bias = t.get(f + "gate.bias")
        self.experts = [(load_linear(t, f"{f}experts.{e}.w1"), load_linear(t, f"{f}experts.{e}.w3"),
                         load_linear(t, f"{f}experts.{e}.w2")) for e in range(cfg.n_experts)]
        self.shared = (load_linear(t, f + "shared_experts.w1"), load_linear(t, f + "shared_experts.w3"),
                       load_linear(t, f + "shared_experts.w2"))


class Model:
    def __init__(self, path):
        self.cfg = cfg = Config(path)
        t = read_safetensors(os.path.join(path, "model.safetensors"))
        self.embed = t["embed.weight"]
        self.layers = [Layer(t, cfg, f"layers.{i}.", cfg.ratios[i], i < cfg.n_hash) for i in range(cfg.n_layers)]
        self.norm = t["norm.weight"]
        self.head = load_linear(t, "head")          # bf16 stored, fp32 linear
        self.hc_head = (t["hc_head_fn"].astype(F64), t["hc_head_scale"], t["hc_head_base"])
        self.mtp = None
        if cfg.n_mtp:
            p = "mtp.0."
            self.mtp = Layer(t, cfg, p, cfg.ratios[cfg.n_layers], False)
            self.mtp.e_proj = load_linear(t, p + "e_proj")
            self.mtp.h_proj = load_linear(t, p + "h_proj")
            self.mtp.enorm = t[p + "enorm.weight"]
            self.mtp.hnorm = t[p + "hnorm.weight"]
            self.mtp.norm = t[p + "norm.weight"]
            self.mtp.hc_head = (t[p + "hc_head_fn"].astype(F64), t[p + "hc_head_scale"], t[p + "hc_head_base"])

# ---------------------------------------------------------------------------------------------
# mHC (M: Block.hc_pre / hc_post, ParallelHead.hc_head; K: hc_split_sinkhorn_kernel; S: 2.4)


def hc_mixes(X, fn, cfg):
    """m = f32(f32(sum64 fn.x) * r), x = flatten(X) (stream-major), r = rms over 4D."""
    flat = X.reshape(X.shape[0], -1)
    r = rms(flat, cfg.norm_eps)
    return (vn.f32(dot64(flat, fn)) * r[:, None]).astype(F32)


def sinkhorn(C, cfg):
    """K: hc_split_sinkhorn_kernel. C [rows, hc, hc] (row j, column k)."""
    eps, eps64 = cfg.hc_eps, F64(cfg.hc_eps)
    C = (softmax32(C, axis=2) + eps).astype(F32)                     # row softmax, + eps (fp32)
    for it in range(cfg.sinkhorn_iters):
        if it > 0:                                                   # row normalise
            C = (C / vn.f32(C.astype(F64).sum(2, keepdims=True) + eps64)).astype(F32)
        C = (C / vn.f32(C.astype(F64).sum(1, keepdims=True) + eps64)).astype(F32)   # column
    return C


def hc_pre(X, hc, cfg):
    """X [rows, hc, D] bf16 -> y [rows, D] bf16, post [rows, hc], comb [rows, hc, hc]."""
    fn, scale, base = hc
    n = cfg.hc
    m = hc_mixes(X, fn, cfg)
    lin = lambda v, s, b: ((v * s).astype(F32) + b).astype(F32)     # fp32 multiply, fp32 add
    pre = (sigmoid32(lin(m[:, :n], scale[0], base[:n])) + cfg.hc_eps).astype(F32)
    post = (F32(2) * sigmoid32(lin(m[:, n:2 * n], scale[1], base[n:2 * n]))).astype(F32)
    comb = lin(m[:, 2 * n:], scale[2], base[2 * n:]).reshape(-1, n, n)
    comb = sinkhorn(comb, cfg)
    return collapse(X, pre), post, comb


def collapse(X, pre):
    """y = bf16(f32(sum64_j pre_j X_j)), j ascending."""
    acc = np.zeros((X.shape[0], X.shape[2]), F64)
    for j in range(X.shape[1]):
        acc += pre[:, j, None].astype(F64) * X[:, j].astype(F64)
    return bf16(vn.f32(acc))


def hc_post(out, X, post, comb):
    """X'_k = bf16(f32(post_k*out + sum64_j comb_jk X_j)): one fp64 sum of hc+1 exact products,
    in this order (post term first, then j ascending)."""
    acc = post[:, :, None].astype(F64) * out[:, None, :].astype(F64)
    for j in range(X.shape[1]):
        acc += comb[:, j, :, None].astype(F64) * X[:, j, None, :].astype(F64)
    return bf16(vn.f32(acc))


def hc_head(X, hc, cfg):
    fn, scale, base = hc
    m = hc_mixes(X, fn, cfg)
    pre = (sigmoid32(((m * scale[0]).astype(F32) + base).astype(F32)) + cfg.hc_eps).astype(F32)
    return collapse(X, pre)

# ---------------------------------------------------------------------------------------------
# Per-sequence state


class CompState:
    """M: Compressor.kv_state / score_state, reset to (0, -inf) at sequence start (S: 2.7, 9.6)."""

    def __init__(self, comp):
        c = 2 if comp.overlap else 1
        self.kv = np.zeros((c * comp.ratio, c * comp.d), F32)
        self.sc = np.full((c * comp.ratio, c * comp.d), -np.inf, F32)


class LayerState:
    def __init__(self, layer):
        self.kv = []            # kv row of every position so far (window = the last W)
        self.comp = []          # compressed entries j = 0, 1, ...
        self.ikeys = []         # indexer keys j = 0, 1, ...
        self.cs = CompState(layer.comp) if layer.ratio else None
        self.ics = CompState(layer.icomp) if layer.ratio == 4 else None


def compressor_step(comp, st, a, z, pos, freqs, cfg):
    """M: Compressor.forward, decode branch (start_pos > 0), applied at every position.
    a, z: this token's wkv / wgate projections (fp32). Returns the entry emitted by this token
    (bf16 values) or None. z already includes ape (z = f32(wgate.x + ape[pos % R]))."""
    R, d = comp.ratio, comp.d
    if comp.overlap:
        slot = R + pos % R
    else:
        slot = pos % R
    st.kv[slot], st.sc[slot] = a, z
    if (pos + 1) % R:
        return None
    if comp.overlap:
        kv = np.concatenate([st.kv[:R, :d], st.kv[R:, d:]], 0)         # 2R candidates per channel
        sc = np.concatenate([st.sc[:R, :d], st.sc[R:, d:]], 0)
        st.kv[:R], st.sc[:R] = st.kv[R:], st.sc[R:]
    else:
        kv, sc = st.kv, st.sc
    p = softmax32(sc, axis=0)
    pooled = vn.f32((p.astype(F64) * kv.astype(F64)).sum(0))        # f32(sum64 p_t a_t)
    e = rmsnorm(bf16(pooled), comp.norm, cfg.norm_eps)               # M: self.norm(kv.to(dtype))
    e = rope(e, freqs, pos + 1 - R)                                  # position jR
    if comp.rotate:                                                  # indexer: Hadamard + FP4
        return vn.fake_fp4(hadamard(e), 32)
    e[:cfg.nd] = vn.fake_fp8(e[:cfg.nd], 64)                         # main: FP8 on nope dims
    return e


def compressor_proj(comp, x, pos):
    """a = f32(wkv.x), z = f32(f32(wgate.x) + ape[pos % R]) for all rows (fp32 linears)."""
    a = comp.wkv(x, out_bf16=False)
    z = (comp.wgate(x, out_bf16=False) + comp.ape[pos % comp.ratio]).astype(F32)
    return a, z


def indexer_scores(qI, w, keys):
    """numerics step 9: l = bf16(f32(sum64 qI_h.KI_j)); t = bf16(max(l,0)*w_h);
    score_j = bf16(f32(sum64_h t_hj)). qI [IH, ihd], w [IH], keys [n, ihd] -> [n]."""
    l = bf16(vn.f32(dot64(qI, keys)))                                # [IH, n]
    t = bf16((np.maximum(l, F32(0)) * w[:, None]).astype(F32))
    return bf16(vn.f32(t.astype(F64).sum(0)))


def topk_order(scores, k):
    """score descending, then index ascending (numerics step 9)."""
    idx = np.lexsort((np.arange(len(scores)), -scores.astype(F64)))
    return idx[:k]


def attention_core(q, kvs, sink, scale):
    """numerics step 10. q [H, hd], kvs [T, hd] -> o [H, hd] bf16."""
    s = (vn.f32(dot64(q, kvs)) * np.float32(scale)).astype(F32)     # [H, T], fp32 multiply
    m = s.max(1, keepdims=True)
    e = exp32((s - m).astype(F32))
    # sink term: exp(f32(sink - m)) enters the fp64 sum unrounded, as numerics.md step 10 writes
    # it (the official kernel adds an fp32 exp; see docs/model.md, open questions)
    es = np.exp((sink[:, None] - m).astype(F32).astype(F64))
    z = vn.f32(e.astype(F64).sum(1, keepdims=True) + es)
    o = vn.f32(dot64(bf16(e), kvs.T))                               # f32(sum64 bf16(e_t) kv_t)
    return bf16((o / z).astype(F32))

# ---------------------------------------------------------------------------------------------
# Attention sublayer (M: Attention.forward, Indexer.forward; S: 2.6-2.8; numerics 4-11)


def attention(L, st, x, pos, cfg, dump):
    """x [S, D] bf16 (attn_norm output) at positions pos [S] -> out [S, D] bf16."""
    S, H, hd, rd = x.shape[0], cfg.n_heads, cfg.head_dim, cfg.rd
    # query path: qr = q_norm(wq_a(x)); q = wq_b(qr); per-head RMS (one fp64 rounding); RoPE
    qr = rmsnorm(L.wq_a(x), L.q_norm, cfg.norm_eps)
    q = L.wq_b(qr).reshape(S, H, hd)
    q = bf16((q * rms(q, cfg.norm_eps)[..., None]).astype(F32))
    q = rope(q, L.freqs, pos)
    # kv path: kv_norm(wkv(x)), RoPE, fake FP8 (block 64) on the nope dims
    kv = rmsnorm(L.wkv(x), L.kv_norm, cfg.norm_eps)
    kv = rope(kv, L.freqs, pos)
    kv[:, :cfg.nd] = vn.fake_fp8(kv[:, :cfg.nd], 64)
    if L.ratio:
        ca, cz = compressor_proj(L.comp, x, pos)
    if L.ratio == 4:
        # indexer query: wq_b(qr), RoPE, Hadamard, fake FP4; weights (M: Indexer.forward)
        qI = L.iwq_b(qr).reshape(S, cfg.ih, cfg.ihd)
        qI = vn.fake_fp4(hadamard(rope(qI, L.freqs, pos)), 32)
        wI = bf16((L.iweights(x) * F32(cfg.ihd ** -0.5 * cfg.ih ** -0.5)).astype(F32))
        ia, iz = compressor_proj(L.icomp, x, pos)
    o = np.zeros((S, H, hd), F32)
    for r in range(S):
        p = int(pos[r])
        comp_rows, topk = [], None
        if L.ratio == 4:   # indexer compressor first: a block completed by p is scoreable by p
            e = compressor_step(L.icomp, st.ics, ia[r], iz[r], p, L.freqs, cfg)
            if e is not None:
                st.ikeys.append(e)
                dump.add_entry("ikey", p, len(st.ikeys) - 1, e)
            n = len(st.ikeys)
            if n:
                sc = indexer_scores(qI[r], wI[r], np.stack(st.ikeys))
                topk = topk_order(sc, min(cfg.topk, n))
        st.kv.append(kv[r])                                          # window ring write
        if L.ratio:
            e = compressor_step(L.comp, st.cs, ca[r], cz[r], p, L.freqs, cfg)
            if e is not None:
                st.comp.append(e)
                dump.add_entry("comp", p, len(st.comp) - 1, e)
            if L.ratio == 4:
                comp_rows = list(topk) if topk is not None else []
            else:
                comp_rows = list(range(len(st.comp)))
        if L.ratio == 4:
            dump.add_row("topk", p, np.array(comp_rows, np.int64), pad=cfg.topk)
        win = st.kv[max(0, p - cfg.window + 1):p + 1]                 # window positions ascending
        kvs = np.stack(win + [st.comp[j] for j in comp_rows])
        o[r] = attention_core(q[r], kvs, L.sink, hd ** -0.5)
    o = rope(o, L.freqs, pos, inverse=True)                          # de-rotate the output
    dump.add("kv", kv)
    dump.add("attn_o", o)
    # grouped wo_a (bf16 weight, dequantised at load), then wo_b (FP8)
    G = cfg.o_groups
    og = o.reshape(S, G, -1)
    z = np.zeros((S, G, cfg.o_lora), F32)
    for g in range(G):
        z[:, g] = bf16(vn.f32(dot64(og[:, g], L.wo_a.w[g * cfg.o_lora:(g + 1) * cfg.o_lora])))
    return L.wo_b(z.reshape(S, -1))

# ---------------------------------------------------------------------------------------------
# MoE (M: Gate, Expert, MoE; S: 2.9; numerics 12-13)


def expert(w, x, weight, cfg):
    w1, w3, w2 = w
    g, u = w1(x), w3(x)                                              # bf16 outputs
    u = np.clip(u, -cfg.limit, cfg.limit)
    g = np.minimum(g, cfg.limit)
    g64 = g.astype(F64)
    h = (vn.f32(g64 / (1.0 + np.exp(-g64))) * u).astype(F32)         # f32(silu(g)) * u
    if weight is not None:
        h = (h * weight).astype(F32)
    return w2(bf16(h))


def moe(L, x, tokens, cfg, dump):
    S = x.shape[0]
    l = L.gate(x, out_bf16=False)                                    # fp32 linear
    l64 = l.astype(F64)
    sp = np.where(l64 > 20.0, l64, np.log1p(np.exp(np.minimum(l64, 20.0))))
    s = vn.f32(np.sqrt(sp))
    ids = np.zeros((S, cfg.n_active), np.int64)
    wts = np.zeros((S, cfg.n_active), F32)
    for r in range(S):
        if L.hash:
            sel = L.tid2eid[tokens[r]].astype(np.int64)
        else:
            b = (s[r] + L.bias).astype(F32)
            sel = topk_order(b, cfg.n_active)
        ssel = s[r][sel]
        w = ((ssel / vn.f32(ssel.astype(F64).sum())).astype(F32) * cfg.route_scale).astype(F32)
        ids[r], wts[r] = sel, w
    # experts run on the rows that chose them (row-independent arithmetic)
    eout = np.zeros((S, cfg.n_active, cfg.dim), F32)
    for e in range(cfg.n_experts):
        rr, kk = np.nonzero(ids == e)
        if len(rr):
            eout[rr, kk] = expert(L.experts[e], x[rr], wts[rr, kk][:, None], cfg)
    shared = expert(L.shared, x, None, cfg)
    # combine: routed experts in ascending expert id, then the shared expert (M: MoE.forward)
    out = np.zeros((S, cfg.dim), F32)
    for r in range(S):
        acc = np.zeros(cfg.dim, F64)
        for k in np.argsort(ids[r], kind="stable"):
            acc += eout[r, k].astype(F64)
        out[r] = bf16(vn.f32(acc + shared[r].astype(F64)))
    dump.add("moe_ids", ids)
    dump.add("moe_w", wts)
    return out

# ---------------------------------------------------------------------------------------------
# Block, model, MTP


def block(L, st, X, tokens, pos, cfg, dump):
    """M: Block.forward. X [S, hc, D] bf16 streams."""
    y, post, comb = hc_pre(X, L.hc_attn, cfg)
    out = attention(L, st, rmsnorm(y, L.attn_norm, cfg.norm_eps), pos, cfg, dump)
    X = hc_post(out, X, post, comb)
    dump.add("x_attn", X)
    y, post, comb = hc_pre(X, L.hc_ffn, cfg)
    out = moe(L, rmsnorm(y, L.ffn_norm, cfg.norm_eps), tokens, cfg, dump)
    X = hc_post(out, X, post, comb)
    dump.add("x_ffn", X)
    return X


def head_logits(model, X, hc, norm):
    """M: ParallelHead.forward: hc_head -> bf16 -> norm -> fp32 linear with head."""
    cfg = model.cfg
    return model.head(rmsnorm(hc_head(X, hc, cfg), norm, cfg.norm_eps), out_bf16=False)


class Dump:
    """Collects per-position intermediates; write() saves DIR/<layer>.<name>.npy (axis 0 =
    position, or entry index for comp/ikey with a parallel *_pos array)."""

    def __init__(self, enabled):
        self.on, self.d, self.prefix = enabled, {}, ""

    def _l(self, name):
        return self.d.setdefault(self.prefix + name, [])

    def add(self, name, arr):
        if self.on:
            self._l(name).extend(list(np.asarray(arr)))

    def add_row(self, name, p, row, pad):
        if self.on:
            r = np.full(pad, -1, np.int64)
            r[:len(row)] = row
            self._l(name).append(r)

    def add_entry(self, name, p, j, e):
        if self.on:
            self._l(name).append(np.asarray(e))
            self._l(name + "_pos").append(np.int64(p))

    def write(self, path):
        os.makedirs(path, exist_ok=True)
        for k, v in self.d.items():
            if v:
                np.save(os.path.join(path, k + ".npy"), np.stack(v))


class Session:
    """One sequence: positions 0, 1, ... State is created fresh (M: the official buffers are
    never reset between sequences; we reset, S: 9.6)."""

    def __init__(self, model, dump=False):
        self.m = model
        self.pos = 0
        self.st = [LayerState(L) for L in model.layers]
        self.mtp_st = LayerState(model.mtp) if model.mtp else None
        self.mtp_pos = 0
        self.dump = Dump(dump)

    def forward(self, tokens):
        """Append tokens at positions self.pos...; returns (logits [S, vocab] fp32, X [S, hc, D])."""
        m, cfg = self.m, self.m.cfg
        tokens = np.asarray(tokens, np.int64)
        S = len(tokens)
        pos = np.arange(self.pos, self.pos + S)
        X = np.repeat(m.embed[tokens][:, None, :], cfg.hc, axis=1)   # M: Transformer.forward
        for i, L in enumerate(m.layers):
            self.dump.prefix = f"L{i}."
            X = block(L, self.st[i], X, tokens, pos, cfg, self.dump)
        self.dump.prefix = ""
        logits = head_logits(m, X, m.hc_head, m.norm)
        self.dump.add("logits", logits)
        self.dump.add("x_final", X)
        self.pos += S
        return logits, X

    def mtp_forward(self, X_main, next_tokens):
        """M: MTPBlock.forward. Row i pairs the main model's final streams at position i with the
        embedding of token i+1 (S: 2.11, V3 convention) and runs at position i; returns the MTP
        logits (prediction of token i+2). Rows must come in position order from 0."""
        m, cfg, L = self.m, self.m.cfg, self.m.mtp
        next_tokens = np.asarray(next_tokens, np.int64)
        S = len(next_tokens)
        pos = np.arange(self.mtp_pos, self.mtp_pos + S)
        e = rmsnorm(m.embed[next_tokens], L.enorm, cfg.norm_eps)
        h = rmsnorm(X_main, L.hnorm, cfg.norm_eps)                   # per stream
        ep = L.e_proj(e)
        hp = L.h_proj(h.reshape(S * cfg.hc, -1)).reshape(S, cfg.hc, -1)
        X = bf16((ep[:, None, :] + hp).astype(F32))                  # bf16 + bf16 -> bf16
        self.dump.prefix = "mtp."
        X = block(L, self.mtp_st, X, next_tokens, pos, cfg, self.dump)
        logits = head_logits(m, X, L.hc_head, L.norm)
        self.dump.add("logits", logits)
        self.dump.prefix = ""
        self.mtp_pos += S
        return logits


def run(model, ids, chunk=0, dump=False, mtp=False):
    """Prefill ids in chunks of `chunk` tokens (0 = all at once). Returns (logits, mtp_logits, session)."""
    s = Session(model, dump)
    n = len(ids)
    step = chunk or max(n, 1)
    outs, xs = [], []
    for i in range(0, n, step):
        lg, X = s.forward(ids[i:i + step])
        outs.append(lg)
        xs.append(X)
    logits = np.concatenate(outs)
    mlog = None
    if mtp and model.mtp is not None and n > 1:
        X = np.concatenate(xs)
        mlog = s.mtp_forward(X[:n - 1], ids[1:n])
    return logits, mlog, s

# ---------------------------------------------------------------------------------------------
# Self-test


def selftest(model_dir):
    vn._selfcheck()
    # RoPE tables: the spec's YaRN blend (with smooth) equals the ramp form; low/high for 160000
    class C: pass
    c = C()
    c.rd, c.rope_theta, c.compress_rope_theta = 64, 10000.0, 160000.0
    c.rope_factor, c.orig_seq, c.beta_fast, c.beta_slow = 16.0, 65536.0, 32.0, 1.0
    f = rope_freqs(c, True).astype(F64)
    f0 = 1.0 / 160000.0 ** (2 * np.arange(32) / 64)
    assert np.allclose(f[:15], f0[:15], rtol=1e-7) and np.allclose(f[25:], f0[25:] / 16, rtol=1e-7)
    ramp = np.clip((np.arange(32) - 15) / 10.0, 0, 1)
    smooth = 1 - ramp
    assert np.array_equal(vn.f32(f0 / 16 * (1 - smooth) + f0 * smooth), f.astype(F32))
    # Hadamard is orthonormal; and FP8/FP4 linears: exact block sums
    Hm = hadamard_matrix(128)
    assert np.array_equal(Hm @ Hm.T, 128 * np.eye(128))
    # chunk invariance of the whole model (prefill == decode == chunked)
    model = Model(model_dir)
    rng = np.random.default_rng(7)
    ids = rng.integers(0, model.cfg.vocab, 37)
    a, ma, _ = run(model, ids, 0, mtp=True)
    b, mb, _ = run(model, ids, 1, mtp=True)
    c2, _, _ = run(model, ids, 5)
    assert np.array_equal(a, b) and np.array_equal(a, c2), "chunking changed the logits"
    assert np.array_equal(ma, mb)
    assert np.all(np.isfinite(a))
    print("v4ref self-test passed (prefill, decode and chunked prefill agree bit for bit)")

# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description="numpy reference forward pass of DeepSeek-V4")
    ap.add_argument("--model", default=os.path.join(os.path.dirname(__file__), "..", "..", "models", "tiny-v4"))
    ap.add_argument("--ids", help="JSON array of token ids")
    ap.add_argument("--out", help="logits output, little-endian float32 [positions, vocab]")
    ap.add_argument("--mtp-out", help="MTP logits output [positions-1, vocab] (row i: state i + token i+1)")
    ap.add_argument("--dump", help="directory for per-position intermediates (.npy)")
    ap.add_argument("--chunk", type=int, default=0, help="prefill chunk size (0 = one chunk); results are identical")
    ap.add_argument("--selftest", action="store_true")
    a = ap.parse_args()
    if a.selftest:
        selftest(a.model)
        return
    if not a.ids:
        ap.error("--ids is required")
    ids = np.array(json.load(open(a.ids)), np.int64)
    model = Model(a.model)
    logits, mlog, s = run(model, ids, a.chunk, dump=bool(a.dump), mtp=bool(a.mtp_out or a.dump))
    if a.out:
        logits.astype("<f4").tofile(a.out)
    if a.mtp_out and mlog is not None:
        mlog.astype("<f4").tofile(a.mtp_out)
    if a.dump:
        s.dump.write(a.dump)
    if not a.out:
        print("argmax:", logits.argmax(-1).tolist())


if __name__ == "__main__":
    main()
