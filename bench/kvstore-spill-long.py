#!/usr/bin/python3
"""A tiny-model session of at least 128K tokens, spilled to disk, the server
restarted, and resumed: the next turn must continue token-identically to the
same turn answered from memory, never spilled (issue 5 acceptance). Opt-in
(not in make test): a 128K-token prefill takes many minutes on a small CPU.

usage: bench/kvstore-spill-long.py [BUILD] [TOKENS]   (defaults: build, 131072)

One long prefill: turn 1 (TOKENS tokens, one generated) leaves its state in
the memory cache; turn 2 (turn 1 + 64 tokens, 16 generated) restores it from
memory: the never-spilled answer. SIGTERM writes the cache to disk; a new
server on the same store answers turn 2 again, resuming turn 1's state from
disk: the answers must be equal. The tiny model's config says 4096
positions; the weights do not depend on it (YaRN RoPE, factor 16 over
65536), so a copy of the model directory with max_position_embeddings raised
serves the long session. Prints the prefill time (the recompute a resume
saves), the turn times, the spill and resume latencies the server logs, and
the states on disk.
"""
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 131072
TANDEM = os.path.abspath(os.path.join(BUILD, "tandem"))
sys.argv = [sys.argv[0], TANDEM, os.path.join(ROOT, "models", "tiny-v4")]
sys.path.insert(0, os.path.join(ROOT, "tests", "integration", "serve"))
import serve_test as st  # noqa: E402
from serve_test import check  # noqa: E402


def complete(srv, prompt, n):
    # a 128K-token prefill takes minutes: longer than serve_test's timeout
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=4 * 3600)
    c.request("POST", "/v1/completions", json.dumps(dict(prompt=prompt, max_tokens=n,
                                                         temperature=0)),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    out = r.read()
    check(r.status == 200, "status %d: %s" % (r.status, out[:300]))
    j = json.loads(out)
    return j["choices"][0]["text"], j["usage"]["prompt_tokens_details"]["cached_tokens"]


def timed(srv, prompt, n):
    t = time.time()
    text, cached = complete(srv, prompt, n)
    return text, cached, time.time() - t


def main():
    tmp = tempfile.mkdtemp(prefix="tandem-spill-long-")
    model = os.path.join(tmp, "model")
    os.mkdir(model)
    src = os.path.join(ROOT, "models", "tiny-v4")
    for f in os.listdir(src):
        if f != "config.json":
            os.symlink(os.path.join(src, f), os.path.join(model, f))
    cfg = json.load(open(os.path.join(src, "config.json")))
    cfg["max_position_embeddings"] = 2 * N + 4096
    json.dump(cfg, open(os.path.join(model, "config.json"), "w"))
    rng = random.Random(3)
    p1 = [rng.randrange(2, 500) for _ in range(N)]
    x = [rng.randrange(2, 500) for _ in range(64)]
    common = ["--in-process", "--max-body", str(64 << 20), "--ctx", str(N + 256)]
    store = os.path.join(tmp, "store")
    servers = []
    try:
        srv = st.Server(model=model, extra=common + ["--kv-store", store,
                                                     "--prefix-cache-mib", "4096"])
        servers.append(srv)
        srv.wait_ready()
        _, _, t1 = timed(srv, p1, 1)
        print("turn 1: prefill of %d tokens: %.1f s" % (len(p1), t1), flush=True)
        want, cached, t2 = timed(srv, p1 + x, 16)
        check(cached == len(p1), "from memory: %d tokens cached, want %d" % (cached, len(p1)))
        print("turn 2 from memory (never spilled): %.2f s" % t2, flush=True)
        t = time.time()
        check(srv.stop() == 0, "exit status")
        print("stop, writing the memory cache to disk: %.2f s" % (time.time() - t))
        print("\n".join(l for l in srv.stderr().splitlines() if "kv spill:" in l))
        dump = subprocess.run([TANDEM, "kvstore", "dump", store], capture_output=True, text=True)
        print("on disk:\n" + dump.stdout.strip())

        srv = st.Server(model=model, extra=common + ["--kv-store", store])
        servers.append(srv)
        srv.wait_ready()
        got, cached, t3 = timed(srv, p1 + x, 16)
        print("\n".join(l for l in srv.stderr().splitlines() if "kv spill:" in l))
        check(cached == len(p1), "resumed %d tokens, want %d" % (cached, len(p1)))
        check(got == want, "after the spill and restart %r != never spilled %r" % (got, want))
        print("turn 2 after a restart, resumed from disk (%d tokens): %.2f s vs %.1f s to "
              "prefill them: token-identical to the never-spilled answer" % (cached, t3, t1))
        srv.stop()
        return 0
    finally:
        for srv in servers:
            if srv.proc.poll() is None:
                srv.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
