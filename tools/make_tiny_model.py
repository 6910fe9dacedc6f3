#!/usr/bin/python3
"""Write a random-weight DeepSeek-V4 model directory (Hugging Face layout), deterministically.

    /usr/bin/python3 tools/make_tiny_model.py                      # -> models/tiny-v4/
    /usr/bin/python3 tools/make_tiny_model.py --config small OUT   # benchmark model (not committed)

Output: config.json (HF format, keys of the official V4-Flash config.json), model.safetensors
(written here: 8-byte LE header length + JSON header + packed data), tokenizer.json,
tokenizer_config.json. Debian python3 + numpy only; byte-identical on rerun.

Tiny config: /work/shared/spec/v4-architecture.md section 8. Tensor names, shapes and dtypes:
section 4.2 (names as in the official checkpoint, no "model." prefix). Quantised formats: 4.3
(FP8 e4m3 + E8M0 per 128x128 tile; routed experts FP4 e2m1 packed two per int8, low nibble =
even column, E8M0 per 1x32; wo_a stored FP8 like the real checkpoint).

Random weights (docs/model.md "Tiny model"): every tensor has its own generator
default_rng([SEED, crc32(name)]), so the values of a tensor do not depend on the others.
Linear weights N(0, 1/fan_in) (expert w1/w3 x3 and w2 /8 so that the SwiGLU clamp is
exercised, attention wo_b x2; not the 0.02 of section 8: with dim 128 that makes every
sublayer's contribution to the residual a few percent and the logits would test little but the
embedding), then quantised; norm weights 1 + N(0, 0.1^2) (not exactly 1, so a loader that
drops a norm weight is caught); attn_sink N(0,1); compressor ape N(0, 0.1^2); hc_*_fn
N(0, 0.01^2); hc_*_base N(0, 0.1^2); hc_*_scale 1 + N(0, 0.1^2); gate.bias N(0, 0.01^2); embed N(0,1);
tid2eid: per token a random set of distinct experts.
"""
import argparse
import json
import os
import shutil
import struct
import sys
import zlib

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
import v4num as vn  # noqa: E402

SEED = 20260424
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V4_TOKENIZER = "/work/shared/data/deepseek-v4-tokenizer"

# ------------------------------------------------------------------------------------ configs

QUANT = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
         "scale_fmt": "ue8m0", "weight_block_size": [128, 128]}
ROPE_SCALING = {"beta_fast": 32, "beta_slow": 1, "factor": 16,
                "original_max_position_embeddings": 65536, "type": "yarn"}


def hf_config(c):
    """Same keys, same order as shared/spec/deepseek-v4-flash.config.json."""
    return {
        "architectures": ["DeepseekV4ForCausalLM"],
        "model_type": "deepseek_v4",
        "attention_bias": False,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "expert_dtype": "fp4",
        "hc_eps": 1e-06,
        "hc_mult": 4,
        "hc_sinkhorn_iters": 20,
        "head_dim": c["head_dim"],
        "hidden_act": "silu",
        "hidden_size": c["dim"],
        "index_head_dim": c["index_head_dim"],
        "index_n_heads": c["index_n_heads"],
        "index_topk": c["index_topk"],
        "max_position_embeddings": c["max_pos"],
        "moe_intermediate_size": c["inter"],
        "n_routed_experts": c["n_experts"],
        "n_shared_experts": 1,
        "norm_topk_prob": True,
        "num_attention_heads": c["n_heads"],
        "num_experts_per_tok": c["n_active"],
        "num_hidden_layers": c["n_layers"],
        "num_hash_layers": c["n_hash"],
        "num_key_value_heads": 1,
        "num_nextn_predict_layers": c["n_mtp"],
        "o_groups": c["o_groups"],
        "o_lora_rank": c["o_lora"],
        "q_lora_rank": c["q_lora"],
        "qk_rope_head_dim": 64,
        "quantization_config": QUANT,
        "rms_norm_eps": 1e-06,
        "rope_scaling": ROPE_SCALING,
        "rope_theta": 10000,
        "compress_rope_theta": 160000,
        "routed_scaling_factor": 1.5,
        "scoring_func": "sqrtsoftplus",
        "sliding_window": c["window"],
        "swiglu_limit": 10.0,
        "tie_word_embeddings": False,
        "topk_method": "noaux_tc",
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "vocab_size": c["vocab"],
        "compress_ratios": c["ratios"],
    }


TINY = dict(vocab=512, dim=128, n_layers=4, ratios=[0, 4, 16, 4, 0], n_hash=2, n_mtp=1,
            n_heads=4, head_dim=128, q_lora=128, o_groups=2, o_lora=64, window=16,
            index_n_heads=4, index_head_dim=128, index_topk=4, n_experts=8, n_active=2,
            inter=128, max_pos=4096)
SMALL = dict(vocab=129280, dim=1024, n_layers=8, ratios=[0, 4, 128, 4, 128, 4, 128, 4], n_hash=3,
             n_mtp=0, n_heads=8, head_dim=512, q_lora=512, o_groups=4, o_lora=256, window=128,
             index_n_heads=16, index_head_dim=128, index_topk=512, n_experts=16, n_active=2,
             inter=512, max_pos=1048576)

# ------------------------------------------------------------------------------------ weights


def rng_for(name):
    return np.random.default_rng([SEED, zlib.crc32(name.encode())])


def normal(name, shape, std, mean=0.0):
    return (mean + std * rng_for(name).standard_normal(shape)).astype(np.float32)


class Writer:
    """Collects (name -> dtype, shape, bytes) and writes one safetensors file."""

    def __init__(self):
        self.t = {}

    def add(self, name, dtype, shape, data):
        data = np.ascontiguousarray(data)
        self.t[name] = (dtype, list(shape), data.tobytes())
        assert len(self.t[name][2]) == int(np.prod(shape)) * {"BF16": 2, "F32": 4, "I64": 8}.get(dtype, 1), name

    def bf16(self, name, x):
        self.add(name, "BF16", x.shape, vn.bf16_bits(vn.bf16(x.astype(np.float32))))

    def f32(self, name, x):
        self.add(name, "F32", x.shape, x.astype("<f4"))

    def fp8_linear(self, prefix, out_f, in_f, gain=1.0):
        w = normal(prefix + ".weight", (out_f, in_f), gain * in_f ** -0.5)
        q, s = vn.quantize_weight_fp8(w)
        self.add(prefix + ".weight", "F8_E4M3", q.shape, q)
        self.add(prefix + ".scale", "F8_E8M0", s.shape, s)

    def fp4_linear(self, prefix, out_f, in_f, gain=1.0):
        w = normal(prefix + ".weight", (out_f, in_f), gain * in_f ** -0.5)
        q, s = vn.quantize_weight_fp4(w)
        self.add(prefix + ".weight", "I8", q.shape, q)
        self.add(prefix + ".scale", "F8_E8M0", s.shape, s)

    def bf16_linear(self, name, out_f, in_f):
        self.bf16(name, normal(name, (out_f, in_f), in_f ** -0.5))

    def norm(self, name, n):
        self.bf16(name, normal(name, (n,), 0.1, 1.0))

    def write(self, path):
        # alignment-descending order (8-byte, 4, 2, 1), then name: every tensor naturally aligned
        size = {"I64": 8, "F32": 4, "BF16": 2}
        names = sorted(self.t, key=lambda n: (-size.get(self.t[n][0], 1), n))
        header, off = {"__metadata__": {"format": "pt"}}, 0
        for n in names:
            dt, shape, b = self.t[n]
            header[n] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
            off += len(b)
        h = json.dumps(header, separators=(",", ":")).encode()
        h += b" " * (-len(h) % 8)
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(h)))
            f.write(h)
            for n in names:
                f.write(self.t[n][2])
        return off


def block_weights(w, p, c, ratio, layer_id, hash_layer):
    D, H, hd = c["dim"], c["n_heads"], c["head_dim"]
    for site in ("attn", "ffn"):
        w.f32(f"{p}hc_{site}_fn", normal(f"{p}hc_{site}_fn", (24, 4 * D), 0.01))
        w.f32(f"{p}hc_{site}_base", normal(f"{p}hc_{site}_base", (24,), 0.1))
        w.f32(f"{p}hc_{site}_scale", normal(f"{p}hc_{site}_scale", (3,), 0.1, 1.0))
    w.norm(f"{p}attn_norm.weight", D)
    w.norm(f"{p}ffn_norm.weight", D)
    a = p + "attn."
    w.f32(a + "attn_sink", normal(a + "attn_sink", (H,), 1.0))
    w.fp8_linear(a + "wq_a", c["q_lora"], D)
    w.norm(a + "q_norm.weight", c["q_lora"])
    w.fp8_linear(a + "wq_b", H * hd, c["q_lora"])
    w.fp8_linear(a + "wkv", hd, D)
    w.norm(a + "kv_norm.weight", hd)
    w.fp8_linear(a + "wo_a", c["o_groups"] * c["o_lora"], H * hd // c["o_groups"])
    w.fp8_linear(a + "wo_b", D, c["o_groups"] * c["o_lora"], 2.0)
    if ratio:
        coff = 2 if ratio == 4 else 1
        cp = a + "compressor."
        w.f32(cp + "ape", normal(cp + "ape", (ratio, coff * hd), 0.1))
        w.bf16_linear(cp + "wkv.weight", coff * hd, D)
        w.bf16_linear(cp + "wgate.weight", coff * hd, D)
        w.norm(cp + "norm.weight", hd)
    if ratio == 4:
        ip, ihd, ih = a + "indexer.", c["index_head_dim"], c["index_n_heads"]
        w.fp8_linear(ip + "wq_b", ih * ihd, c["q_lora"])
        w.bf16_linear(ip + "weights_proj.weight", ih, D)
        cp = ip + "compressor."
        w.f32(cp + "ape", normal(cp + "ape", (4, 2 * ihd), 0.1))
        w.bf16_linear(cp + "wkv.weight", 2 * ihd, D)
        w.bf16_linear(cp + "wgate.weight", 2 * ihd, D)
        w.norm(cp + "norm.weight", ihd)
    f = p + "ffn."
    E, K = c["n_experts"], c["n_active"]
    w.bf16_linear(f + "gate.weight", E, D)
    if hash_layer:
        r = rng_for(f + "gate.tid2eid")
        t = np.stack([r.permutation(E)[:K] for _ in range(c["vocab"])]).astype("<i8")
        w.add(f + "gate.tid2eid", "I64", t.shape, t)
    else:
        w.f32(f + "gate.bias", normal(f + "gate.bias", (E,), 0.01))
    # w1/w3 with gain 3 so that the SwiGLU clamp (limit 10) is hit now and then; w2 with 1/8
    for e in range(E):
        w.fp4_linear(f"{f}experts.{e}.w1", c["inter"], D, 3.0)
        w.fp4_linear(f"{f}experts.{e}.w3", c["inter"], D, 3.0)
        w.fp4_linear(f"{f}experts.{e}.w2", D, c["inter"], 1 / 8)
    w.fp8_linear(f + "shared_experts.w1", c["inter"], D, 3.0)
    w.fp8_linear(f + "shared_experts.w3", c["inter"], D, 3.0)
    w.fp8_linear(f + "shared_experts.w2", D, c["inter"], 1 / 8)


def make_weights(c):
    w, D = Writer(), c["dim"]
    w.bf16("embed.weight", normal("embed.weight", (c["vocab"], D), 1.0))
    for i in range(c["n_layers"]):
        block_weights(w, f"layers.{i}.", c, c["ratios"][i], i, i < c["n_hash"])
    w.norm("norm.weight", D)
    w.bf16_linear("head.weight", c["vocab"], D)
    w.f32("hc_head_fn", normal("hc_head_fn", (4, 4 * D), 0.01))
    w.f32("hc_head_base", normal("hc_head_base", (4,), 0.1))
    w.f32("hc_head_scale", normal("hc_head_scale", (1,), 0.1, 1.0))
    for k in range(c["n_mtp"]):
        p = f"mtp.{k}."
        block_weights(w, p, c, c["ratios"][c["n_layers"] + k], c["n_layers"] + k, False)
        w.fp8_linear(p + "e_proj", D, D)
        w.fp8_linear(p + "h_proj", D, D)
        w.norm(p + "enorm.weight", D)
        w.norm(p + "hnorm.weight", D)
        w.norm(p + "norm.weight", D)
        w.f32(p + "hc_head_fn", normal(p + "hc_head_fn", (4, 4 * D), 0.01))
        w.f32(p + "hc_head_base", normal(p + "hc_head_base", (4,), 0.1))
        w.f32(p + "hc_head_scale", normal(p + "hc_head_scale", (1,), 0.1, 1.0))
    return w


def n_params(w):
    """logical parameter count (FP4 bytes hold two parameters; scales not counted)."""
    n = 0
    for name, (dt, shape, _) in w.t.items():
        if name.endswith(".scale") and dt == "F8_E8M0":
            continue
        n += int(np.prod(shape)) * (2 if dt == "I8" else 1)
    return n

# ------------------------------------------------------------------------------------ tokenizer

# Training text for the tiny BPE (English, code, JSON, chat markup, several languages).
TRAIN_TEXT = r'''
The quick brown fox jumps over the lazy dog. The dog was not amused, and the fox ran into the
forest before the farmer could see it. In the morning the sun rose over the hills and the
people of the town went to work. They talked about the weather, the prices in the market and
the news from the city. Hello! How are you today? I am fine, thank you. What is 2+2? It is 4.
The year 2026 has 365 days. A model is a function that maps tokens to logits; the tokenizer
maps text to tokens. This is a test of the tokenizer: it should learn the most common pairs of
bytes in this text, such as "th", "he", "in", "er", "an", " the", " and", " to", " of".
You are a helpful assistant. Please answer the question of the user as well as you can.
The assistant thinks step by step, then it writes the final answer for the user.
Reasoning: first we read the question, then we check the facts, then we write the answer.

def forward(self, x, start_pos):
    """Run the model on x and return the logits."""
    for layer in self.layers:
        x = layer(x, start_pos)
    return self.head(self.norm(x))

int main(int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        printf("%s\n", argv[i]);
    }
    return 0;
}

static td_err td_model_load(td_model **out, const char *path) {
    if (path == NULL) return TD_EINVAL;
    return TD_OK;
}

{"name": "get_weather", "description": "Get the weather forecast for a city",
 "parameters": {"type": "object", "properties": {"city": {"type": "string"},
 "days": {"type": "integer"}}, "required": ["city"]}}

<｜DSML｜tool_calls>
<｜DSML｜invoke name="get_weather">
<｜DSML｜parameter name="city" string="true">Tokyo</｜DSML｜parameter>
<｜DSML｜parameter name="days" string="false">3</｜DSML｜parameter>
</｜DSML｜invoke>
</｜DSML｜tool_calls>
<tool_result>{"forecast": "sunny"}</tool_result>

Der schnelle braune Fuchs springt über den faulen Hund. Die Straße ist lang und grün.
Le renard brun rapide saute par-dessus le chien paresseux. C'est très bien, merci beaucoup.
El zorro marrón rápido salta sobre el perro perezoso. ¿Dónde está la biblioteca?
Быстрая коричневая лиса прыгает через ленивую собаку. Привет, как дела?
你好，世界！今天天气很好。我们一起去学校学习。
こんにちは、世界。今日はいい天気ですね。カタカナとひらがな。
안녕하세요 세계. 🙂 🚀 ✓ → ≤ ≥ ∑ π ≈ 3.14159 e = 2.71828 1234567 0x7FFF 1e-6
'''


def bytes_to_unicode():
    """GPT-2 byte table: printable bytes map to themselves, the other 68 to U+0100.. in order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _cat(ch):
    import unicodedata
    return unicodedata.category(ch)


def pretokenize(text):
    """Approximation of the V4 pre-tokenizer (tokenizer.json, 7.1 of the spec) used only to
    collect training words for the merges: digit runs of <= 3, CJK runs, then the alternation."""
    def is_L(c): return _cat(c).startswith("L")
    def is_M(c): return _cat(c).startswith("M")
    def is_PS(c): return _cat(c)[0] in "PS"
    def is_N(c): return _cat(c).startswith("N")
    def is_cjk(c): o = ord(c); return 0x4E00 <= o <= 0x9FA5 or 0x3040 <= o <= 0x30FF
    out, pieces = [], []
    i = 0
    while i < len(text):  # steps 1 and 2
        j = i
        if is_N(text[i]):
            while j < len(text) and j - i < 3 and is_N(text[j]):
                j += 1
        elif is_cjk(text[i]):
            while j < len(text) and is_cjk(text[j]):
                j += 1
        else:
            while j < len(text) and not is_N(text[j]) and not is_cjk(text[j]):
                j += 1
            pieces.append((text[i:j], True))
            i = j
            continue
        pieces.append((text[i:j], False))
        i = j
    for s, split in pieces:
        if not split:
            out.append(s)
            continue
        i, gap = 0, ""
        while i < len(s):
            m = 0
            c = s[i]
            if c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~" and i + 1 < len(s) and s[i + 1].isascii() and s[i + 1].isalpha():
                j = i + 1
                while j < len(s) and s[j].isascii() and s[j].isalpha():
                    j += 1
                m = j - i
            if not m:
                j = i + 1 if (c not in "\r\n" and not is_L(c) and not is_PS(c)) else i
                for start in ([j, i] if j != i else [i]):
                    k = start
                    while k < len(s) and (is_L(s[k]) or is_M(s[k])):
                        k += 1
                    if k > start:
                        m = k - i
                        break
            if not m:
                j = i + 1 if c == " " else i
                k = j
                while k < len(s) and is_PS(s[k]):
                    k += 1
                if k > j:
                    while k < len(s) and s[k] in "\r\n":
                        k += 1
                    m = k - i
            if not m and c.isspace():
                k = i
                while k < len(s) and s[k].isspace():
                    k += 1
                last_nl = max(s.rfind("\r", i, k), s.rfind("\n", i, k))
                if last_nl >= i:
                    m = last_nl + 1 - i
                elif k < len(s) and k - i >= 2:
                    m = k - i - 1
                else:
                    m = k - i
            if m:
                if gap:
                    out.append(gap)
                    gap = ""
                out.append(s[i:i + m])
                i += m
            else:
                gap += c
                i += 1
        if gap:
            out.append(gap)
    return out


def learn_merges(text, n_merges):
    b2u = bytes_to_unicode()
    counts = {}
    for tok in ADDED:  # added tokens are matched before the BPE; do not learn merges from them
        text = text.replace(tok, " ")
    for piece in pretokenize(text):
        word = tuple(b2u[b] for b in piece.encode("utf-8"))
        counts[word] = counts.get(word, 0) + 1
    words = [[list(w), n] for w, n in sorted(counts.items())]
    merges = []
    for _ in range(n_merges):
        pairs = {}
        for syms, n in words:
            for a, b in zip(syms, syms[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))   # most frequent; ties: lexicographic
        merges.append(best)
        new = best[0] + best[1]
        for wd in words:
            s, out, i = wd[0], [], 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == best[0] and s[i + 1] == best[1]:
                    out.append(new)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            wd[0] = out
    return merges


ADDED = ["<｜User｜>", "<｜Assistant｜>", "<think>", "</think>", "｜DSML｜", "<｜begin▁sys｜>",
         "<｜end▁sys｜>", "<｜latest_reminder｜>", "<｜action｜>", "<｜query｜>", "<｜authority｜>",
         "<｜domain｜>", "<｜title｜>", "<｜extracted_url｜>", "<｜read_url｜>", "<｜end_of_query｜>"]


def make_tokenizer(vocab_size):
    v4 = json.load(open(os.path.join(V4_TOKENIZER, "tokenizer.json"), encoding="utf-8"))
    flags = {t["content"]: t for t in v4["added_tokens"]}
    b2u = bytes_to_unicode()
    vocab = {}
    for t in v4["added_tokens"][:3]:
        vocab[t["content"]] = t["id"]
    for s in b2u.values():  # ids 3..258 in GPT-2 table order, as V4 (vocab order of the V4 file)
        vocab[s] = len(vocab)
    v4_order = [k for k, _ in sorted(v4["model"]["vocab"].items(), key=lambda kv: kv[1])[3:259]]
    assert list(vocab)[3:] == v4_order, "byte symbol order differs from V4"
    n_merges = vocab_size - 259 - len(ADDED)
    merges = learn_merges(TRAIN_TEXT, n_merges)
    assert len(merges) == n_merges
    for a, b in merges:
        assert a + b not in vocab
        vocab[a + b] = len(vocab)
    added = []
    for t in v4["added_tokens"][:3]:
        added.append(dict(t))
    for i, s in enumerate(ADDED):
        t = dict(flags[s])
        t["id"] = vocab_size - len(ADDED) + i
        added.append(t)
    tok = {
        "version": v4["version"], "truncation": v4["truncation"], "padding": v4["padding"],
        "added_tokens": added,
        "normalizer": v4["normalizer"], "pre_tokenizer": v4["pre_tokenizer"],
        "post_processor": v4["post_processor"], "decoder": v4["decoder"],
        "model": dict(v4["model"], vocab=vocab, merges=[a + " " + b for a, b in merges]),
    }
    assert list(tok["model"]) == list(v4["model"])
    return json.dumps(tok, ensure_ascii=False, indent=2)

# ------------------------------------------------------------------------------------ main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", choices=["tiny", "small"], default="tiny")
    ap.add_argument("out", nargs="?", help="output directory (default models/tiny-v4 for tiny)")
    a = ap.parse_args()
    c = TINY if a.config == "tiny" else SMALL
    out = a.out or (os.path.join(REPO, "models", "tiny-v4") if a.config == "tiny" else None)
    if out is None:
        ap.error("--config small needs an output directory")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        f.write(json.dumps(hf_config(c), indent=2) + "\n")
    w = make_weights(c)
    nbytes = w.write(os.path.join(out, "model.safetensors"))
    if a.config == "tiny":
        with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
            f.write(make_tokenizer(c["vocab"]))
        tc = json.load(open(os.path.join(V4_TOKENIZER, "tokenizer_config.json")))
        with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps(tc, ensure_ascii=False, indent=2))
    else:
        for fn in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(os.path.join(V4_TOKENIZER, fn), os.path.join(out, fn))
    print(f"{out}: {len(w.t)} tensors, {n_params(w) / 1e6:.2f} M parameters, {nbytes / 1e6:.2f} MB of tensor data")


if __name__ == "__main__":
    main()
