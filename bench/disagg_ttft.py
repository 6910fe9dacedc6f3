#!/usr/bin/python3
"""Time to first token, disaggregated vs colocated.

usage: bench/disagg_ttft.py TANDEM MODEL_DIR LENGTHS [REPS] [THREADS]
  e.g. bench/disagg_ttft.py build/tandem models/tiny-v4 1024,3900 5

Starts `tandem serve --in-process` (the model in the router's process) and
`tandem serve` (router + prefill worker + decode worker processes, the KV
state over UCX) side by side and sends them streaming completions in turn
(A, B, A, B, ...: the machine's noise hits both alike), each prompt a fresh
random text of about the given length in tokens (no prefix cache hits),
max_tokens 2 (so the disaggregated server really splits the request). TTFT
is the time from sending the request to the first SSE data event. Prints a
markdown table (median of REPS per length and server, and the ratio) and
writes it to the "## Disaggregation" section of docs/benchmarks.md.
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
import time

TANDEM, MODEL = sys.argv[1], sys.argv[2]
LENGTHS = [int(x) for x in sys.argv[3].split(",")]
REPS = int(sys.argv[4]) if len(sys.argv) > 4 else 5
THREADS = sys.argv[5] if len(sys.argv) > 5 else "2"


def start(extra):
    p = subprocess.Popen([TANDEM, "serve", "--model", MODEL, "--port", "0", "--threads", THREADS,
                          "--max-waiting", "64", *extra], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, bufsize=0)
    r, _, _ = select.select([p.stdout], [], [], 120)
    line = p.stdout.readline().decode()
    port = int(re.search(r"http://127\.0\.0\.1:(\d+)", line).group(1))
    for _ in range(1200):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/ready")
            if c.getresponse().status == 200:
                time.sleep(1.0)  # the second worker registers right after the first
                return p, port
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("server not ready")


def tokens_of(text):
    out = subprocess.run([TANDEM, "tokenize", "--tokenizer", os.path.join(MODEL, "tokenizer.json"),
                          text], check=True, capture_output=True).stdout
    return len(json.loads(out))


def prompt(n, rng):
    words = []
    while True:
        words += ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 8)))
                  for _ in range(64)]
        t = " ".join(words)
        k = tokens_of(t)
        if k >= n:
            return " ".join(words[:max(1, int(len(words) * n / k))])


def ttft(port, text):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    body = json.dumps({"prompt": text, "max_tokens": 2, "temperature": 0, "stream": True})
    t0 = time.perf_counter()
    c.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    while True:
        line = r.readline()
        if not line:
            raise SystemExit("stream ended without data")
        if line.startswith(b"data: {"):
            t = time.perf_counter() - t0
            break
    r.read()
    c.close()
    return t


def main():
    rng = random.Random(7)
    colo, colo_port = start(["--in-process"])
    dis, dis_port = start([])
    rows = []
    try:
        for n in LENGTHS:
            a, b = [], []
            ttft(colo_port, prompt(n, rng))  # warm both (page cache, first connections)
            ttft(dis_port, prompt(n, rng))
            for _ in range(REPS):
                a.append(ttft(colo_port, prompt(n, rng)))
                b.append(ttft(dis_port, prompt(n, rng)))
            ma, mb = statistics.median(a), statistics.median(b)
            rows.append((n, ma, mb, mb / ma, mb - ma))
            print("%6d tokens: colocated %.4f s, disaggregated %.4f s (x%.3f)" % (n, ma, mb, mb / ma),
                  flush=True)
    finally:
        for p in (colo, dis):
            p.terminate()
            p.wait()
    load = os.getloadavg()[0]
    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    md = ["## Disaggregation (`bench/disagg_ttft.py`)", "",
          "Time to first token of a streaming completion (max_tokens 2), median of %d, "
          "`tandem serve --in-process` (colocated) vs `tandem serve` (router + prefill + decode "
          "processes, KV state over UCX, shared memory on one host), requests alternating "
          "between the two; %s, %d CPUs, load %.1f, model %s, %s model threads per process."
          % (REPS, cpu, os.cpu_count(), load, os.path.basename(os.path.abspath(MODEL)), THREADS),
          "", "| prompt tokens | colocated TTFT | disaggregated TTFT | ratio | added |",
          "|---|---|---|---|---|"]
    for n, ma, mb, r, d in rows:
        md.append("| %d | %.1f ms | %.1f ms | %.3f | %+.1f ms |" % (n, ma * 1e3, mb * 1e3, r, d * 1e3))
    md.append("")
    out = "\n".join(md) + "\n"
    print(out)
    path = "/tmp/tandem-bench-disagg.md"
    open(path, "w").write(out)
    subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "update_benchmarks.py"),
                    path, "docs/benchmarks.md"], check=True)


if __name__ == "__main__":
    main()
