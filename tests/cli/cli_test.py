#!/usr/bin/python3
"""The `tandem` commands of the model runtime, as a user drives them.

Usage: cli_test.py TANDEM SOURCE_ROOT
"""
import json
import os
import subprocess
import sys
import tempfile

TANDEM, ROOT = sys.argv[1], sys.argv[2]
MODEL = os.path.join(ROOT, "models", "tiny-v4")
failures = 0


def run(*args):
    p = subprocess.run([TANDEM, *args], capture_output=True, timeout=300)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def check(name, cond, detail=""):
    global failures
    print(("ok   " if cond else "FAIL ") + name + ("" if cond else ": " + detail))
    if not cond:
        failures += 1


def gen(*extra):
    return run("generate", "--model", MODEL, "--prompt", "The quick brown fox", "--threads", "1",
               *extra)


# Greedy is deterministic; sampling is reproducible by seed.
a, b = gen("--max-tokens", "24"), gen("--max-tokens", "24")
check("greedy runs", a[0] == 0, a[2])
check("greedy is deterministic", a[1] == b[1] and len(a[1]) > 1)
s1 = gen("--max-tokens", "24", "--temperature", "1", "--seed", "7")
s2 = gen("--max-tokens", "24", "--temperature", "1", "--seed", "7")
s3 = gen("--max-tokens", "24", "--temperature", "1", "--seed", "8")
check("seeded sampling reproduces", s1[0] == 0 and s1[1] == s2[1])
check("another seed samples another text", s1[1] != s3[1])
tk = gen("--max-tokens", "24", "--temperature", "1", "--top-k", "1", "--seed", "5")
check("top-k 1 equals greedy", tk[1] == a[1], repr(tk[1][:40]) + " vs " + repr(a[1][:40]))
tp = gen("--max-tokens", "24", "--temperature", "0.8", "--top-p", "0.000001", "--seed", "5")
check("tiny top-p equals greedy", tp[1] == a[1])

# A stop string ends the stream right after it appears.
full = a[1].rstrip(b"\n")
stop = full[len(full) // 2:len(full) // 2 + 3]
st = gen("--max-tokens", "24", "--stop", stop.decode("utf-8", errors="ignore") or "x")
check("stop string ends the output early", st[0] == 0 and len(st[1]) <= len(a[1]))

z = gen("--max-tokens", "0")
check("max-tokens 0 generates nothing", z[0] == 0 and z[1].strip() == b"")

# Prompt longer than the context: a clear error, not a crash.
rc, out, err = gen("--ctx", "3")
check("prompt past the context is refused", rc == 1 and "context" in err, err)
with tempfile.TemporaryDirectory() as tmp:
    ids = os.path.join(tmp, "ids.json")
    with open(ids, "w") as f:
        json.dump(list(range(40)), f)
    rc, out, err = run("logits", "--model", MODEL, "--ids", ids, "--ctx", "16", "--out",
                       os.path.join(tmp, "x.f32"))
    check("logits past the context is refused", rc == 1 and "context" in err, err)

    # --prompt and --ids give the same logits when the ids are the prompt's.
    rc, out, err = run("tokenize", "--tokenizer", os.path.join(MODEL, "tokenizer.json"),
                       "Hello, world! 2026")
    check("tokenize prints a JSON array", rc == 0 and isinstance(json.loads(out), list), err)
    # --decode takes the array back to the text; [] is no text. Arrays it
    # cannot read are usage errors (2); an id the vocabulary lacks is not (1).
    tok = os.path.join(MODEL, "tokenizer.json")
    rc2, text, err2 = run("tokenize", "--tokenizer", tok, "--decode", out.decode())
    check("tokenize --decode round-trips", rc2 == 0 and text == b"Hello, world! 2026\n", err2)
    check("tokenize --decode []", run("tokenize", "--tokenizer", tok, "--decode", "[]")[:2] ==
          (0, b"\n"))
    for bad, want in (("[1, 2", 2), ("{}", 2), ('[1, "x"]', 2), ("[4294967296]", 2),
                      ("[-3]", 1), ("[99999]", 1)):
        rc2, _, err2 = run("tokenize", "--tokenizer", tok, "--decode", bad)
        check("tokenize --decode %s exits %d" % (bad, want), rc2 == want and err2.strip(), err2)
    with open(ids, "wb") as f:
        f.write(out)
    r1 = run("logits", "--model", MODEL, "--ids", ids, "--out", os.path.join(tmp, "a.f32"))
    r2 = run("logits", "--model", MODEL, "--prompt", "Hello, world! 2026", "--out",
             os.path.join(tmp, "b.f32"))
    same = open(os.path.join(tmp, "a.f32"), "rb").read() == open(os.path.join(tmp, "b.f32"), "rb").read()
    check("logits --prompt equals --ids", r1[0] == 0 and r2[0] == 0 and same, r1[2] + r2[2])
    n = len(json.loads(out))
    check("logits file is [positions, vocab] float32",
          os.path.getsize(os.path.join(tmp, "a.f32")) == n * 512 * 4)

    # Bad ids files.
    for bad, what in ((b"[1, 2", "truncated JSON"), (b"[]", "empty array"),
                      (b"[1, -3]", "negative id"), (b'{"a": 1}', "not an array"),
                      (b"[1, 99999]", "id outside the vocabulary")):
        with open(ids, "wb") as f:
            f.write(bad)
        rc, out, err = run("logits", "--model", MODEL, "--ids", ids, "--out",
                           os.path.join(tmp, "c.f32"))
        check("logits refuses " + what, rc == 1 and err.strip() != "", err)

# Usage errors exit 2, a missing model exits 1 naming the path.
check("unknown option is a usage error", gen("--bogus", "1")[0] == 2)
check("bad number is a usage error", gen("--max-tokens", "many")[0] == 2)
rc, out, err = run("generate", "--model", "/nonexistent/model", "--prompt", "hi")
check("missing model directory is named", rc == 1 and "/nonexistent/model" in err, err)
check("unknown command is a usage error", run("frobnicate")[0] == 2)

print(f"{failures} failures")
sys.exit(1 if failures else 0)
