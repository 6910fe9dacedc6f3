#!/usr/bin/python3
"""Disaggregated serving across three "hosts": the router, the prefill
worker and the decode worker each run in their own network namespace,
joined by veth links to a bridge (in a fourth namespace), so the control
plane (nng over TCP) and the KV state (UCX over TCP, UCX_TLS=tcp) cross a
real network stack. Namespaces, links and bridge are created here and
removed at the end; where namespaces are not permitted the test is skipped
(exit 77) with the reason.

usage: netns_test.py TANDEM MODEL_DIR

Checks: greedy output through router -> prefill -> UCX/TCP -> decode equals
`tandem generate` for short and long prompts (stream and not), and kill -9
of the decode worker mid-stream gives the client an error event promptly.
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

TANDEM, MODEL = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
TAG = "td%d" % (os.getpid() % 100000)
HUB, NS = TAG + "hub", {r: TAG + r[0] for r in ("router", "prefill", "decode")}
ADDR = {"router": "10.77.0.1", "prefill": "10.77.0.2", "decode": "10.77.0.3"}


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


def setup():
    sh("ip", "netns", "add", HUB)
    sh("ip", "-n", HUB, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", HUB, "link", "set", "br0", "up")
    for i, (role, ns) in enumerate(NS.items()):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        # One end in the role's namespace (td0), the other on the bridge.
        sh("ip", "-n", ns, "link", "add", "td0", "type", "veth", "peer", "name", "p%d" % i,
           "netns", HUB)
        sh("ip", "-n", HUB, "link", "set", "p%d" % i, "master", "br0")
        sh("ip", "-n", HUB, "link", "set", "p%d" % i, "up")
        sh("ip", "-n", ns, "addr", "add", ADDR[role] + "/24", "dev", "td0")
        sh("ip", "-n", ns, "link", "set", "td0", "up")


def teardown():
    for ns in list(NS.values()) + [HUB]:
        sh("ip", "netns", "del", ns, check=False)


class Proc:
    def __init__(self, role, args):
        self.errfile = tempfile.TemporaryFile()
        # tcp only, on the veth: namespaces do not isolate shared memory,
        # and loopback would reach the wrong "host".
        env = dict(os.environ, UCX_TLS="tcp", UCX_NET_DEVICES="td0")
        self.proc = subprocess.Popen(["ip", "netns", "exec", NS[role], TANDEM, *args],
                                     env=env, stdout=subprocess.PIPE, stderr=self.errfile,
                                     bufsize=0)

    def readline(self, timeout=30):
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not r:
            raise AssertionError("no line within %ds: %s" % (timeout, self.stderr()))
        return self.proc.stdout.readline().decode().rstrip("\n")

    def stderr(self):
        self.errfile.seek(0)
        return self.errfile.read().decode(errors="replace")


def client(port, body, stream=False):
    """An HTTP request from inside the router's namespace (curl)."""
    r = sh("ip", "netns", "exec", NS["router"], "curl", "-sS", "-N", "--max-time", "60",
           "-H", "Content-Type: application/json", "-d", json.dumps(body),
           "http://%s:%d/v1/completions" % (ADDR["router"], port), check=False)
    if not stream:
        j = json.loads(r.stdout)
        return j["choices"][0]["text"]
    text = ""
    for line in r.stdout.split("\n"):
        if line.startswith("data: {"):
            ch = json.loads(line[6:]).get("choices") or []
            if ch:
                text += ch[0]["text"]
    return text, r.stdout


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def generate(prompt, n):
    out = sh(TANDEM, "generate", "--model", MODEL, "--prompt", prompt, "--max-tokens", str(n))
    return out.stdout[:-1]


def main():
    try:
        setup()
    except subprocess.CalledProcessError as e:
        teardown()
        print("SKIP: network namespaces not permitted here (%s: %s)" %
              (" ".join(e.cmd), e.stderr.strip()))
        return 77
    procs = []
    try:
        r = Proc("router", ["router", "--model", MODEL, "--host", ADDR["router"], "--port", "0",
                            "--workers", "tcp://%s:0" % ADDR["router"],
                            "--worker-timeout-ms", "1000"])
        procs.append(r)
        url = re.match(r"tandem: workers register at (\S+)$", r.readline()).group(1)
        port = int(re.search(r":(\d+) \(", r.readline()).group(1))
        for role in ("prefill", "decode"):
            procs.append(Proc(role, [role, "--model", MODEL, "--router", url, "--listen",
                                     "tcp://%s:0" % ADDR[role], "--threads", "1"]))
        end = time.time() + 60
        while time.time() < end:
            st = sh("ip", "netns", "exec", NS["router"], "curl", "-s", "-o", "/dev/null",
                    "-w", "%{http_code}", "http://%s:%d/ready" % (ADDR["router"], port),
                    check=False).stdout
            if st == "200":
                break
            time.sleep(0.1)
        check(st == "200", "not ready: %s" % [p.stderr() for p in procs])
        prompts = ["Hi", "An agent session " * 12, " ".join("word%d" % i for i in range(120))]
        for i, p in enumerate(prompts):
            want = generate(p, 12)
            body = dict(prompt=p, max_tokens=12, temperature=0, stream=bool(i % 2))
            got = client(port, body, stream=bool(i % 2))
            got = got[0] if isinstance(got, tuple) else got
            check(got == want, "prompt %d across namespaces: %r != generate's %r" % (i, got, want))
            print("ok   prompt %d (%d chars) token-identical across namespaces" % (i, len(p)))
        # kill -9 of the decode worker mid-stream: the stream ends with an error
        import threading
        res = {}
        t = threading.Thread(target=lambda: res.update(out=client(
            port, dict(prompt="The quick brown fox jumps over the lazy dog.", max_tokens=4000,
                       temperature=0, stream=True),
            stream=True)))
        t.start()
        time.sleep(1.0)
        procs[2].proc.send_signal(signal.SIGKILL)  # `ip netns exec` execs: this is tandem
        t.join(30)
        check(not t.is_alive(), "the stream did not end after the decode worker died")
        check('"error"' in res["out"][1], "no error event: %r" % res["out"][1][-300:])
        print("ok   kill -9 of the decode worker mid-stream: error event")
        return 0
    except Exception as e:  # noqa: BLE001
        print("FAIL", e)
        for p in procs:
            print("--- stderr:", p.stderr()[-1500:])
        return 1
    finally:
        for p in procs:
            if p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait()
        teardown()


if __name__ == "__main__":
    sys.exit(main())
