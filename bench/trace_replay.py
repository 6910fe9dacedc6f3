#!/usr/bin/python3
"""Replays conversations of the Mooncake conversation trace against a tandem
cluster, once per placement policy, and compares prefix reuse and time to
first token.

usage: bench/trace_replay.py TANDEM MODEL_DIR [CONVERSATIONS] [POLICIES] [CONCURRENCY]
  e.g. bench/trace_replay.py build/tandem /tmp/tiny-long 20 prefix,round-robin,least-loaded 4

The trace (../shared/data/traces/mooncake/conversation_trace.jsonl, Mooncake
FAST'25 release) gives each request its input and output lengths and the hash
ids of its 512-token blocks: requests that share a leading hash id share that
prompt prefix (a conversation's earlier turns). A conversation is the
requests that share their second block (the first is a system prompt every
request shares); the replay takes the first CONVERSATIONS (default 20) with
at least three turns, all their requests in trace order (turns of different
conversations interleave, as they arrived). Scaled down by 8 for a CPU
model, a trace block becomes 64 tokens (our router's block size) of token ids
drawn from the hash id, the input length is divided by 8 (capped by the
context) and the output length by 8 (at least 1). Requests go out in trace
order, CONCURRENCY at a time (closed loop: this CPU cannot keep the trace's
pace), as streaming /v1/completions on token ids.

For each policy the script starts `tandem router --policy P` with 2 prefill
workers and 1 decode worker (1 model thread each), replays, and reports the
prompt tokens the workers' prefix caches served (usage cached_tokens) against
the most any cache could serve (every block seen before, with infinite
memory), and TTFT percentiles. Writes the "## Trace replay" section of
docs/benchmarks.md.
"""
import http.client
import json
import os
import random
import re
import select
import statistics
import subprocess
import sys
import threading
import time

TANDEM, MODEL = sys.argv[1], sys.argv[2]
CONVS = int(sys.argv[3]) if len(sys.argv) > 3 else 20
POLICIES = (sys.argv[4] if len(sys.argv) > 4 else "prefix,round-robin").split(",")
CONC = int(sys.argv[5]) if len(sys.argv) > 5 else 4
SCALE, BLOCK = 8, 64
# the team's shared folder sits next to the repository (TANDEM_TRACE overrides)
TRACE = os.environ.get("TANDEM_TRACE") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "traces",
    "mooncake", "conversation_trace.jsonl")


def model_limits():
    cfg = json.load(open(os.path.join(MODEL, "config.json")))
    return cfg["max_position_embeddings"], cfg["vocab_size"]


def workload():
    ctx, vocab = model_limits()
    trace = [json.loads(line) for line in open(TRACE)]
    convs = {}
    for i, r in enumerate(trace):
        h = r["hash_ids"]
        convs.setdefault(h[1] if len(h) > 1 else -1 - i, []).append(i)
    multi = sorted((v for v in convs.values() if len(v) >= 3), key=lambda v: v[0])[:CONVS]
    rows = [trace[i] for i in sorted(i for v in multi for i in v)]
    reqs = []
    for r in rows:
        n_in = max(1, min(r["input_length"] // SCALE, ctx // 2))
        n_out = max(1, min(r["output_length"] // SCALE, ctx - n_in - 1))
        ids = []
        for h in r["hash_ids"]:
            rng = random.Random(h * 2654435761 + 17)
            ids += [rng.randrange(2, vocab - 2) for _ in range(BLOCK)]
        ids = ids[:n_in]
        reqs.append((ids, n_out, r["hash_ids"][:(n_in + BLOCK - 1) // BLOCK]))
    # The most a cache could serve: the leading blocks seen before (whole
    # blocks only, one token always prefilled).
    seen, ideal = set(), 0
    for ids, _, hashes in reqs:
        k = 0
        while k < len(hashes) and hashes[k] in seen:
            k += 1
        ideal += min(k * BLOCK, len(ids) - 1)
        seen.update(hashes)
    return reqs, ideal


class Proc:
    def __init__(self, args):
        self.p = subprocess.Popen([TANDEM, *args], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, bufsize=0)

    def line(self, timeout=60):
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not r:
            raise SystemExit("no output from %s" % self.p.args)
        return self.p.stdout.readline().decode()

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()


def start(policy):
    router = Proc(["router", "--model", MODEL, "--port", "0", "--workers", "tcp://127.0.0.1:0",
                   "--policy", policy])
    url = re.search(r"register at (tcp://\S+)", router.line()).group(1)
    port = int(re.search(r"http://127\.0\.0\.1:(\d+)", router.line()).group(1))
    workers = [Proc([role, "--model", MODEL, "--router", url, "--threads", "1"])
               for role in ("prefill", "prefill", "decode")]
    end = time.time() + 120
    while time.time() < end:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/metrics")
            m = c.getresponse().read().decode()
            if re.search(r'^tandem_workers\{role="prefill"\} 2', m, re.M) and \
                    re.search(r'^tandem_workers\{role="decode"\} 1', m, re.M):
                return router, workers, port
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("cluster not ready")


def one(port, ids, n_out):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    body = json.dumps({"prompt": ids, "max_tokens": n_out, "temperature": 0, "stream": True,
                       "stream_options": {"include_usage": True}})
    t0 = time.perf_counter()
    c.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    ttft, usage = None, None
    for line in r:
        if not line.startswith(b"data: {"):
            continue
        if ttft is None:
            ttft = time.perf_counter() - t0
        ev = json.loads(line[6:])
        if ev.get("usage"):
            usage = ev["usage"]
    c.close()
    if ttft is None or usage is None:
        raise SystemExit("a request got no tokens or no usage")
    return ttft, usage


def replay(port, reqs):
    out = [None] * len(reqs)
    nxt = [0]
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(reqs):
                return
            out[i] = one(port, reqs[i][0], reqs[i][1])
    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(CONC)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out, time.perf_counter() - t0


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    reqs, ideal = workload()
    total = sum(len(ids) for ids, _, _ in reqs)
    rows = []
    for policy in POLICIES:
        router, workers, port = start(policy)
        try:
            res, wall = replay(port, reqs)
        finally:
            for w in workers + [router]:
                w.stop()
        cached = sum(u["prompt_tokens_details"]["cached_tokens"] for _, u in res)
        tt = [t for t, _ in res]
        rows.append((policy, cached, statistics.mean(tt), pct(tt, 0.5), pct(tt, 0.9), wall))
        print("%-12s cached %d of %d prompt tokens (%.1f%%; ideal %.1f%%), TTFT mean %.0f ms, "
              "p50 %.0f ms, p90 %.0f ms, %.1f s" % (policy, cached, total, 100 * cached / total,
                                                    100 * ideal / total, rows[-1][2] * 1e3,
                                                    rows[-1][3] * 1e3, rows[-1][4] * 1e3, wall),
              flush=True)
    load = os.getloadavg()[0]
    md = ["## Trace replay (`bench/trace_replay.py`)", "",
          "The first %d conversations of three or more turns of the Mooncake FAST'25 "
          "conversation trace (%d requests), scaled down by %d "
          "(a 512-token trace block becomes %d tokens drawn from its hash id; %d prompt tokens "
          "in all), replayed in order %d at a time as streaming completions against `tandem "
          "router` with 2 prefill workers and 1 decode worker (1 thread each), model %s; %d "
          "CPUs, load %.1f. \"ideal\" is what a cache of unbounded size holding every block ever "
          "seen would serve: %d tokens (%.1f%%)."
          % (CONVS, len(reqs), SCALE, BLOCK, total, CONC, os.path.basename(os.path.abspath(MODEL)),
             os.cpu_count(), load, ideal, 100 * ideal / total),
          "", "| policy | cached prompt tokens | of ideal | TTFT mean | TTFT p50 | TTFT p90 | "
          "wall |", "|---|---:|---:|---:|---:|---:|---:|"]
    for policy, cached, mean, p50, p90, wall in rows:
        md.append("| %s | %d (%.1f%%) | %.0f%% | %.0f ms | %.0f ms | %.0f ms | %.1f s |"
                  % (policy, cached, 100 * cached / total, 100 * cached / max(ideal, 1),
                     mean * 1e3, p50 * 1e3, p90 * 1e3, wall))
    md.append("")
    text = "\n".join(md) + "\n"
    print(text)
    path = "/tmp/tandem-bench-trace.md"
    open(path, "w").write(text)
    subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "update_benchmarks.py"), path,
                    "docs/benchmarks.md"], check=True)


if __name__ == "__main__":
    main()
