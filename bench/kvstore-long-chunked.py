#!/usr/bin/python3
"""Resume vs recompute for a session too long to prefill in one sitting (the
small model at 128K tokens takes hours on a 2-core CPU): the session is
prefilled in turns of STEP tokens, each turn extending the state the last one
left (from memory, or from disk after a restart), and the turns' times add up
to the recompute a resume saves (tandem's prefill is chunk-invariant,
docs/numerics.md: the state after the turns is the state after one prefill).
Progress is kept in WORKDIR (the store, and progress.json with every turn's
time), so the script can be stopped at any point and run again to go on.

usage: bench/kvstore-long-chunked.py WORKDIR [BUILD] [MODEL] [TOKENS] [STEP]
       (defaults: build, models/tiny-v4, 131072, 8192)

Once the session has TOKENS tokens: turn x (the session + 64 tokens, 16
generated) is answered from memory, the server is stopped (SIGTERM writes
its cache to disk), a new one answers turn x again resuming from disk, and
the two answers must be equal. Prints the turns, the sum, the resume time
the server logs and the ratio. MODEL is copied (symlinks) with its position
limit raised (the weights do not depend on it). Run it niced beside other
work: `nice -n 19 bench/kvstore-long-chunked.py ...`.
"""
import http.client
import json
import os
import random
import re
import signal
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if len(sys.argv) < 2:
    sys.exit(__doc__)
WORK = os.path.abspath(sys.argv[1])
BUILD = sys.argv[2] if len(sys.argv) > 2 else "build"
SRC = os.path.abspath(sys.argv[3] if len(sys.argv) > 3 else os.path.join(ROOT, "models", "tiny-v4"))
N = int(sys.argv[4]) if len(sys.argv) > 4 else 131072
STEP = int(sys.argv[5]) if len(sys.argv) > 5 else 8192
TANDEM = os.path.abspath(os.path.join(BUILD, "tandem"))
sys.argv = [sys.argv[0], TANDEM, os.path.join(ROOT, "models", "tiny-v4")]
sys.path.insert(0, os.path.join(ROOT, "tests", "integration", "serve"))
import serve_test as st  # noqa: E402
from serve_test import check  # noqa: E402


def complete(srv, prompt, n):
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=24 * 3600)
    c.request("POST", "/v1/completions", json.dumps(dict(prompt=prompt, max_tokens=n,
                                                         temperature=0)),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    out = r.read()
    check(r.status == 200, "status %d: %s" % (r.status, out[:300]))
    j = json.loads(out)
    return j["choices"][0]["text"], j["usage"]["prompt_tokens_details"]["cached_tokens"]


def model_copy():
    model = os.path.join(WORK, "model")
    if not os.path.isdir(model):
        os.makedirs(model)
        for f in os.listdir(SRC):
            if f != "config.json":
                os.symlink(os.path.join(SRC, f), os.path.join(model, f))
        cfg = json.load(open(os.path.join(SRC, "config.json")))
        cfg["max_position_embeddings"] = max(cfg["max_position_embeddings"], 2 * N + 4096)
        json.dump(cfg, open(os.path.join(model, "config.json"), "w"))
    return model


def load_progress(path):
    if os.path.exists(path):
        p = json.load(open(path))
        check(p["tokens"] == N and p["step"] == STEP and p["model"] == SRC,
              "%s is for another run: %s" % (path, p))
        return p
    return {"tokens": N, "step": STEP, "model": SRC, "done": 0, "turns": []}


def save(path, p):
    with open(path + ".tmp", "w") as f:
        json.dump(p, f, indent=1)
    os.replace(path + ".tmp", path)


def main():
    os.makedirs(WORK, exist_ok=True)
    model = model_copy()
    prog_path = os.path.join(WORK, "progress.json")
    prog = load_progress(prog_path)
    rng = random.Random(5)
    p = [rng.randrange(2, 500) for _ in range(N)]
    x = [rng.randrange(2, 500) for _ in range(64)]
    store = os.path.join(WORK, "store")
    common = ["--in-process", "--max-body", str(64 << 20), "--ctx", str(N + 256),
              "--kv-store", store]
    # A server left by a run that was killed holds the store's lock.
    pid_path = os.path.join(WORK, "server.pid")
    if os.path.exists(pid_path):
        try:
            os.kill(int(open(pid_path).read()), signal.SIGKILL)
            time.sleep(1)
        except (ProcessLookupError, ValueError):
            pass
    # Idle states go to disk after a second: the state a turn extends is on
    # disk soon after the turn starts, so a run killed mid-turn loses that
    # turn only.
    srv = st.Server(model=model, extra=common + ["--prefix-cache-mib", "4096",
                                                 "--kv-spill-idle-ms", "1000"])
    open(pid_path, "w").write(str(srv.proc.pid))
    try:
        srv.wait_ready()
        while prog["done"] < N:
            a, b = prog["done"], min(prog["done"] + STEP, N)
            t = time.time()
            _, cached = complete(srv, p[:b], 1)
            dt = time.time() - t
            if cached != a:
                # A run killed before the state at a reached the disk: this
                # turn went on from an earlier one; the turns after that are
                # dropped (their state is gone, and this turn redid them).
                check(cached < a and (cached == 0 or any(t[1] == cached for t in prog["turns"])),
                      "turn to %d: %d tokens cached, want %d" % (b, cached, a))
                print("went on from %d tokens, not %d (a run was killed)" % (cached, a))
                prog["turns"] = [t for t in prog["turns"] if t[1] <= cached]
                a = cached
            prog["turns"].append([a, b, round(dt, 2), os.getloadavg()[0]])
            prog["done"] = b
            save(prog_path, prog)
            print("turn %d..%d: %.1f s (load %.1f)" % (a, b, dt, os.getloadavg()[0]), flush=True)
        want, cached = complete(srv, p + x, 16)
        check(cached == N, "turn x from memory: %d cached" % cached)
        check(srv.stop() == 0, "exit status")
        srv = st.Server(model=model, extra=common)
        open(pid_path, "w").write(str(srv.proc.pid))
        srv.wait_ready()
        t = time.time()
        got, cached = complete(srv, p + x, 16)
        tx = time.time() - t
        log = srv.stderr()
        check(cached == N, "after the restart: %d cached, want %d" % (cached, N))
        check(got == want, "after the restart %r != from memory %r" % (got, want))
        srv.stop()
        m = re.findall(r"resumed (\d+) of \d+ prompt tokens from disk in ([0-9.]+) ms", log)
        resume_ms = float(m[-1][1]) if m else float("nan")
        total = sum(t[2] for t in prog["turns"])
        print("%d tokens prefilled in %d turns of %d: %.1f s in all; resumed from disk in "
              "%.1f ms (%.0fx); turn x after the restart %.2f s, identical to the answer "
              "from memory" % (N, len(prog["turns"]), STEP, total, resume_ms,
                               total / (resume_ms / 1000), tx))
        prog["resume_ms"] = resume_ms
        prog["identical"] = True
        save(prog_path, prog)
        return 0
    finally:
        if srv.proc.poll() is None:
            srv.kill()


if __name__ == "__main__":
    sys.exit(main())
