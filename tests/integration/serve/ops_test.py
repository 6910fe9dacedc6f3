#!/usr/bin/python3
"""Operations features of `tandem serve`: API keys, limits, /metrics.

usage: ops_test.py TANDEM MODEL_DIR [CASE...]

Raw HTTP over loopback against real `tandem serve` processes, in the style
of serve_test.py (whose Server and request helpers it reuses). Every error
path of the front door: 401 (both header styles), 404, 405, 413, 429 (a
full queue: --max-batch 1 --max-waiting 1 and streams that hold the batch),
503 (model still loading); /metrics counters moving by exactly the amounts
of known requests, cumulative histogram buckets, and `promtool check
metrics` when promtool is installed (Debian package `prometheus`).
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_test as st  # noqa: E402  (reads the same argv: TANDEM MODEL_DIR)
from serve_test import Server, check, request  # noqa: E402

ONLY = sys.argv[3:]
KEYS_ENV = "alpha-key-0123456789, beta-key-9876543210"
KEY_FILE_KEY = "gamma-key-from-file"


def expect_error(srv, status, method, path, body=None, headers=None, code=None):
    st_, h, out = request(srv, method, path, body, headers)
    check(st_ == status, "%s %s: %d, wanted %d (%s)" % (method, path, st_, status, out[:200]))
    e = json.loads(out)["error"]
    check(isinstance(e["message"], str) and e["message"] and "type" in e and "param" in e
          and "code" in e, "error shape %r" % e)
    if code:
        check(e["code"] == code, "code %r, wanted %r" % (e["code"], code))
    return h


# ---- metrics parsing ---------------------------------------------------------

def scrape(srv, headers=None):
    st_, h, out = request(srv, "GET", "/metrics", headers=headers)
    check(st_ == 200, "/metrics status %d" % st_)
    check(h.get("content-type", "").startswith("text/plain; version=0.0.4"),
          "/metrics content type %r" % h.get("content-type"))
    return out.decode()


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse(text):
    """{(name, labels): value}, {family: type}; checks the text's shape."""
    samples, types, helps = {}, {}, set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split()[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split()
            types[name] = typ
            continue
        m = SAMPLE.match(line)
        check(m, "malformed line %r" % line)
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        samples[(name, labels)] = float(value)
    for name, typ in types.items():
        check(name.startswith("tandem_"), "name without the tandem_ prefix: %s" % name)
        check(name in helps, "%s has no HELP" % name)
        check(name.endswith("_total") == (typ == "counter"),
              "_total on a non-counter or a counter without it: %s (%s)" % (name, typ))
    for (name, _) in samples:
        fam = re.sub(r"_(bucket|sum|count)$", "", name)
        check(name in types or (fam in types and types[fam] == "histogram"),
              "sample %s has no TYPE" % name)
    return samples, types


def val(samples, name, labels=""):
    return samples.get((name, labels), 0.0)


def buckets(samples, name):
    out = []
    for (n, labels), v in samples.items():
        if n == name + "_bucket":
            le = re.match(r'\{le="([^"]+)"\}$', labels).group(1)
            out.append((float("inf") if le == "+Inf" else float(le), v))
    return sorted(out)


def check_histogram(samples, name):
    bs = buckets(samples, name)
    check(len(bs) >= 10 and bs[-1][0] == float("inf"), "%s: buckets %r" % (name, bs))
    bounds = [b for b, _ in bs[:-1]]
    ratios = [b / a for a, b in zip(bounds, bounds[1:])]
    check(all(1.9 < r < 2.6 for r in ratios), "%s: buckets not log-spaced %r" % (name, bounds))
    counts = [c for _, c in bs]
    check(counts == sorted(counts), "%s: buckets not cumulative %r" % (name, counts))
    check(counts[-1] == val(samples, name + "_count"), "%s: +Inf != _count" % name)


def promtool(text):
    exe = shutil.which("promtool")
    if not exe:
        print("  (promtool not installed: scripts/install-deps.sh installs prometheus; "
              "format check skipped)")
        return
    p = subprocess.run([exe, "check", "metrics"], input=text.encode(), capture_output=True)
    check(p.returncode == 0, "promtool check metrics failed: %s %s" %
          (p.stdout.decode(), p.stderr.decode()))


# ---- streams that hold the batch ----------------------------------------------

def open_stream(srv, headers=b""):
    """A streaming completion that stops being read: with --write-buffer 1024
    the server pauses it, so it keeps its batch slot for as long as the
    socket stays open. Returns the socket and the bytes read so far."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    s.settimeout(60)
    s.connect(("127.0.0.1", srv.port))
    body = json.dumps({"prompt": "Hello", "max_tokens": 3500, "stream": True}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              + headers + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    return s


def read_until(s, marker):
    got = b""
    while marker not in got:
        d = s.recv(4096)
        check(d, "stream closed before %r: %r" % (marker, got[:200]))
        got += d
    return got


# ---- cases -------------------------------------------------------------------

def case_auth(srv):
    # Probes stay open.
    for path in ("/health", "/ready"):
        st_, _, _ = request(srv, "GET", path)
        check(st_ == 200, "%s without a key: %d" % (path, st_))
    body = {"prompt": "Hi", "max_tokens": 2}
    # No key, wrong keys, near misses, both header styles.
    h = expect_error(srv, 401, "POST", "/v1/completions", body, code="invalid_api_key")
    check(h.get("www-authenticate", "").startswith("Bearer"), "401 without WWW-Authenticate")
    for hdrs in ({"Authorization": "Bearer wrong"}, {"x-api-key": "wrong"},
                 {"Authorization": "Bearer alpha-key-012345678"},      # a prefix
                 {"Authorization": "Bearer alpha-key-01234567890"},    # one byte more
                 {"x-api-key": "beta-key-9876543211"},                 # last byte off
                 {"Authorization": "alpha-key-0123456789"},            # no scheme
                 {"Authorization": "Basic alpha-key-0123456789"},
                 {"Authorization": "Bearer " + "a" * 5000}):
        expect_error(srv, 401, "POST", "/v1/completions", body, hdrs, code="invalid_api_key")
        expect_error(srv, 401, "POST", "/v1/chat/completions",
                     {"messages": [{"role": "user", "content": "x"}]}, hdrs)
    expect_error(srv, 401, "GET", "/v1/models")
    expect_error(srv, 401, "GET", "/metrics")
    expect_error(srv, 401, "GET", "/v1/nothing")  # no key: not even a 404
    # Every key, from the environment and from the file, in both styles.
    for key in ("alpha-key-0123456789", "beta-key-9876543210", KEY_FILE_KEY):
        for hdrs in ({"Authorization": "Bearer " + key}, {"x-api-key": key},
                     {"authorization": "bearer " + key}):
            st_, _, out = request(srv, "POST", "/v1/completions", body, hdrs)
            check(st_ == 200, "key %r via %r: %d %s" % (key, list(hdrs), st_, out[:200]))
    # A wrong Bearer does not spoil a right x-api-key (and the reverse).
    st_, _, _ = request(srv, "GET", "/v1/models",
                        headers={"Authorization": "Bearer nope", "x-api-key": KEY_FILE_KEY})
    check(st_ == 200, "right x-api-key with a wrong Bearer: %d" % st_)
    st_, _, _ = request(srv, "GET", "/metrics", headers={"x-api-key": KEY_FILE_KEY})
    check(st_ == 200, "/metrics with a key: %d" % st_)


def case_errors_with_key(srv):
    k = {"Authorization": "Bearer beta-key-9876543210"}
    expect_error(srv, 404, "GET", "/v1/nothing", None, k, code="unknown_url")
    h = expect_error(srv, 405, "GET", "/v1/completions", None, k, code="method_not_allowed")
    check(h.get("allow") == "POST", "405 without Allow: POST")
    expect_error(srv, 405, "POST", "/metrics", b"", k)
    expect_error(srv, 413, "POST", "/v1/completions",
                 json.dumps({"prompt": "a" * 8192}).encode(), k, code="request_too_large")


def case_queue_full(srv):
    """--max-batch 1 --max-waiting 1: one stream runs, one waits, the next
    request gets 429 with Retry-After; once they go, requests pass again."""
    key = b"x-api-key: " + KEY_FILE_KEY.encode() + b"\r\n"
    k = {"x-api-key": KEY_FILE_KEY}
    a = open_stream(srv, key)
    read_until(a, b"data: ")        # a is in the batch (it produced a token)
    b = open_stream(srv, key)
    read_until(b, b"\r\n\r\n")      # b was submitted (the stream head is sent then)
    try:
        samples, _ = parse(scrape(srv, k))
        check(val(samples, "tandem_num_requests_running") == 1 and
              val(samples, "tandem_num_requests_waiting") == 1,
              "gauges running %r waiting %r" % (val(samples, "tandem_num_requests_running"),
                                                val(samples, "tandem_num_requests_waiting")))
        check(val(samples, "tandem_num_requests_waiting_max") == 1, "waiting_max gauge")
        for path, body in (("/v1/completions", {"prompt": "x", "max_tokens": 1}),
                           ("/v1/chat/completions",
                            {"messages": [{"role": "user", "content": "x"}]})):
            h = expect_error(srv, 429, "POST", path, body, k, code="rate_limit_exceeded")
            check(h.get("retry-after", "").isdigit(), "429 without Retry-After: %r" % h)
        # Small endpoints are not queued.
        st_, _, _ = request(srv, "GET", "/v1/models", headers=k)
        check(st_ == 200, "/v1/models while the queue is full: %d" % st_)
    finally:
        a.close()
        b.close()
    end = time.time() + 60
    while True:
        st_, _, out = request(srv, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 1},
                              k)
        if st_ == 200 or time.time() > end:
            break
        time.sleep(0.1)  # the cancellations are on their way to the engine
    check(st_ == 200, "after the streams left: %d %s" % (st_, out[:200]))
    samples, _ = parse(scrape(srv, k))
    check(val(samples, "tandem_requests_total",
              '{endpoint="/v1/completions",status="429"}') >= 1, "429 not counted")


def case_not_ready():
    """503 while the model loads (config.json is a FIFO, as in serve_test.py);
    /metrics answers meanwhile with tandem_ready 0."""
    with tempfile.TemporaryDirectory() as d:
        os.symlink(os.path.abspath(os.path.join(st.MODEL, "tokenizer.json")),
                   os.path.join(d, "tokenizer.json"))
        fifo = os.path.join(d, "config.json")
        os.mkfifo(fifo)
        srv = Server(model=d)
        try:
            expect_error(srv, 503, "POST", "/v1/completions", {"prompt": "x"},
                         code="engine_not_ready")
            text = scrape(srv)
            samples, _ = parse(text)
            check(val(samples, "tandem_ready") == 0, "tandem_ready while loading")
            check(val(samples, "tandem_requests_total",
                      '{endpoint="/v1/completions",status="503"}') == 1, "503 not counted")
            promtool(text)
            fd = os.open(fifo, os.O_WRONLY)
            os.close(fd)
            check(srv.proc.wait(30) == 1, "failed load: exit status")
        finally:
            srv.kill()


def case_metrics(srv):
    text0 = scrape(srv)
    promtool(text0)
    m0, types = parse(text0)
    for name, typ in (("tandem_time_to_first_token_seconds", "histogram"),
                      ("tandem_inter_token_latency_seconds", "histogram"),
                      ("tandem_e2e_request_latency_seconds", "histogram"),
                      ("tandem_num_requests_running", "gauge"),
                      ("tandem_num_requests_waiting", "gauge"),
                      ("tandem_requests_total", "counter"),
                      ("tandem_prompt_tokens_total", "counter"),
                      ("tandem_prompt_tokens_cached_total", "counter"),
                      ("tandem_generation_tokens_total", "counter")):
        check(types.get(name) == typ, "%s: type %r, wanted %s" % (name, types.get(name), typ))

    # Known requests: two completions, one streamed chat with usage, one
    # 400, one 404, one client that leaves before its answer (499).
    prompt_tokens = gen_tokens = with_tokens = 0
    for p in ("Hello world", "The quick brown fox"):
        r = st.post_json(srv, "/v1/completions", {"prompt": p, "max_tokens": 6, "temperature": 0},)
        prompt_tokens += r["usage"]["prompt_tokens"]
        gen_tokens += r["usage"]["completion_tokens"]
        with_tokens += r["usage"]["completion_tokens"] > 0
    events = st.sse_events(srv, "/v1/chat/completions",
                           {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5,
                            "stream": True, "stream_options": {"include_usage": True}})
    u = json.loads(events[-2])["usage"]
    prompt_tokens += u["prompt_tokens"]
    gen_tokens += u["completion_tokens"]
    with_tokens += u["completion_tokens"] > 0
    expect_error(srv, 400, "POST", "/v1/completions", b"{not json")
    expect_error(srv, 404, "GET", "/v1/nothing")
    # Request and EOF arrive together: the server dispatches the request,
    # then reads the EOF in the same pass, before any token can come back.
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    body = json.dumps({"prompt": "Hello", "max_tokens": 3000, "temperature": 0}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
              % len(body) + body)
    s.shutdown(socket.SHUT_WR)
    s.close()
    end = time.time() + 30
    while True:  # the 499 is counted when the server notices the close
        text1 = scrape(srv)
        m1, _ = parse(text1)
        if val(m1, "tandem_requests_total", '{endpoint="/v1/completions",status="499"}') or \
                time.time() > end:
            break
        time.sleep(0.1)
    promtool(text1)

    def delta(name, labels=""):
        return val(m1, name, labels) - val(m0, name, labels)

    req = "tandem_requests_total"
    for labels, want in (('{endpoint="/v1/completions",status="200"}', 2),
                         ('{endpoint="/v1/chat/completions",status="200"}', 1),
                         ('{endpoint="/v1/completions",status="400"}', 1),
                         ('{endpoint="other",status="404"}', 1),
                         ('{endpoint="/v1/completions",status="499"}', 1)):
        check(delta(req, labels) == want, "%s%s moved by %r, wanted %d"
              % (req, labels, delta(req, labels), want))
    check(delta(req, '{endpoint="/metrics",status="200"}') >= 1, "/metrics not counted")
    # The abandoned request's prompt counts too; its tokens may or may not
    # have started: bound them instead of guessing.
    left_prompt = len(st.tokenize("Hello"))
    check(delta("tandem_prompt_tokens_total") == prompt_tokens + left_prompt,
          "prompt tokens moved by %r, wanted %d" % (delta("tandem_prompt_tokens_total"),
                                                     prompt_tokens + left_prompt))
    check(delta("tandem_prompt_tokens_cached_total") == 0, "cached prompt tokens")
    g = delta("tandem_generation_tokens_total")
    check(gen_tokens <= g, "generation tokens moved by %r, wanted >= %d" % (g, gen_tokens))
    left_gen = g - gen_tokens
    ttft = delta("tandem_time_to_first_token_seconds_count")
    itl = delta("tandem_inter_token_latency_seconds_count")
    check(ttft == with_tokens + (left_gen > 0), "TTFT count moved by %r" % ttft)
    check(ttft + itl == g, "TTFT + ITL observations %r != generated tokens %r" % (ttft + itl, g))
    check(delta("tandem_e2e_request_latency_seconds_count") in (3, 4),
          "e2e count moved by %r" % delta("tandem_e2e_request_latency_seconds_count"))
    for h in ("tandem_time_to_first_token_seconds", "tandem_inter_token_latency_seconds",
              "tandem_e2e_request_latency_seconds"):
        check_histogram(m1, h)
        check(val(m1, h + "_sum") > 0, "%s_sum is 0" % h)
    check(val(m1, "tandem_ready") == 1, "tandem_ready")
    check(val(m1, "tandem_http_connections") >= 1, "connections gauge")
    check(abs(val(m1, "tandem_process_start_time_seconds") - time.time()) < 3600,
          "start time")


def case_session_header(srv):
    # The engine ignores the session for now: the request must simply work
    # with each recognised header (and with an over-long one).
    for h in ({"X-Session-ID": "sess-1"}, {"X-Claude-Code-Session-Id": "0b7d-uuid"},
              {"session_id": "codex-1"}, {"x-session-affinity": "oc-1"},
              {"X-Session-ID": "s" * 300}):
        st_, _, out = request(srv, "POST", "/v1/completions", {"prompt": "Hi", "max_tokens": 1},
                              h)
        check(st_ == 200, "with %r: %d %s" % (list(h), st_, out[:200]))


# ---- driver ------------------------------------------------------------------

def run(case, *args):
    name = case.__name__[5:]
    if ONLY and name not in ONLY:
        return 0
    t0 = time.time()
    try:
        case(*args)
        print("ok   %s (%.1fs)" % (name, time.time() - t0))
        return 0
    except Exception:  # noqa: BLE001 - report and go on
        print("FAIL %s" % name)
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()


def main():
    failures = 0
    # A server with keys and tight limits.
    with tempfile.NamedTemporaryFile("w", suffix=".keys") as kf:
        kf.write("# tandem API keys\n\n  %s  \n" % KEY_FILE_KEY)
        kf.flush()
        os.environ["TANDEM_API_KEYS"] = KEYS_ENV
        try:
            srv = Server(extra=("--api-key-file", kf.name, "--max-batch", "1",
                                "--max-waiting", "1", "--max-body", "4096",
                                "--write-buffer", "1024"))
        finally:
            del os.environ["TANDEM_API_KEYS"]
        try:
            srv.wait_ready()
            for case in (case_auth, case_errors_with_key, case_queue_full):
                failures += run(case, srv)
            rc = srv.stop()
            if rc != 0:
                failures += 1
                print("FAIL sigterm: exit %r; stderr:\n%s" % (rc, srv.stderr()[-4000:]))
        finally:
            srv.kill()
    # An open server for the metrics arithmetic.
    srv = Server()
    try:
        srv.wait_ready()
        for case in (case_metrics, case_session_header):
            failures += run(case, srv)
        if srv.stop() != 0:
            failures += 1
            print("FAIL sigterm")
    finally:
        srv.kill()
    failures += run(case_not_ready)
    # A key file without keys is refused at startup.
    with tempfile.NamedTemporaryFile("w", suffix=".keys") as kf:
        kf.write("# nothing here\n")
        kf.flush()
        p = subprocess.run([st.TANDEM, "serve", "--model", st.MODEL, "--port", "0",
                            "--api-key-file", kf.name],
                           capture_output=True, timeout=60)
        ok = p.returncode != 0 and b"holds no key" in p.stderr
        print("%s empty_key_file" % ("ok  " if ok else "FAIL"))
        failures += not ok
    print("%d failed" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
