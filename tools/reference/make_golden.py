#!/usr/bin/python3
"""Write the golden logits of the tiny model: tests/data/golden/<name>.ids.json and
<name>.logits.f32 (little-endian float32 [positions, vocab]); for some prompts also
<name>.mtp.f32 (MTP logits [positions-1, vocab]: row i = MTP block on the main model's final
streams at position i and the embedding of token i+1).

    /usr/bin/python3 tools/reference/make_golden.py [--model models/tiny-v4] [--out tests/data/golden]

Prompt lengths follow the schedule of the spec section 8 (1, 3, 4, 5, 15, 16, 17, 40) plus a
100-token prompt (past the 16-token window six times, 24 CSA blocks with top-4 selection, 6 HCA
blocks) and two shaped prompts. Deterministic (fixed seed); rerun to regenerate bit for bit.
Each prompt is run once as a one-shot prefill and once token by token; the two must agree bit
for bit (the reference's chunk invariance) or the script fails.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import v4ref  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def prompts(vocab):
    rng = np.random.default_rng(20260424)
    out = {}
    for n in (1, 3, 4, 5, 15, 16, 17, 40, 100):
        out[f"rand{n}"] = [int(t) for t in rng.integers(0, vocab, n)]
    # chat-shaped: BOS, <｜User｜> (id vocab-16), text ids, <｜Assistant｜>, </think> (tiny-v4 ids)
    user, assistant, end_think = vocab - 16, vocab - 15, vocab - 13
    body = [int(t) for t in rng.integers(3, vocab - 16, 20)]
    out["chat24"] = [0, user] + body + [assistant, end_think]
    # one token repeated: identical embeddings at every position (ties in the indexer and router)
    out["repeat33"] = [7] * 33
    return out


MTP = {"rand40", "rand100", "chat24"}


def main():
    ap = argparse.ArgumentParser(description="write golden logits of the tiny model")
    ap.add_argument("--model", default=os.path.join(REPO, "models", "tiny-v4"))
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "data", "golden"))
    a = ap.parse_args()
    model = v4ref.Model(a.model)
    os.makedirs(a.out, exist_ok=True)
    for name, ids in prompts(model.cfg.vocab).items():
        logits, mlog, _ = v4ref.run(model, np.array(ids), 0, mtp=name in MTP)
        step, mstep, _ = v4ref.run(model, np.array(ids), 1, mtp=name in MTP)
        assert np.array_equal(logits, step), f"{name}: prefill and decode differ"
        assert mlog is None or np.array_equal(mlog, mstep)
        with open(os.path.join(a.out, name + ".ids.json"), "w") as f:
            f.write(json.dumps(ids) + "\n")
        logits.astype("<f4").tofile(os.path.join(a.out, name + ".logits.f32"))
        if mlog is not None:
            mlog.astype("<f4").tofile(os.path.join(a.out, name + ".mtp.f32"))
        print(f"{name}: {len(ids)} positions, argmax {logits.argmax(-1)[:8].tolist()}...")


if __name__ == "__main__":
    main()
