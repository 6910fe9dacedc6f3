#!/usr/bin/python3
"""Compare two logits files (little-endian float32, row-major [positions, vocab]).

    compare_logits.py A.f32 B.f32 --vocab 512 [--tol 0] [--max-argmax-mismatch 0]

Prints the number of positions, the max abs difference (and where), the first position that
differs at all, and the count of positions whose argmax differs (argmax ties: lowest id).
Exit status: 0 within tolerance, 1 beyond it, 2 on unreadable or mismatched input.
"""
import argparse
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--vocab", type=int, required=True)
    ap.add_argument("--tol", type=float, default=0.0, help="max allowed abs difference (default 0: bit-exact values)")
    ap.add_argument("--max-argmax-mismatch", type=int, default=0, help="max allowed positions whose argmax differs")
    a = ap.parse_args()
    try:
        x = np.fromfile(a.a, "<f4")
        y = np.fromfile(a.b, "<f4")
    except OSError as e:
        print(f"compare_logits: {e}", file=sys.stderr)
        return 2
    if x.size % a.vocab or y.size % a.vocab or x.size != y.size:
        print(f"compare_logits: sizes {x.size} and {y.size} floats do not match / are not multiples of vocab {a.vocab}",
              file=sys.stderr)
        return 2
    x, y = x.reshape(-1, a.vocab), y.reshape(-1, a.vocab)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        print("compare_logits: non-finite values", file=sys.stderr)
        return 1
    d = np.abs(x.astype(np.float64) - y.astype(np.float64))
    n = x.shape[0]
    worst = np.unravel_index(np.argmax(d), d.shape) if n else (0, 0)
    maxd = float(d.max()) if n else 0.0
    rows = np.nonzero(d.max(1) > 0)[0] if n else []
    am = int(np.sum(x.argmax(1) != y.argmax(1))) if n else 0
    print(f"positions {n}  max_abs_diff {maxd:.6g} (position {worst[0]}, id {worst[1]})  "
          f"first_diff_position {rows[0] if len(rows) else -1}  bit_exact_positions {n - len(rows)}  "
          f"argmax_mismatch {am}")
    ok = maxd <= a.tol and am <= a.max_argmax_mismatch
    print("OK" if ok else f"FAIL (tol {a.tol}, max argmax mismatch {a.max_argmax_mismatch})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
