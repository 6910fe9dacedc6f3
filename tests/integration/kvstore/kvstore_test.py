#!/usr/bin/python3
"""The kvstore as the disk tier of a prefill worker (docs/kvstore.md, "The
disk tier"): real `tandem router` + `tandem prefill --kv-store DIR` processes,
real io_uring and files.

usage: kvstore_test.py TANDEM MODEL_DIR [CASE...]

Every answer is compared with a server that never caches anything
(`tandem serve --in-process --prefix-cache-mib 0`): a session spilled to
disk and resumed must continue token-identically (greedy; the text of the
completion), and `cached_tokens` says the resume happened. Faults (corrupt
blocks, a store that cannot be opened, permissions, a full disk) must be
logged, counted in /metrics, and cost a recompute, nothing else.
"""
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "serve"))
sys.path.insert(0, os.path.join(HERE, "..", "disagg"))
import serve_test as st  # noqa: E402  (argv: TANDEM MODEL_DIR)
import disagg_test as dt  # noqa: E402
from serve_test import check, request  # noqa: E402

TANDEM, MODEL = st.TANDEM, st.MODEL
ONLY = sys.argv[3:]
rng = random.Random(5)


def ids(n):
    """Random ids of the tiny model's 512 (0 and 1 are BOS and EOS)."""
    return [rng.randrange(2, 500) for _ in range(n)]


P1, X, Y, P2, Z = ids(1500), ids(40), ids(30), ids(1000), ids(20)


def complete(srv, prompt, n=12):
    status, _, out = request(srv, "POST", "/v1/completions",
                             dict(prompt=prompt, max_tokens=n, temperature=0))
    check(status == 200, "status %d: %s" % (status, out[:300]))
    j = json.loads(out)
    return j["choices"][0]["text"], j["usage"]["prompt_tokens_details"]["cached_tokens"]


class Ref:
    """Answers of a server that never caches, computed once per prompt."""

    def __init__(self):
        self.srv, self.memo = None, {}

    def __call__(self, prompt, n=12):
        key = (tuple(prompt), n)
        if key not in self.memo:
            if not self.srv:
                self.srv = st.Server(extra=["--in-process", "--prefix-cache-mib", "0"])
                self.srv.wait_ready()
            self.memo[key] = complete(self.srv, prompt, n)[0]
        return self.memo[key]

    def close(self):
        if self.srv:
            self.srv.stop()


REF = Ref()


class WProc(dt.Proc):
    """dt.Proc, optionally started under another user."""

    def __init__(self, args, preexec=None):
        self.errfile = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([TANDEM, *args], env=dt.ENV, stderr=self.errfile,
                                     stdout=subprocess.DEVNULL, preexec_fn=preexec)


LAST = []  # the case's Env, for its logs on failure


class Env:
    """A router and one prefill worker (it answers whole requests: no decode
    worker), which can be stopped, killed and started again on its store."""

    def __init__(self, store, *extra, preexec=None):
        # the same --id on every start: the router takes a new registration
        # of it in place of the old one, dead or not
        self.c = dt.Cluster(n_prefill=0, n_decode=0, timeout_ms=5000)
        self.store, self.extra, self.preexec = store, list(extra), preexec
        self.w = None
        LAST[:] = [self]
        self.start()

    def start(self):
        args = ["prefill", "--model", MODEL, "--router", self.c.url, "--threads", "1",
                "--heartbeat-ms", "100", "--id", "spill-worker"]
        if self.store:
            args += ["--kv-store", self.store]
        self.w = WProc(args + self.extra, self.preexec)
        self.c.workers = [self.w]
        self.c.wait_ready()

    def stop(self):
        rc = self.w.stop()
        check(rc == 0, "worker exit status %r: %s" % (rc, self.w.stderr()[-2000:]))

    def kill(self):
        self.w.kill()

    def metrics(self):
        return dt.scrape(self.w)

    def close(self):
        for p in [self.w, self.c.router]:
            if p.proc.poll() is None:
                p.stop()

    def logs(self):
        return self.c.logs()


def m(ms, name, labels=""):
    return ms.get((name, labels), 0)


def wait_spilled(env, spills):
    end = time.time() + 20
    while True:
        ms = env.metrics()
        if m(ms, "tandem_kv_spills_total") + m(ms, "tandem_kv_spills_skipped_total") >= spills \
                and m(ms, "tandem_prefix_cache_bytes") == 0:
            return ms
        check(time.time() < end, "not spilled: %r" % {k: v for k, v in ms.items()
                                                     if "spill" in k[0]})
        time.sleep(0.1)


def same(env, prompt, want_cached, n=12):
    got, cached = complete(env.c, prompt, n)
    check(got == REF(prompt, n), "%d-token prompt: %r != never spilled %r" %
          (len(prompt), got, REF(prompt, n)))
    check(cached == want_cached, "%d-token prompt: %d tokens cached, want %d" %
          (len(prompt), cached, want_cached))


def dump_tokens(store):
    out = subprocess.run([TANDEM, "kvstore", "dump", store], capture_output=True, text=True)
    check(out.returncode == 0, "kvstore dump: %s" % out.stderr)
    return out.stdout


def case_idle_spill_and_restart(tmp):
    """A session idle for 100 ms goes to disk and its memory is freed; the
    next turn resumes from disk; after a clean restart, and after kill -9,
    the next turn resumes from disk too; all token-identical."""
    store = os.path.join(tmp, "store")
    env = Env(store, "--kv-spill-idle-ms", "100")
    try:
        same(env, P1, 0, 16)
        ms = wait_spilled(env, 2)  # the prompt's end and the finish (prompt + 15)
        check(m(ms, "tandem_kvstore_bytes_used") > 0, "nothing on disk")
        check(m(ms, "tandem_kv_spill_duration_seconds_count") == m(ms, "tandem_kv_spills_total"),
              "spill histogram")
        same(env, P1 + X, len(P1))
        ms = env.metrics()
        check(m(ms, "tandem_kv_resumes_total") == 1, "resumes %r" % m(ms, "tandem_kv_resumes_total"))
        check(m(ms, "tandem_kv_resume_tokens_total") == len(P1), "resume tokens")
        check(m(ms, "tandem_kv_resume_duration_seconds_count") == 1, "resume histogram")
        check(m(ms, "tandem_kvstore_hit_tokens_total") >= len(P1) // 128 * 128, "hit tokens")
        print("  resume of %d tokens from disk: %.1f ms; spill: %.1f ms each" %
              (len(P1), 1000 * m(ms, "tandem_kv_resume_duration_seconds_sum"),
               1000 * m(ms, "tandem_kv_spill_duration_seconds_sum") /
               m(ms, "tandem_kv_spill_duration_seconds_count")))
        # the state at finish (prompt + generated - 1 tokens) is on disk
        env.stop()
        check(re.search(r"section 0 +tokens %d " % (len(P1) + 15), dump_tokens(store)),
              "no state at finish on disk: %s" % dump_tokens(store)[:2000])
        env.start()  # a clean restart: what was in memory went to disk at stop
        same(env, P1 + X + Y, len(P1) + len(X))
        same(env, P2, 0)
        wait_spilled(env, 1)
        env.kill()
        env.start()  # kill -9: what was spilled survives
        same(env, P2 + Z, len(P2))
        ms = env.metrics()
        check(m(ms, "tandem_kvstore_checksum_failures_total") == 0, "checksum failures")
    finally:
        env.close()


def case_corrupt_blocks(tmp):
    """Every stored block damaged: the resume fails its checks, is logged and
    counted, the request recomputes token-identically, the worker serves on."""
    store = os.path.join(tmp, "store")
    env = Env(store)
    try:
        same(env, P2, 0)
        env.stop()  # spills at stop
        for f in os.listdir(store):
            if f.startswith("seg-"):
                with open(os.path.join(store, f), "r+b") as fh:
                    size = min(os.path.getsize(fh.name), 64 << 20)
                    for off in range(1000, size, 4096):
                        fh.seek(off)
                        b = fh.read(1)
                        fh.seek(off)
                        fh.write(bytes([b[0] ^ 0x5a]))
        env.start()
        same(env, P2 + Z, 0)
        same(env, P2 + Z + Y, len(P2) + len(Z))  # a fresh state is stored and used
        ms = env.metrics()
        check(m(ms, "tandem_kvstore_checksum_failures_total") >= 1, "no checksum failure counted")
        check(m(ms, "tandem_kv_spill_errors_total", '{op="resume",reason="corrupt"}') >= 1,
              "no resume error counted")
        check("kv spill: resume failed (corrupt" in env.w.stderr(), "not logged")
    finally:
        env.close()


def case_store_unusable(tmp):
    """A store path that is a file: logged, tandem_kv_spill_store_up 0, the
    worker serves without the tier."""
    path = os.path.join(tmp, "file")
    open(path, "w").close()
    env = Env(path, "--kv-spill-idle-ms", "50")
    try:
        same(env, P2, 0)
        ms = env.metrics()
        check(m(ms, "tandem_kv_spill_store_up") == 0, "store up")
        check(sum(v for (k, l), v in ms.items()
                  if k == "tandem_kv_spill_errors_total" and 'op="open"' in l) == 1, "open error")
        check("serving without the disk tier" in env.w.stderr(), "not logged")
        same(env, P2 + Z, len(P2))  # the memory cache still works
    finally:
        env.close()


def case_permission_denied(tmp):
    """A store directory the worker may not write (EACCES): as above. As root,
    the worker runs as nobody; without root, the directory is read-only."""
    store = os.path.join(tmp, "ro")
    os.mkdir(store, 0o555)
    preexec = None
    if os.geteuid() == 0:
        os.chmod(store, 0o755)  # root's: nobody may not write it

        def preexec():
            os.setgid(65534)
            os.setuid(65534)
    env = Env(os.path.join(store, "kv"), preexec=preexec)
    try:
        same(env, P2, 0)
        ms = env.metrics()
        check(m(ms, "tandem_kv_spill_store_up") == 0, "store up")
        check("kv spill: open failed" in env.w.stderr(), "not logged: %s" % env.w.stderr())
    finally:
        env.close()


def case_disk_full(tmp):
    """A 512 KiB tmpfs: the segment file cannot be allocated (ENOSPC); the
    idle spill fails, is logged and counted, and the state stays in memory."""
    mnt = os.path.join(tmp, "mnt")
    os.mkdir(mnt)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", mnt],
                       capture_output=True)
    if r.returncode != 0:
        print("  (skipped: cannot mount a tmpfs here)")
        return
    env = None
    try:
        env = Env(os.path.join(mnt, "store"), "--kv-spill-idle-ms", "50")
        same(env, P2, 0)
        end = time.time() + 20
        while m(env.metrics(), "tandem_kv_spill_errors_total", '{op="spill",reason="nospc"}') < 1:
            check(time.time() < end, "no ENOSPC counted")
            time.sleep(0.1)
        check("kv spill: spill failed (no space left" in env.w.stderr(), "not logged")
        same(env, P2 + Z, len(P2))  # the state stayed in memory
    finally:
        if env:
            env.close()
        subprocess.run(["umount", mnt])


def case_peer_resume(tmp):
    """Two workers, each with its own store and the other's as a peer (a
    shared volume). A session worker A spilled resumes on worker B after A
    is killed: B reads A's store, token-identical, nothing recomputed."""
    da, db = os.path.join(tmp, "a"), os.path.join(tmp, "b")
    c = dt.Cluster(n_prefill=0, n_decode=0, timeout_ms=1000)
    LAST[:] = [type("L", (), {"logs": c.logs, "close": lambda self: None})()]
    a = b = None
    try:
        a = WProc(["prefill", "--model", MODEL, "--router", c.url, "--threads", "1",
                   "--heartbeat-ms", "100", "--id", "wa", "--kv-store", da,
                   "--kv-store-peers", db, "--kv-spill-idle-ms", "100",
                   "--kv-store-range-tokens", "256"])
        c.workers = [a]
        c.wait_ready()
        got, cached = complete(c, P2)
        check(got == REF(P2) and cached == 0, "turn 1")
        end = time.time() + 20
        while m(dt.scrape(a), "tandem_kv_spills_total") < 2:  # prompt end and finish
            check(time.time() < end, "A did not spill")
            time.sleep(0.1)
        a.kill()
        b = WProc(["prefill", "--model", MODEL, "--router", c.url, "--threads", "1",
                   "--heartbeat-ms", "100", "--id", "wb", "--kv-store", db,
                   "--kv-store-peers", da, "--kv-store-range-tokens", "256"])
        c.workers = [b]
        c.wait_ready()
        end = time.time() + 10  # until the router has dropped A
        while True:
            status, _, out = request(c, "POST", "/v1/completions",
                                     dict(prompt=P2 + Z, max_tokens=12, temperature=0))
            if status == 200 or time.time() > end:
                break
            time.sleep(0.2)
        check(status == 200, "turn 2: %d %s" % (status, out[:200]))
        j = json.loads(out)
        check(j["choices"][0]["text"] == REF(P2 + Z), "turn 2 differs from a full prefill")
        check(j["usage"]["prompt_tokens_details"]["cached_tokens"] == len(P2),
              "turn 2 cached %r, want %d" % (j["usage"], len(P2)))
        ms = dt.scrape(b)
        check(m(ms, "tandem_kv_peer_resumes_total") == 1 and
              m(ms, "tandem_kv_peer_resume_tokens_total") == len(P2), "peer resume counters")
        check(m(ms, "tandem_kv_resumes_total") == 0, "B's own store served it?")
    finally:
        for p in (a, b, c.router):
            if p and p.proc.poll() is None:
                p.stop()



def case_in_process_metrics(tmp):
    """tandem serve --in-process --kv-store: the tier's families on the
    router's /metrics (promtool clean), and a session resumed from disk."""
    import ops_test  # noqa: E402  (the metrics parser and promtool check)
    srv = st.Server(extra=["--in-process", "--kv-store", os.path.join(tmp, "store"),
                           "--kv-spill-idle-ms", "50"])
    try:
        srv.wait_ready()
        check(complete(srv, P2)[0] == REF(P2), "turn 1")
        time.sleep(0.5)  # idle: to disk
        got, cached = complete(srv, P2 + Z)
        check(got == REF(P2 + Z) and cached == len(P2), "turn 2: cached %d" % cached)
        status, _, out = request(srv, "GET", "/metrics")
        check(status == 200, "/metrics %d" % status)
        ops_test.promtool(out.decode())
        ms = ops_test.parse(out.decode())[0]
        check(m(ms, "tandem_kv_spill_store_up") == 1 and m(ms, "tandem_kv_resumes_total") == 1
              and m(ms, "tandem_kvstore_bytes_used") > 0, "metrics %r" %
              {k: v for k, v in ms.items() if "kv" in k[0]})
    finally:
        srv.stop()



def case_serve_both_workers(tmp):
    """tandem serve --kv-store DIR (the embedded default): the prefill
    worker's store is DIR, the decode worker's DIR/decode, each the other's
    peer; the decode worker's finished conversation goes to its store when
    idle."""
    store = os.path.join(tmp, "store")
    srv = st.Server(extra=["--kv-store", store, "--kv-spill-idle-ms", "50"])
    try:
        srv.wait_ready()
        check(complete(srv, P2, 8)[0] == REF(P2, 8), "turn 1")
        def kept():
            out = subprocess.run([TANDEM, "kvstore", "dump", os.path.join(store, "decode")],
                                 capture_output=True, text=True)
            return [int(t) for t in re.findall(r"section 0 +tokens (\d+) ", out.stdout)
                    if int(t) > len(P2)], out
        end = time.time() + 20
        got, out = kept()
        while not got and time.time() < end:
            time.sleep(0.2)
            got, out = kept()
        check(got, "the decode worker's conversation is not in its store: %s %s" %
              (out.stdout[-1500:], out.stderr[-500:]))
    finally:
        srv.stop()


def case_restart_announces_disk(tmp):
    """A restarted worker tells the router what its disk holds: the router
    forgot the worker's prefixes when it went away, and without the
    announcement would place the next turn by load; with it, by prefix, and
    the turn resumes from disk, token-identically."""
    store = os.path.join(tmp, "store")
    env = Env(store)
    try:
        same(env, P2, 0)
        env.stop()       # SIGTERM: the memory cache goes to disk
        env.start()      # the same --id: a new registration replaces the old
        by_prefix = ("tandem_placements_total", '{decision="prefix"}')
        end = time.time() + 10
        while True:      # the announcement travels with the KV events
            r0 = dt.router_metrics(env.c)
            if m(r0, "tandem_prefix_blocks_held") or time.time() > end:
                break
            time.sleep(0.1)
        check(m(r0, "tandem_prefix_blocks_held") == len(P2) // 64,
              "blocks announced: %r" % m(r0, "tandem_prefix_blocks_held"))
        same(env, P2 + Z, len(P2))
        r1 = dt.router_metrics(env.c)
        check(r1.get(by_prefix, 0) - r0.get(by_prefix, 0) == 1,
              "placed by prefix: %r" % (r1.get(by_prefix, 0) - r0.get(by_prefix, 0)))
    finally:
        env.close()


CASES = [case_restart_announces_disk, case_peer_resume, case_serve_both_workers, case_idle_spill_and_restart, case_corrupt_blocks, case_store_unusable,
         case_permission_denied, case_disk_full, case_in_process_metrics]


def main():
    failed = 0
    for case in CASES:
        name = case.__name__[5:]
        if ONLY and name not in ONLY:
            continue
        tmp = tempfile.mkdtemp(prefix="tandem-kvspill-")
        os.chmod(tmp, 0o755)
        t0 = time.time()
        try:
            case(tmp)
            print("ok %s (%.1f s)" % (name, time.time() - t0))
        except Exception:  # noqa: BLE001
            failed += 1
            print("FAIL", name)
            traceback.print_exc()
            if LAST:
                print(LAST[0].logs()[-6000:])
                LAST[0].close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    REF.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
