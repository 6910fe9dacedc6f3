#!/usr/bin/python3
"""Disaggregated serving: `tandem router` + `tandem prefill` + `tandem decode`
as separate processes, KV state over UCX, control over nng.

usage: disagg_test.py TANDEM MODEL_DIR [CASE...]

- greedy output through router -> prefill -> UCX -> decode equals
  `tandem generate` for prompts from a few tokens to past many compression
  blocks (stream and non-stream), and max_tokens 1 (prefill alone);
- seeded sampling equals the in-process `tandem serve`;
- kill -9 of the decode worker mid-stream ends the stream promptly with an
  error; kill -9 of a (frozen) prefill worker before the first token: the
  request is retried on another prefill worker and completes identically.
"""
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "serve"))
import serve_test as st  # noqa: E402  (argv: TANDEM MODEL_DIR)
from serve_test import check, generate, request  # noqa: E402

TANDEM, MODEL = st.TANDEM, st.MODEL
ONLY = sys.argv[3:]
# Across "hosts" UCX must not use shared memory; on one host either works.
# UCX's defaults here (shared memory on one host). TANDEM_TEST_UCX_TLS=tcp,self
# forces the cross-host transport (see docs/disaggregation.md: known issue).
ENV = dict(os.environ)
if os.environ.get("TANDEM_TEST_UCX_TLS"):
    ENV["UCX_TLS"] = os.environ["TANDEM_TEST_UCX_TLS"]


class Proc:
    def __init__(self, args, stdout=False):
        self.errfile = tempfile.TemporaryFile()
        # unbuffered: select() then sees every line that has not been read
        self.proc = subprocess.Popen([TANDEM, *args], env=ENV, stderr=self.errfile, bufsize=0,
                                     stdout=subprocess.PIPE if stdout else subprocess.DEVNULL)

    def stderr(self):
        self.errfile.seek(0)
        return self.errfile.read().decode(errors="replace")

    def readline(self, timeout=30):
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not r:
            raise AssertionError("no line within %ds; stderr: %s" % (timeout, self.stderr()))
        return self.proc.stdout.readline().decode().rstrip("\n")

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("no exit within %ds of SIGTERM: %s" % (timeout, self.stderr()))
        return self.proc.returncode

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            if sig == signal.SIGKILL:
                self.proc.wait()


class Cluster:
    """A router and its workers; the router object works with serve_test's request()."""

    def __init__(self, n_prefill=1, n_decode=1, timeout_ms=1000, workers_url="tcp://127.0.0.1:0"):
        self.timeout_ms = timeout_ms
        self.start_router(workers_url)
        self.workers = []
        for _ in range(n_prefill):
            self.add("prefill")
        for _ in range(n_decode):
            self.add("decode")

    def start_router(self, workers_url):
        self.router = Proc(["router", "--model", MODEL, "--port", "0", "--workers",
                            workers_url, "--worker-timeout-ms", str(self.timeout_ms),
                            "--policy", os.environ.get("TANDEM_TEST_POLICY", "prefix")],
                           stdout=True)
        m = re.match(r"tandem: workers register at (tcp://\S+)$", self.router.readline())
        check(m, "no workers line")
        self.url = m.group(1)
        m = re.match(r"tandem: serving (\S+) on http://127\.0\.0\.1:(\d+) ", self.router.readline())
        check(m, "no serving line")
        self.model_id, self.port = m.group(1), int(m.group(2))

    def add(self, role):
        p = Proc([role, "--model", MODEL, "--router", self.url, "--threads", "1",
                  "--heartbeat-ms", "100"])
        self.workers.append(p)
        return p

    # serve_test's, which need only .port
    conn = st.Server.conn

    def wait_ready(self, timeout=60):
        """/ready turns 200 with the first worker (one kind can serve alone):
        wait for every worker to say it is ready, then for its registration."""
        st.Server.wait_ready(self, timeout)
        end = time.time() + timeout
        while not all(": ready" in w.stderr() for w in self.workers if w.proc.poll() is None):
            check(time.time() < end, "workers not ready: %s" % self.logs())
            time.sleep(0.05)
        time.sleep(0.3)  # registration follows readiness at once; heartbeats every 100 ms

    def logs(self):
        return "\n".join(["router: " + self.router.stderr()] +
                         ["worker: " + w.stderr() for w in self.workers])

    def close(self):
        rcs = [w.stop() for w in self.workers if w.proc.poll() is None]
        rcs.append(self.router.stop())
        return rcs


def complete(c, prompt, n, stream=False, **extra):
    body = dict(prompt=prompt, max_tokens=n, temperature=0, stream=stream, **extra)
    status, _, out = request(c, "POST", "/v1/completions", body)
    check(status == 200, "status %d: %s" % (status, out[:300]))
    if not stream:
        j = json.loads(out)
        return j["choices"][0]["text"], j["choices"][0]["finish_reason"]
    text, fin = "", None
    for line in out.decode().split("\n"):
        if line.startswith("data: ") and line != "data: [DONE]":
            ch = json.loads(line[6:])["choices"]
            if ch:
                text += ch[0]["text"]
                fin = ch[0]["finish_reason"] or fin
    return text, fin


PROMPTS = [
    "Hi",
    "The quick brown fox jumps over the lazy dog.",
    "An agent session " * 12,                        # past the window
    " ".join("word%d" % i for i in range(120)),      # many CSA/HCA blocks
]


def case_greedy_identity(c):
    for i, p in enumerate(PROMPTS):
        want = generate(p, 16)
        got, fin = complete(c, p, 16, stream=(i % 2 == 1))
        check(got == want, "prompt %d: %r != generate's %r" % (i, got, want))
        check(fin == "length", "finish %r" % fin)
    # Past the prefill budget (512 tokens an engine iteration): several
    # chunks, the layer-by-layer shipping in the last one.
    long_prompt = " ".join("token%d" % (i * 7919 % 1000) for i in range(700))
    want = generate(long_prompt, 8)
    got, _ = complete(c, long_prompt, 8, stream=True)
    check(got == want, "long prompt: %r != generate's %r" % (got, want))
    # max_tokens 1: prefill alone answers
    got, fin = complete(c, PROMPTS[1], 1)
    check(got == generate(PROMPTS[1], 1) and fin == "length", "max_tokens 1: %r %r" % (got, fin))


def case_seeded_sampling(c):
    body = dict(prompt=PROMPTS[2], max_tokens=24, temperature=0.9, top_p=0.95, seed=1234)
    status, _, out = request(c, "POST", "/v1/completions", body)
    check(status == 200, "status %d" % status)
    got = json.loads(out)["choices"][0]["text"]
    ref = st.Server()
    try:
        ref.wait_ready()
        status, _, out = request(ref, "POST", "/v1/completions", body)
        want = json.loads(out)["choices"][0]["text"]
    finally:
        ref.stop()
    check(got == want, "seeded: %r != in-process %r" % (got, want))


def case_concurrent(c):
    import threading
    want = {p: generate(p, 12) for p in PROMPTS}
    got, errs = {}, []

    def one(p):
        try:
            got[p] = complete(c, p, 12, stream=True)[0]
        except Exception as e:  # noqa: BLE001
            errs.append(e)
    ts = [threading.Thread(target=one, args=(p,)) for p in PROMPTS]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    check(not errs, "errors: %r" % errs)
    for p in PROMPTS:
        check(got.get(p) == want[p], "concurrent %r: %r != %r" % (p[:20], got.get(p), want[p]))


def case_decode_killed_midstream(c):
    conn = c.conn(timeout=30)
    body = json.dumps(dict(prompt=PROMPTS[1], max_tokens=2000, temperature=0, stream=True))
    conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    check(r.status == 200, "status %d" % r.status)
    first = r.readline()
    check(first.startswith(b"data: "), "first line %r" % first)
    decode = [w for w in c.workers if w.proc.args[1] == "decode"][0]
    t0 = time.time()
    decode.kill()
    rest = r.read().decode()  # must end: the router ends the stream
    took = time.time() - t0
    check(took < 15, "stream took %.1fs to end after the decode worker died" % took)
    check("error" in rest, "no error event after the decode worker died: %r" % rest[-300:])
    c.workers.remove(decode)
    # the survivor holds no state of the dead worker's request
    end = time.time() + 10
    while scrape(role(c, "prefill")).get(("tandem_kv_bytes_in_use", "")) != 0:
        check(time.time() < end, "the prefill worker still holds KV state")
        time.sleep(0.1)
    # a new decode worker takes over: the service recovers
    c.add("decode")
    c.wait_ready()
    got, _ = complete(c, PROMPTS[0], 8)
    check(got == generate(PROMPTS[0], 8), "after recovery: %r" % got)


def case_prefill_killed_before_first_token(c):
    want = generate(PROMPTS[3], 10)
    p1 = [w for w in c.workers if w.proc.args[1] == "prefill"][0]
    p1.kill(signal.SIGSTOP)  # frozen: the router still counts on it for a while
    import threading
    res = {}

    def one():
        try:
            res["out"] = complete(c, PROMPTS[3], 10)
        except Exception as e:  # noqa: BLE001
            res["err"] = e
    t = threading.Thread(target=one)
    t.start()
    time.sleep(0.3)          # the request is placed on the frozen worker
    c.add("prefill")
    p1.kill()                # kill -9
    c.workers.remove(p1)
    t.join(60)
    check(not t.is_alive(), "request hung after the prefill worker died")
    check("out" in res, "request failed: %r\n%s" % (res.get("err"), c.logs()[-2000:]))
    check(res["out"][0] == want, "retried output %r != generate's %r" % (res["out"][0], want))
    # the decode worker released the first attempt's reservation and the second's state
    end = time.time() + 10
    while scrape(role(c, "decode")).get(("tandem_kv_bytes_in_use", "")) != 0:
        check(time.time() < end, "the decode worker still holds KV state")
        time.sleep(0.1)


def worker_get(w, path):
    """GET path on a worker's HTTP port (the one its /metrics line names)."""
    m = None
    end = time.time() + 10
    while not m and time.time() < end:
        m = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", w.stderr())
        time.sleep(0.05)
    check(m, "no metrics line: %s" % w.stderr())
    srv = type("S", (), {"port": int(m.group(1)), "conn": st.Server.conn})()
    status, _, out = request(srv, "GET", path)
    return status, out


def scrape(w):
    """A worker's /metrics (its port from its log), checked by promtool."""
    import ops_test  # noqa: E402  (the metrics parser and promtool check)
    status, out = worker_get(w, "/metrics")
    check(status == 200, "worker /metrics: %d" % status)
    text = out.decode()
    ops_test.promtool(text)
    return ops_test.parse(text)[0]


def router_metrics(c):
    """The router's /metrics, checked by promtool."""
    import ops_test  # noqa: E402
    status, _, out = request(c, "GET", "/metrics")
    check(status == 200, "router /metrics: %d" % status)
    ops_test.promtool(out.decode())
    return ops_test.parse(out.decode())[0]


def role(c, name):
    return [w for w in c.workers if w.proc.args[1] == name][0]


def delta(a, b, name):
    return b.get((name, ""), 0) - a.get((name, ""), 0)


def case_worker_metrics(c):
    """Each worker's own /metrics: counters move by exactly what was asked."""
    pre, dec = role(c, "prefill"), role(c, "decode")
    p0, d0 = scrape(pre), scrape(dec)
    gen = 0
    for p in PROMPTS[:3]:
        status, _, out = request(c, "POST", "/v1/completions",
                                 dict(prompt=p, max_tokens=10, temperature=0))
        gen += json.loads(out)["usage"]["completion_tokens"]
    p1, d1 = scrape(pre), scrape(dec)
    check(delta(p0, p1, "tandem_prefill_requests_total") == 3, "prefill requests")
    check(delta(p0, p1, "tandem_kv_transfers_total") == 3, "prefill transfers")
    check(delta(d0, d1, "tandem_kv_transfers_total") == 3, "decode transfers")
    sent = delta(p0, p1, "tandem_kv_transfer_bytes_total")
    check(sent > 0 and sent == delta(d0, d1, "tandem_kv_transfer_bytes_total"),
          "bytes sent %r vs received" % sent)
    # the first token of each comes from prefill; EOS is not counted in usage
    check(delta(d0, d1, "tandem_generation_tokens_total") >= gen - 3,
          "decode tokens %r for %d generated" % (delta(d0, d1, "tandem_generation_tokens_total"),
                                                 gen))
    check(delta(p0, p1, "tandem_kv_transfer_duration_seconds_count") == 3, "transfer histogram")
    check(delta(p0, p1, "tandem_request_queue_time_seconds_count") == 3 and
          delta(d0, d1, "tandem_request_queue_time_seconds_count") == 3, "queue time histograms")
    check(delta(d0, d1, "tandem_engine_steps_total") >= gen / 3 - 3 and
          delta(d0, d1, "tandem_engine_step_tokens_total") >= delta(d0, d1, "tandem_engine_steps_total"),
          "decode iterations")
    check(d1.get(("tandem_kv_bytes_in_use", "")) == 0, "decode holds KV after the requests")


def case_next_turn_reuses_prefix(c):
    """An agent's next turn extends the last prompt: the prefill worker
    restores the cached state and prefills only the rest, and the answer is
    token-identical to a full prefill (an in-process server without a cache)."""
    pre = role(c, "prefill")
    turn1 = {"messages": [{"role": "system", "content": "You are terse."},
                          {"role": "user", "content": "List three colours. " * 6}],
             "max_tokens": 8, "temperature": 0}
    ids1 = json.loads(subprocess.run([TANDEM, "render-chat", "--model", MODEL, "--ids", "-"],
                                     input=json.dumps(turn1).encode(), check=True,
                                     capture_output=True).stdout)
    m0 = scrape(pre)
    status, _, out = request(c, "POST", "/v1/chat/completions", turn1)
    check(status == 200, "turn 1: %d" % status)
    answer = json.loads(out)["choices"][0]["message"]["content"]
    turn2 = dict(turn1, messages=turn1["messages"] + [
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "And three animals."}])
    ids2 = json.loads(subprocess.run([TANDEM, "render-chat", "--model", MODEL, "--ids", "-"],
                                     input=json.dumps(turn2).encode(), check=True,
                                     capture_output=True).stdout)
    check(ids2[:len(ids1)] == ids1, "turn 2's prompt does not extend turn 1's")
    m1 = scrape(pre)
    status, _, out = request(c, "POST", "/v1/chat/completions", turn2)
    check(status == 200, "turn 2: %d" % status)
    got = json.loads(out)["choices"][0]["message"]["content"]
    usage = json.loads(out)["usage"]
    check(usage["prompt_tokens"] == len(ids2) and
          usage["prompt_tokens_details"]["cached_tokens"] == len(ids1),
          "turn 2's usage %r: cached should be turn 1's %d prompt tokens" % (usage, len(ids1)))
    m2 = scrape(pre)
    check(delta(m0, m1, "tandem_prompt_tokens_cached_total") == 0, "turn 1 hit the cache")
    check(delta(m1, m2, "tandem_prefix_cache_hits_total") == 1, "turn 2 missed the cache")
    check(delta(m1, m2, "tandem_prompt_tokens_cached_total") == len(ids1),
          "turn 2 reused %r tokens, turn 1's prompt has %d" %
          (delta(m1, m2, "tandem_prompt_tokens_cached_total"), len(ids1)))
    ref = st.Server(extra=("--in-process", "--prefix-cache-mib", "0"))
    try:
        ref.wait_ready()
        status, _, out = request(ref, "POST", "/v1/chat/completions", turn2)
        want = json.loads(out)["choices"][0]["message"]["content"]
    finally:
        ref.stop()
    check(got == want, "turn 2 after the cache %r != a full prefill's %r" % (got, want))


def generate_ids(ids, n):
    """`tandem generate` (greedy, one process) on token ids: the generated ids."""
    with tempfile.TemporaryDirectory() as d:
        src, out = os.path.join(d, "in.json"), os.path.join(d, "out.json")
        with open(src, "w") as f:
            json.dump(ids, f)
        text = subprocess.run([TANDEM, "generate", "--model", MODEL, "--ids", src,
                               "--max-tokens", str(n), "--ids-out", out], check=True,
                              capture_output=True).stdout.decode()[:-1]
        with open(out) as f:
            return json.load(f), text


def case_decode_keeps_conversation(c):
    """The decode worker keeps a finished conversation's state (prompt and
    answer) and announces it; the next turn, when only a few tokens are new,
    is answered there whole from that state (nothing re-prefilled, nothing
    shipped), token-identical to a full prefill. A turn with many new tokens
    goes to the prefill worker as usual."""
    pre, dec = role(c, "prefill"), role(c, "decode")
    # 316 tokens: the answer's first 7 tokens cross a 64-token block, so the
    # decode worker holds one block more of turn 2 than the prefill worker
    ids1 = [(i * 37 + 11) % 500 + 2 for i in range(316)]
    status, _, out = request(c, "POST", "/v1/completions",
                             dict(prompt=ids1, max_tokens=8, temperature=0))
    check(status == 200, "turn 1: %d" % status)
    g, text = generate_ids(ids1, 8)
    check(json.loads(out)["choices"][0]["text"] == text, "turn 1 differs from generate")
    kept = len(ids1) + (len(g) - 1 if len(g) == 8 else len(g))  # the last token is not fed
    ids2 = ids1 + g + [(i * 13 + 5) % 500 + 2 for i in range(30)]
    p0, d0, r0 = scrape(pre), scrape(dec), router_metrics(c)
    status, _, out = request(c, "POST", "/v1/completions",
                             dict(prompt=ids2, max_tokens=8, temperature=0))
    check(status == 200, "turn 2: %d" % status)
    body = json.loads(out)
    p1, d1, r1 = scrape(pre), scrape(dec), router_metrics(c)
    local = ("tandem_placements_total", '{decision="decode_local"}')
    check(r1.get(local, 0) - r0.get(local, 0) == 1, "the router did not count the local answer")
    check(r1.get(("tandem_workers", '{role="decode"}')) == 1 and
          r1.get(("tandem_workers", '{role="prefill"}')) == 1, "router's worker gauges")
    check(body["usage"]["prompt_tokens_details"]["cached_tokens"] == kept,
          "turn 2's cached tokens %r, the decode worker kept %d" % (body["usage"], kept))
    check(delta(d0, d1, "tandem_prefix_cache_hits_total") == 1, "decode's cache missed")
    check(delta(p0, p1, "tandem_prefill_requests_total") == 0, "turn 2 went to prefill")
    check(delta(d0, d1, "tandem_kv_transfers_total") == 0, "turn 2 moved a state")
    _, want = generate_ids(ids2, 8)
    check(body["choices"][0]["text"] == want, "turn 2 %r != a full prefill's %r" %
          (body["choices"][0]["text"], want))
    # Many new tokens: prefilling them is the prefill worker's job.
    ids3 = ids2 + [(i * 7 + 3) % 500 + 2 for i in range(1100)]
    status, _, out = request(c, "POST", "/v1/completions",
                             dict(prompt=ids3, max_tokens=4, temperature=0))
    check(status == 200, "turn 3: %d" % status)
    p2 = scrape(pre)
    check(delta(p1, p2, "tandem_prefill_requests_total") == 1, "turn 3 did not go to prefill")
    _, want = generate_ids(ids3, 4)
    check(json.loads(out)["choices"][0]["text"] == want, "turn 3 differs from generate")


def case_shared_prefix_family(c):
    """Prompts that share a long start (an agent's system prompt and tools)
    and then differ: the second one saves the state where it leaves the
    first, and every later one restores it; output stays identical to
    `tandem generate`."""
    system = [(i * 29 + 7) % 500 + 2 for i in range(300)]
    users = [[(i * k + 3) % 500 + 2 for i in range(40)] for k in (11, 13, 17)]
    cached = []
    for u in users:
        ids = system + u
        status, _, out = request(c, "POST", "/v1/completions",
                                 dict(prompt=ids, max_tokens=6, temperature=0))
        check(status == 200, "status %d" % status)
        body = json.loads(out)
        cached.append(body["usage"]["prompt_tokens_details"]["cached_tokens"])
        _, want = generate_ids(ids, 6)
        check(body["choices"][0]["text"] == want, "output differs from generate")
    common = next(k for k in range(len(users[0])) if users[0][k] != users[1][k])
    check(cached == [0, 0, len(system) + common],
          "cached tokens %r: the third should restore the %d shared tokens" %
          (cached, len(system) + common))


def hits(c):
    return sum(scrape(w).get(("tandem_prefix_cache_hits_total", ""), 0)
               for w in c.workers if w.proc.args[1] == "prefill")


def conversation(c, i, headers=None, long=True):
    """Two turns; returns the prefix-cache hits turn 2 added (over all workers)."""
    first = ("Conversation %d. " % i) + ("Tell me about colours. " * (6 if long else 0))
    turn1 = {"messages": [{"role": "user", "content": first}], "max_tokens": 4,
             "temperature": 0}
    status, _, out = request(c, "POST", "/v1/chat/completions", turn1, headers)
    check(status == 200, "turn 1: %d" % status)
    answer = json.loads(out)["choices"][0]["message"]["content"]
    turn2 = dict(turn1, messages=turn1["messages"] + [
        {"role": "assistant", "content": answer}, {"role": "user", "content": "More."}])
    h0 = hits(c)
    status, _, out = request(c, "POST", "/v1/chat/completions", turn2, headers)
    check(status == 200, "turn 2: %d" % status)
    return hits(c) - h0


def case_prefix_aware_routing(c):
    """Two prefill workers. Four conversations start at once, so their first
    turns spread over both workers; every next turn (sent alone, when both
    workers are idle) must go where its prefix is cached (KvEvents), so all
    four hit. Least-loaded placement would send them all to one worker and
    hit about half."""
    import threading
    turns, errors = {}, []

    def first(i):
        try:
            body = {"messages": [{"role": "user", "content": ("Conversation %d. " % i) +
                                  "Tell me about colours. " * 6}],
                    "max_tokens": 24, "temperature": 0}
            status, _, out = request(c, "POST", "/v1/chat/completions", body)
            check(status == 200, "turn 1: %d" % status)
            turns[i] = dict(body, messages=body["messages"] + [
                {"role": "assistant",
                 "content": json.loads(out)["choices"][0]["message"]["content"]},
                {"role": "user", "content": "More."}], max_tokens=4)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=first, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(not errors, "turn 1: %r" % errors)
    served = [scrape(w).get(("tandem_prefill_requests_total", ""), 0)
              for w in c.workers if w.proc.args[1] == "prefill"]
    check(min(served) >= 1, "the first turns did not spread: %r" % served)
    h0, m0 = hits(c), router_metrics(c)
    for i in range(4):
        status, _, _ = request(c, "POST", "/v1/chat/completions", turns[i])
        check(status == 200, "turn 2: %d" % status)
    check(hits(c) - h0 == 4, "next turns hit %d caches of 4" % (hits(c) - h0))
    m1 = router_metrics(c)
    by_prefix = ("tandem_placements_total", '{decision="prefix"}')
    check(m1.get(by_prefix, 0) - m0.get(by_prefix, 0) == 4,
          "placements by prefix: %r" % (m1.get(by_prefix, 0) - m0.get(by_prefix, 0)))
    check(m1[("tandem_placement_prefix_tokens_total", "")] >
          m0[("tandem_placement_prefix_tokens_total", "")], "no expected reuse counted")


case_prefix_aware_routing.prefills = 2


def case_session_affinity(c):
    """Short prompts (no full 64-token block to hash): the session id keeps a
    conversation on the prefill worker that holds its state."""
    for i in range(4):
        got = conversation(c, 100 + i, headers={"X-Session-ID": "agent-%d" % i}, long=False)
        check(got == 1, "session %d: next turn hit %d caches" % (i, got))


case_session_affinity.prefills = 2


def case_drain_on_sigterm(c):
    """SIGTERM drains a worker: the request it runs finishes normally, the
    router places nothing new there (with no other decode worker, the
    prefill worker answers alone), and the worker exits 0."""
    conn = c.conn(timeout=60)
    body = json.dumps(dict(prompt=PROMPTS[1], max_tokens=1500, temperature=0, stream=True))
    conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    check(r.readline().startswith(b"data: "), "no first event")
    dec = role(c, "decode")
    check(worker_get(dec, "/ready")[0] == 200, "the decode worker is not ready")
    dec.proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    status, body = worker_get(dec, "/ready")  # still serving its stream
    check(status == 503 and b"draining" in body, "a draining worker's /ready: %d %r" % (status, body))
    time.sleep(0.25)
    got, _ = complete(c, PROMPTS[0], 6)
    check(got == generate(PROMPTS[0], 6), "colocated on prefill while decode drains: %r" % got)
    rest = r.read().decode()
    check('"error"' not in rest and '"finish_reason":"length"' in rest,
          "the draining worker's stream did not finish normally: %r" % rest[-300:])
    check(dec.proc.wait(30) == 0, "the drained worker's exit status")
    c.workers.remove(dec)


def case_prefill_workers_only(c):
    """No decode worker: the prefill worker answers whole (colocated)."""
    for i, p in enumerate(PROMPTS):
        got, fin = complete(c, p, 12, stream=bool(i % 2))
        check(got == generate(p, 12), "prefill-only %d: %r" % (i, got))


case_prefill_workers_only.decodes = 0


def case_decode_workers_only(c):
    """No prefill worker: the decode worker prefills and answers whole."""
    for i, p in enumerate(PROMPTS):
        got, fin = complete(c, p, 12, stream=bool(i % 2))
        check(got == generate(p, 12), "decode-only %d: %r" % (i, got))


case_decode_workers_only.prefills = 0


def next_turn_usage(srv):
    """Turn 1, then turn 2 extending it; returns turn 2's usage and turn 1's
    prompt length."""
    turn1 = {"messages": [{"role": "user", "content": "Name a river. " * 8}],
             "max_tokens": 4, "temperature": 0}
    ids1 = json.loads(subprocess.run([TANDEM, "render-chat", "--model", MODEL, "--ids", "-"],
                                     input=json.dumps(turn1).encode(), check=True,
                                     capture_output=True).stdout)
    status, _, out = request(srv, "POST", "/v1/chat/completions", turn1)
    check(status == 200, "turn 1: %d" % status)
    answer = json.loads(out)["choices"][0]["message"]["content"]
    turn2 = dict(turn1, messages=turn1["messages"] + [
        {"role": "assistant", "content": answer}, {"role": "user", "content": "Another."}])
    status, _, out = request(srv, "POST", "/v1/chat/completions", turn2)
    check(status == 200, "turn 2: %d" % status)
    return json.loads(out)["usage"], len(ids1)


def case_cached_tokens_reported(c):
    """usage.prompt_tokens_details.cached_tokens on a cache hit: answered
    whole by a worker (colocated), and in-process."""
    usage, n1 = next_turn_usage(c)
    check(usage["prompt_tokens_details"]["cached_tokens"] == n1,
          "colocated worker: %r, turn 1 had %d" % (usage, n1))
    ref = st.Server(extra=("--in-process",))
    try:
        ref.wait_ready()
        usage, n1 = next_turn_usage(ref)
        check(usage["prompt_tokens_details"]["cached_tokens"] >= n1,
              "in-process: %r, turn 1 had %d" % (usage, n1))
    finally:
        ref.stop()


case_cached_tokens_reported.decodes = 0


def case_router_restart(c):
    """kill -9 of the router mid-stream: the workers stay responsive (no
    loop stalled on a dead peer), re-register with a router started on the
    same address, and serve again. The old router's stream, which nobody
    reads any more, is cancelled on the decode worker as soon as the new
    router sees its tokens (it would run for seconds more)."""
    url = c.url
    conn = c.conn(timeout=30)
    # greedy, this prompt runs the whole 3500 tokens (no EOS): seconds of work
    body = json.dumps(dict(prompt="1 2 3 4", max_tokens=3500, temperature=0, stream=True))
    conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    check(conn.getresponse().readline().startswith(b"data: "), "no first event")
    c.router.kill()
    time.sleep(0.5)
    c.start_router(url)  # same control address; a new HTTP port
    st.Server.wait_ready(c, 30)
    dec = role(c, "decode")
    end = time.time() + 4  # re-registration, then the first orphaned chunk
    while scrape(dec).get(("tandem_num_requests_running", "")) and time.time() < end:
        time.sleep(0.1)
    check(not scrape(dec).get(("tandem_num_requests_running", "")),
          "the old router's stream still runs on the decode worker")
    end = time.time() + 30  # both kinds back (registration repeats every 10 beats)
    while True:
        got, _ = complete(c, PROMPTS[2], 8)
        if got == generate(PROMPTS[2], 8) or time.time() > end:
            break
    check(got == generate(PROMPTS[2], 8), "after the router restart: %r" % got)
    for w in c.workers:
        check(w.proc.poll() is None, "a worker died with the router")



TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
              "type": "object", "properties": {"days": {"type": "integer"},
                                               "unit": {"enum": ["c", "f"]}},
              "required": ["days", "unit"]}}},
          {"type": "function", "function": {"name": "get_time", "parameters": {
              "type": "object", "properties": {"tz": {"enum": ["utc", "cet"]}},
              "required": ["tz"]}}}]


def constrained_answers(srv):
    """tool_choice required / named and response_format json_schema give
    exactly what they ask, even from the tiny model's random weights."""
    base = {"messages": [{"role": "user", "content": "Weather in Paris?"}], "max_tokens": 200,
            "temperature": 0}
    for choice, names in (("required", {"get_weather", "get_time"}),
                          ({"type": "function", "function": {"name": "get_time"}}, {"get_time"})):
        status, _, out = request(srv, "POST", "/v1/chat/completions",
                                 dict(base, tools=TOOLS, tool_choice=choice,
                                      parallel_tool_calls=False))
        check(status == 200, "tool_choice %r: %d %s" % (choice, status, out[:300]))
        ch = json.loads(out)["choices"][0]
        check(ch["finish_reason"] == "tool_calls" and ch["message"].get("tool_calls"),
              "tool_choice %r gave no call: %r" % (choice, ch))
        for call in ch["message"]["tool_calls"]:
            fn = call["function"]
            check(fn["name"] in names, "called %r" % fn["name"])
            args = json.loads(fn["arguments"])
            if fn["name"] == "get_weather":
                check(isinstance(args["days"], int) and args["unit"] in ("c", "f"), repr(args))
            else:
                check(args["tz"] in ("utc", "cet"), repr(args))
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}},
              "required": ["a", "b"]}
    status, _, out = request(srv, "POST", "/v1/chat/completions", dict(
        base, response_format={"type": "json_schema", "json_schema": {"name": "x",
                                                                      "schema": schema}}))
    check(status == 200, "json_schema: %d %s" % (status, out[:300]))
    v = json.loads(json.loads(out)["choices"][0]["message"]["content"])
    check(isinstance(v["a"], int) and isinstance(v["b"], bool) and len(v) == 2, repr(v))
    # Anthropic's tool_choice any: a tool_use block whose input fits
    status, _, out = request(srv, "POST", "/v1/messages", {
        "model": "m", "max_tokens": 200, "temperature": 0,
        "messages": [{"role": "user", "content": "Time?"}],
        "tools": [{"name": t["function"]["name"], "input_schema": t["function"]["parameters"]}
                  for t in TOOLS],
        "tool_choice": {"type": "any"}})
    check(status == 200, "anthropic any: %d %s" % (status, out[:300]))
    m = json.loads(out)
    uses = [b for b in m["content"] if b["type"] == "tool_use"]
    check(m["stop_reason"] == "tool_use" and uses, "anthropic any gave no tool_use: %r" % m)
    # a schema outside the supported subset is a 400 that says why
    status, _, out = request(srv, "POST", "/v1/chat/completions", dict(
        base, response_format={"type": "json_schema", "json_schema": {
            "name": "x", "schema": {"type": "integer", "minimum": 3}}}))
    check(status == 400 and "minimum" in json.loads(out)["error"]["message"],
          "unsupported keyword: %d %s" % (status, out[:300]))


def case_constrained_output(c):
    """Through the workers (prefill picks the first token under the grammar,
    decode resumes the matcher), then in-process."""
    constrained_answers(c)
    ref = st.Server(extra=("--in-process",))
    try:
        ref.wait_ready()
        constrained_answers(ref)
    finally:
        ref.stop()


CASES = [case_shared_prefix_family, case_decode_keeps_conversation, case_constrained_output, case_router_restart, case_cached_tokens_reported, case_prefill_workers_only, case_decode_workers_only, case_drain_on_sigterm, case_prefix_aware_routing, case_session_affinity, case_next_turn_reuses_prefix, case_worker_metrics, case_greedy_identity, case_seeded_sampling, case_concurrent,
         case_decode_killed_midstream, case_prefill_killed_before_first_token]


def main():
    failed = 0
    for case in CASES:
        name = case.__name__[5:]
        if ONLY and name not in ONLY:
            continue
        t0 = time.time()
        c = Cluster(n_prefill=getattr(case, "prefills", 1), n_decode=getattr(case, "decodes", 1))
        try:
            c.wait_ready()
            case(c)
            rcs = c.close()
            check(all(rc == 0 for rc in rcs), "exit statuses %r" % rcs)
            print("ok %s (%.1f s)" % (name, time.time() - t0))
        except Exception:  # noqa: BLE001
            failed += 1
            print("FAIL", name)
            traceback.print_exc()
            print(c.logs()[-4000:])
            for w in c.workers + [c.router]:
                w.kill()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
