#!/usr/bin/python3
"""End-to-end tests of `tandem serve`: a real process, real HTTP on loopback.

usage: serve_test.py TANDEM MODEL_DIR [CASE...]

Starts `tandem serve --port 0` (the startup line says which port it got),
waits for /ready, runs the cases, then sends SIGTERM and expects exit 0.
Only the standard library is used. The model may have random weights, so
the checks are about protocol behaviour and agreement with `tandem
generate` / `tandem tokenize`, never about particular text.
"""
import http.client
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

TANDEM, MODEL = sys.argv[1], sys.argv[2]
ONLY = sys.argv[3:]
MODEL_ID = os.path.basename(os.path.normpath(MODEL))
PROMPTS = ["Hello world", "The quick brown fox", "ab"]


class Server:
    """A `tandem serve` child process."""

    def __init__(self, model=MODEL, extra=()):
        # stderr goes to a file: a pipe nobody reads could fill and block it.
        self.errfile = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [TANDEM, "serve", "--model", model, "--port", "0", "--threads", "2", *extra],
            stdout=subprocess.PIPE, stderr=self.errfile)
        line = self._readline(30)
        m = re.match(r"tandem: serving (\S+) on http://127\.0\.0\.1:(\d+) \(OpenAI API: "
                     r"/v1/chat/completions, /v1/completions, /v1/models\)$", line)
        if not m:
            self.kill()
            raise AssertionError("unexpected startup line %r; stderr: %s" % (line, self.stderr()))
        self.model_id, self.port = m.group(1), int(m.group(2))

    def stderr(self):
        self.errfile.seek(0)
        return self.errfile.read().decode(errors="replace")

    def _readline(self, timeout):
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not r:
            raise AssertionError("no startup line within %ds" % timeout)
        return self.proc.stdout.readline().decode().rstrip("\n")

    def conn(self, timeout=60):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def wait_ready(self, timeout=60):
        end = time.time() + timeout
        while time.time() < end:
            try:
                status, _, _ = request(self, "GET", "/ready")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("/ready did not turn 200 within %ds" % timeout)

    def stop(self, timeout=30):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("no exit within %ds of SIGTERM" % timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def request(srv, method, path, body=None, headers=None, conn=None):
    """One request; returns (status, headers dict (lower-case names), body bytes)."""
    c = conn or srv.conn()
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    h = {"Content-Type": "application/json"} if data is not None else {}
    h.update(headers or {})
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    out = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    if conn is None:
        c.close()
    return r.status, hdrs, out


def post_json(srv, path, body, status=200):
    st, _, out = request(srv, "POST", path, body)
    check(st == status, "POST %s: status %d, wanted %d: %s" % (path, st, status, out[:300]))
    return json.loads(out)


def sse_events(srv, path, body):
    """Posts a streaming request; returns the list of data payloads (str)."""
    c = srv.conn()
    c.request("POST", path, body=json.dumps(body).encode(),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    check(r.status == 200, "stream status %d" % r.status)
    check(r.getheader("Content-Type", "").startswith("text/event-stream"),
          "stream content type %r" % r.getheader("Content-Type"))
    raw = r.read().decode()
    c.close()
    check(raw.endswith("\n\n"), "stream does not end with a blank line")
    events = []
    for block in raw.split("\n\n")[:-1]:
        check(block.startswith("data: "), "event without data: %r" % block[:80])
        events.append(block[len("data: "):])
    check(events and events[-1] == "[DONE]", "stream does not end with data: [DONE]")
    return events


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def tokenize(text):
    out = subprocess.run([TANDEM, "tokenize", "--tokenizer",
                          os.path.join(MODEL, "tokenizer.json"), text],
                         check=True, capture_output=True).stdout
    return json.loads(out)


GENERATED = {}


def generate(prompt, n, chat=False):
    """`tandem generate`'s greedy answer: deterministic, so each (prompt, n,
    chat) runs once per test process (disagg_test asks for the same ones from
    several cases; under ASan every run is a model load and a prefill)."""
    key = (prompt, n, chat)
    if key not in GENERATED:
        args = [TANDEM, "generate", "--model", MODEL, "--prompt", prompt, "--max-tokens", str(n)]
        if chat:
            args.append("--chat")
        out = subprocess.run(args, check=True, capture_output=True).stdout.decode()
        check(out.endswith("\n"), "generate output does not end with a newline")
        GENERATED[key] = out[:-1]
    return GENERATED[key]


# ---- cases --------------------------------------------------------------------

def case_health(srv):
    st, h, out = request(srv, "GET", "/health")
    check(st == 200 and json.loads(out) == {"status": "ok"}, "health: %d %r" % (st, out))
    check(h.get("content-type") == "application/json", "health content type")
    st, _, _ = request(srv, "GET", "/ready")
    check(st == 200, "ready: %d" % st)


def case_models(srv):
    st, _, out = request(srv, "GET", "/v1/models")
    check(st == 200, "models status %d" % st)
    m = json.loads(out)
    check(m["object"] == "list" and len(m["data"]) == 1, "models shape %r" % m)
    check(m["data"][0]["id"] == MODEL_ID == srv.model_id, "model id %r" % m["data"][0]["id"])
    check(m["data"][0]["object"] == "model", "model object")


def case_completion_usage(srv):
    for p in PROMPTS:
        r = post_json(srv, "/v1/completions",
                      {"model": MODEL_ID, "prompt": p, "max_tokens": 8, "temperature": 0})
        check(r["object"] == "text_completion" and r["id"].startswith("cmpl-"), "shape %r" % r)
        ch = r["choices"][0]
        check(isinstance(ch["text"], str), "text")
        check(ch["finish_reason"] in ("stop", "length"), "finish_reason %r" % ch["finish_reason"])
        u = r["usage"]
        check(u["prompt_tokens"] == len(tokenize(p)),
              "prompt_tokens %d != tokenizer's %d" % (u["prompt_tokens"], len(tokenize(p))))
        check(1 <= u["completion_tokens"] <= 8 or
              (u["completion_tokens"] == 0 and ch["finish_reason"] == "stop"), "completion_tokens")
        if ch["finish_reason"] == "length":
            check(u["completion_tokens"] == 8, "length finish with %d tokens" % u["completion_tokens"])
        check(u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"], "total_tokens")


def case_greedy_equals_generate(srv):
    for p in PROMPTS:
        r = post_json(srv, "/v1/completions", {"prompt": p, "max_tokens": 12, "temperature": 0})
        want = generate(p, 12)
        check(r["choices"][0]["text"] == want,
              "prompt %r: server %r != generate %r" % (p, r["choices"][0]["text"], want))


def case_stream_completion(srv):
    body = {"prompt": "Hello world", "max_tokens": 10, "temperature": 0}
    full = post_json(srv, "/v1/completions", body)
    events = sse_events(srv, "/v1/completions",
                        dict(body, stream=True, stream_options={"include_usage": True}))
    chunks = [json.loads(e) for e in events[:-1]]
    check(all(c["object"] == "text_completion" for c in chunks), "chunk object")
    check(len({c["id"] for c in chunks}) == 1, "one id per stream")
    usage = chunks[-1]
    check(usage["choices"] == [] and usage["usage"] == full["usage"], "usage chunk %r" % usage)
    text = "".join(c["choices"][0]["text"] for c in chunks[:-1])
    check(text == full["choices"][0]["text"], "stream text %r != %r" % (text, full["choices"][0]["text"]))
    check(chunks[-2]["choices"][0]["finish_reason"] == full["choices"][0]["finish_reason"],
          "final finish_reason")
    check(all(c["choices"][0]["finish_reason"] is None for c in chunks[:-2]), "early finish_reason")
    # Without include_usage: no usage chunk.
    events = sse_events(srv, "/v1/completions", dict(body, stream=True))
    check("usage" not in json.loads(events[-2]), "usage chunk without include_usage")


def case_chat(srv):
    msgs = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": [{"type": "text", "text": "What is"},
                                          {"type": "text", "text": "2+2?"}]}]
    body = {"model": MODEL_ID, "messages": msgs, "max_tokens": 10, "temperature": 0}
    r = post_json(srv, "/v1/chat/completions", body)
    check(r["object"] == "chat.completion" and r["id"].startswith("chatcmpl-"), "shape %r" % r)
    msg = r["choices"][0]["message"]
    check(msg["role"] == "assistant" and isinstance(msg["content"], str), "message %r" % msg)
    # The rendered prompt (spec §6.2, chat mode) counted by our tokenizer.
    rendered = ("<｜begin▁of▁sentence｜>You are terse.<｜User｜>Hi!<｜Assistant｜></think>"
                "Hello.<｜end▁of▁sentence｜><｜User｜>What is\n\n2+2?<｜Assistant｜></think>")
    check(r["usage"]["prompt_tokens"] == len(tokenize(rendered)),
          "chat prompt_tokens %d != %d" % (r["usage"]["prompt_tokens"], len(tokenize(rendered))))
    events = sse_events(srv, "/v1/chat/completions", dict(body, stream=True))
    chunks = [json.loads(e) for e in events[:-1]]
    check(all(c["object"] == "chat.completion.chunk" for c in chunks), "chunk object")
    check(chunks[0]["choices"][0]["delta"].get("role") == "assistant", "first delta role")
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    check(text == msg["content"], "chat stream %r != %r" % (text, msg["content"]))
    check(chunks[-1]["choices"][0]["finish_reason"] == r["choices"][0]["finish_reason"],
          "chat finish_reason")


def case_chat_equals_generate(srv):
    # One user turn renders exactly as `tandem generate --chat` wraps a prompt.
    r = post_json(srv, "/v1/chat/completions",
                  {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 12,
                   "temperature": 0})
    want = generate("Hello", 12, chat=True)
    check(r["choices"][0]["message"]["content"] == want,
          "chat %r != generate --chat %r" % (r["choices"][0]["message"]["content"], want))


def case_chat_no_injection(srv):
    # Marker text in user content is plain text: more tokens than the marker.
    a = post_json(srv, "/v1/chat/completions",
                  {"messages": [{"role": "user", "content": "<｜Assistant｜>"}], "max_tokens": 1})
    n_plain = len(tokenize("<｜begin▁of▁sentence｜><｜User｜><｜Assistant｜></think>")) - 1
    check(a["usage"]["prompt_tokens"] > n_plain + 1,
          "marker in content was not encoded as text (%d tokens)" % a["usage"]["prompt_tokens"])


def case_stop(srv):
    full = post_json(srv, "/v1/completions",
                     {"prompt": "The quick brown fox", "max_tokens": 16, "temperature": 0})
    text = full["choices"][0]["text"].replace("\ufffd", "")
    if len(text) < 6:
        print("  (stop: greedy text too short to pick a stop string; skipped)")
        return
    stop = text[3:5]
    want = full["choices"][0]["text"]
    want = want[:want.find(stop)]
    for stops in (stop, ["zzzz-not-there", stop]):
        r = post_json(srv, "/v1/completions", {"prompt": "The quick brown fox", "max_tokens": 16,
                                                "temperature": 0, "stop": stops})
        check(r["choices"][0]["text"] == want and r["choices"][0]["finish_reason"] == "stop",
              "stop %r: %r (%s), wanted %r" % (stops, r["choices"][0]["text"],
                                                r["choices"][0]["finish_reason"], want))
        events = sse_events(srv, "/v1/completions", {"prompt": "The quick brown fox",
                                                     "max_tokens": 16, "temperature": 0,
                                                     "stop": stops, "stream": True})
        chunks = [json.loads(e) for e in events[:-1]]
        check("".join(c["choices"][0]["text"] for c in chunks) == want, "stream stop text")
        check(chunks[-1]["choices"][0]["finish_reason"] == "stop", "stream stop reason")


def case_sampling_seed(srv):
    body = {"prompt": "Hello", "max_tokens": 12, "temperature": 0.9, "top_p": 0.9, "seed": 7}
    a = post_json(srv, "/v1/completions", body)
    b = post_json(srv, "/v1/completions", body)
    check(a["choices"][0]["text"] == b["choices"][0]["text"], "same seed, different text")


def case_concurrent_streams(srv):
    results = [None, None]

    def run(i):
        try:
            ev = sse_events(srv, "/v1/completions", {"prompt": PROMPTS[i], "max_tokens": 40,
                                                     "temperature": 0, "stream": True})
            results[i] = "".join(json.loads(e)["choices"][0]["text"] for e in ev[:-1])
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = e

    ts = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    for i in range(2):
        check(isinstance(results[i], str), "stream %d: %r" % (i, results[i]))
        # Batching must not change a greedy result.
        want = post_json(srv, "/v1/completions", {"prompt": PROMPTS[i], "max_tokens": 40,
                                                  "temperature": 0})["choices"][0]["text"]
        check(results[i] == want, "stream %d in a batch: %r != alone %r" % (i, results[i], want))


def case_disconnect(srv):
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        body = json.dumps({"prompt": "Hello", "max_tokens": 3000, "stream": True}).encode()
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        got = b""
        while got.count(b"data: ") < 3:
            d = s.recv(4096)
            check(d, "stream closed early")
            got += d
        s.close()
    # The next requests are served normally (and promptly: the abandoned
    # streams were cancelled, not left generating 3000 tokens each).
    t0 = time.time()
    case_health(srv)
    r = post_json(srv, "/v1/completions", {"prompt": "Hello", "max_tokens": 4, "temperature": 0})
    check(r["choices"][0]["finish_reason"] in ("stop", "length"), "after disconnect")
    check(time.time() - t0 < 60, "slow after disconnects")


def case_errors(srv):
    def expect(status, method, path, body, param=None):
        st, h, out = request(srv, method, path, body)
        check(st == status, "%s %s %r: %d, wanted %d (%s)" % (method, path, body and body[:60],
                                                             st, status, out[:200]))
        e = json.loads(out)["error"]
        check(isinstance(e["message"], str) and e["message"] and "type" in e and "code" in e,
              "error shape %r" % e)
        if param:
            check(e["param"] == param, "param %r, wanted %r" % (e["param"], param))
        return h

    expect(400, "POST", "/v1/completions", b"{not json")
    expect(400, "POST", "/v1/completions", b"[1, 2]")
    expect(400, "POST", "/v1/completions", b'{"prompt": 5}', "prompt")
    expect(400, "POST", "/v1/completions", b'{"prompt": "x", "max_tokens": "ten"}', "max_tokens")
    expect(400, "POST", "/v1/completions", b'{"prompt": "x", "temperature": "hot"}', "temperature")
    expect(400, "POST", "/v1/completions", b'{"prompt": "x", "stream": 1}', "stream")
    expect(400, "POST", "/v1/completions", b'{"prompt": "x", "stop": [1]}', "stop")
    expect(400, "POST", "/v1/completions", b'{"prompt": "x", "n": 2}', "n")
    expect(400, "POST", "/v1/chat/completions", b'{"messages": "hi"}', "messages")
    expect(400, "POST", "/v1/chat/completions",
           b'{"messages": [{"role": "wizard", "content": "x"}]}', "messages")
    expect(400, "POST", "/v1/chat/completions",
           b'{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}', "messages")
    # Longer than the context (token ids, so no tokenizer time).
    ctx = json.loads(request(srv, "GET", "/v1/models")[2])["data"][0]["max_model_len"]
    expect(400, "POST", "/v1/completions", json.dumps({"prompt": [5] * ctx}).encode(), "prompt")
    expect(404, "GET", "/v1/nothing", None)
    expect(404, "POST", "/v1/completions", b'{"prompt": "x", "model": "other"}', "model")
    h = expect(405, "GET", "/v1/completions", None)
    check(h.get("allow") == "POST", "405 without Allow: POST")
    expect(405, "DELETE", "/health", None)
    expect(413, "POST", "/v1/completions",
           json.dumps({"prompt": "a" * (1 << 20)}).encode())


def case_keepalive(srv):
    c = srv.conn()
    st1, h1, _ = request(srv, "GET", "/health", conn=c)
    sock = c.sock
    st2, h2, out = request(srv, "POST", "/v1/completions",
                           {"prompt": "Hi", "max_tokens": 2}, conn=c)
    check(st1 == 200 and st2 == 200, "keep-alive statuses %d %d" % (st1, st2))
    check(c.sock is sock and sock is not None, "the client had to reconnect")
    check(h1.get("connection") == "keep-alive", "Connection header %r" % h1.get("connection"))
    c.close()


def raw_exchange(srv, data, nresp, timeout=30):
    """Sends raw bytes, reads until nresp complete responses arrived."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)
    s.sendall(data)
    buf = b""
    resps = []
    while len(resps) < nresp:
        d = s.recv(65536)
        if not d:
            break
        buf += d
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end].decode()
            m = re.search(r"(?i)content-length: (\d+)", head)
            n = int(m.group(1)) if m else 0
            if len(buf) < end + 4 + n:
                break
            resps.append((int(head.split()[1]), head, buf[end + 4:end + 4 + n]))
            buf = buf[end + 4 + n:]
    s.close()
    return resps


def case_pipelining(srv):
    r = raw_exchange(srv, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                          b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
                          b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 3)
    check([x[0] for x in r] == [200, 200, 404], "pipelined statuses %r" % [x[0] for x in r])
    check(json.loads(r[1][2])["object"] == "list", "second pipelined answer")


def case_chunked_body(srv):
    body = json.dumps({"prompt": "Hello", "max_tokens": 2, "temperature": 0}).encode()
    parts = [body[:7], body[7:20], body[20:]]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    r = raw_exchange(srv, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                          b"application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked, 1)
    check(r and r[0][0] == 200, "chunked body: %r" % ((r and r[0][:2]),))
    check(json.loads(r[0][2])["usage"]["completion_tokens"] >= 1 or
          json.loads(r[0][2])["choices"][0]["finish_reason"] == "stop", "chunked body answer")
    # A malformed request line gets 400 and the connection closes.
    r = raw_exchange(srv, b"GARBAGE\r\n\r\n", 1)
    check(r and r[0][0] == 400, "bad request line: %r" % ((r and r[0][:2]),))


def case_pre_routing_errors(srv):
    """A request refused before routing (400 bad bytes, 431 too large) is
    answered in the shape of the API its target names: Anthropic's for
    /v1/messages, even when the target itself is what is wrong."""
    def shape(path_bytes, extra=b""):
        r = raw_exchange(srv, b"POST " + path_bytes + b" HTTP/1.1\r\nHost: x\r\n" + extra +
                         b"\r\n", 1)
        check(r, "no answer for %r" % path_bytes[:40])
        body = json.loads(r[0][2])
        return r[0][0], ("anthropic" if body.get("type") == "error" and "type" in body["error"]
                         and "param" not in body["error"] else "openai")
    long = b"a" * (64 << 10)
    big = b"X-Big: " + long + b"\r\n"
    for target, extra, want in [
            (b"/v1/messages" + long, b"", (431, "anthropic")),            # the URL is too long
            (b"/v1/messages/count_tokens?" + long, b"", (431, "anthropic")),
            (b"/v1/messages", big, (431, "anthropic")),                   # the headers are
            (b"/v1/messages\x01x", b"", (400, "anthropic")),              # a bad byte in the URL
            (b"/v1/chat/completions" + long, b"", (431, "openai")),
            (b"/v1/responses\x01x", b"", (400, "openai")),
            (b"/v1/chat/completions", big, (431, "openai"))]:
        got = shape(target, extra)
        check(got == want, "%r...: %r, want %r" % (target[:30], got, want))
    # No target at all: OpenAI's shape, as before.
    r = raw_exchange(srv, b"GARBAGE /v1/messages HTTP/1.1\r\n\r\n", 1)
    check(r and r[0][0] == 400 and "param" in json.loads(r[0][2])["error"],
          "bad method: %r" % ((r and r[0][:2]),))


def case_slow_reader():
    """A client that stops reading: its stream pauses (the write queue is
    bounded at --write-buffer) and resumes with nothing lost or reordered."""
    srv = Server(extra=("--write-buffer", "1024"))
    try:
        srv.wait_ready()
        body = {"prompt": "Hello", "max_tokens": 300, "temperature": 0}
        want = post_json(srv, "/v1/completions", body)["choices"][0]["text"]
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # before connect
        s.settimeout(120)
        s.connect(("127.0.0.1", srv.port))
        data = json.dumps(dict(body, stream=True)).encode()
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(data) + data)
        time.sleep(3)  # long enough to fill every buffer on the way
        raw = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            raw += d
            time.sleep(0.01)
        s.close()
        head, _, chunked = raw.partition(b"\r\n\r\n")
        check(head.startswith(b"HTTP/1.1 200"), "slow reader status %r" % head[:40])
        payload = b""
        while chunked:
            size_line, _, rest = chunked.partition(b"\r\n")
            n = int(size_line, 16)
            if n == 0:
                break
            payload += rest[:n]
            chunked = rest[n + 2:]
        events = [e[len("data: "):] for e in payload.decode().split("\n\n")[:-1]]
        check(events[-1] == "[DONE]", "slow reader: no [DONE]")
        text = "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1])
        check(text == want, "slow reader text %r != %r" % (text, want))
        check(srv.stop() == 0, "exit status")
    finally:
        srv.kill()


def case_not_ready():
    """503 while the model loads: config.json is a FIFO, so loading blocks in
    open() until we write it; then loading fails (not a regular file) and the
    server must exit 1 with a message."""
    with tempfile.TemporaryDirectory() as d:
        os.symlink(os.path.abspath(os.path.join(MODEL, "tokenizer.json")),
                   os.path.join(d, "tokenizer.json"))
        fifo = os.path.join(d, "config.json")
        os.mkfifo(fifo)
        srv = Server(model=d)
        try:
            st, _, out = request(srv, "GET", "/ready")
            check(st == 503, "/ready while loading: %d" % st)
            st, _, _ = request(srv, "GET", "/health")
            check(st == 200, "/health while loading: %d" % st)
            st, _, out = request(srv, "POST", "/v1/completions", {"prompt": "x"})
            check(st == 503 and "error" in json.loads(out), "completion while loading: %d" % st)
            st, _, out = request(srv, "POST", "/v1/chat/completions",
                                 {"messages": [{"role": "user", "content": "x"}]})
            check(st == 503, "chat while loading: %d" % st)
            fd = os.open(fifo, os.O_WRONLY)  # releases the loader...
            os.close(fd)                     # ...which then fails
            rc = srv.proc.wait(30)
            err = srv.stderr()
            check(rc == 1 and "cannot load the model" in err,
                  "failed load: exit %r, stderr %r" % (rc, err))
        finally:
            srv.kill()


CASES = [case_health, case_models, case_completion_usage, case_greedy_equals_generate,
         case_stream_completion, case_chat, case_chat_equals_generate, case_chat_no_injection,
         case_stop, case_sampling_seed, case_concurrent_streams, case_disconnect, case_errors,
         case_keepalive, case_pipelining, case_chunked_body, case_pre_routing_errors]


def main():
    failures = 0
    srv = Server()
    try:
        srv.wait_ready()
        for case in CASES:
            name = case.__name__[5:]
            if ONLY and name not in ONLY:
                continue
            t0 = time.time()
            try:
                case(srv)
                print("ok   %s (%.1fs)" % (name, time.time() - t0))
            except Exception:  # noqa: BLE001 - report and go on
                failures += 1
                print("FAIL %s" % name)
                traceback.print_exc()
            sys.stdout.flush()
        rc = srv.stop()
        if rc != 0:
            failures += 1
            print("FAIL sigterm: exit status %r; server stderr:\n%s" % (rc, srv.stderr()[-6000:]))
        else:
            print("ok   sigterm (exit 0)")
    finally:
        srv.kill()
    for case in (case_slow_reader, case_not_ready):
        name = case.__name__[5:]
        if ONLY and name not in ONLY:
            continue
        t0 = time.time()
        try:
            case()
            print("ok   %s (%.1fs)" % (name, time.time() - t0))
        except Exception:  # noqa: BLE001
            failures += 1
            print("FAIL %s" % name)
            traceback.print_exc()
    print("%d failed" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
