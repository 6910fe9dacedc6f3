"""What the deploy tests share: processes of the tandem binary with their
logs in a file, plain HTTP GETs, and a Prometheus text page parsed into
families."""
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request


class Proc:
    """A tandem process whose stdout and stderr go to one temporary file."""

    def __init__(self, argv, env=None, cwd=None):
        self.log = tempfile.NamedTemporaryFile(prefix="tandem-deploy-", suffix=".log")
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env, cwd=cwd)

    def text(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def wait_for(self, pattern, timeout=20):
        """The first match of `pattern` in the log; fails if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.text())
            if m:
                return m
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("%s: no %r (exit %s); log:\n%s" % (
                    " ".join(self.argv), pattern, self.proc.poll(), self.text()))
            time.sleep(0.05)

    def stop(self, timeout=20):
        """SIGTERM, then the exit status (killed and failed after timeout)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("%s: still running %ds after SIGTERM; log:\n%s" % (
                " ".join(self.argv), timeout, self.text()))


def http(url, headers=None, body=None, timeout=10):
    """(status, body text); no exception for 4xx/5xx."""
    req = urllib.request.Request(url, headers=headers or {}, data=body)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_http(url, status=200, headers=None, timeout=20, procs=()):
    """The body once url answers `status`; fails at once if one of `procs`
    (Proc) has exited."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for p in procs:
            if p.proc.poll() is not None:
                raise AssertionError("%s exited %d while waiting for %s; log:\n%s" % (
                    " ".join(p.argv), p.proc.returncode, url, p.text()))
        try:
            last = http(url, headers)
            if last[0] == status:
                return last[1]
        except OSError as e:
            last = e
        time.sleep(0.05)
    raise AssertionError("%s: no %d within %ds (last: %r)" % (url, status, timeout, last))


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"')


def families(text):
    """{family name: {"type": TYPE, "labels": set of label names seen}};
    a histogram's _bucket/_sum/_count samples count for its family."""
    fams = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(None, 3)
            fams.setdefault(name, {"type": typ, "labels": set()})
            continue
        m = SAMPLE.match(line)
        if not m:
            continue
        name = m.group(1)
        if name not in fams:
            for suffix in ("_bucket", "_sum", "_count"):
                base = name[:-len(suffix)]
                if name.endswith(suffix) and fams.get(base, {}).get("type") == "histogram":
                    name = base
                    break
        fam = fams.setdefault(name, {"type": "untyped", "labels": set()})
        fam["labels"].update(LABEL.findall(m.group(2) or ""))
    return fams


def free_ports(n):
    """n distinct ports that were free a moment ago (loopback)."""
    import socket
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def chat(base, headers=None):
    """One short chat completion; its status."""
    body = b'{"messages":[{"role":"user","content":"Hello"}],"max_tokens":4}'
    return http(base + "/v1/chat/completions", headers, body)[0]


def env_without_ucx():
    """The test's environment minus UCX settings the caller did not choose."""
    return {k: v for k, v in os.environ.items() if not k.startswith("UCX_")}
