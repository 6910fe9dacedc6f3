#!/usr/bin/python3
"""kill -9 while the disk tier spills, then restart: no corrupted state is
ever served (issue 5 acceptance).

usage: spill_stress.py TANDEM MODEL_DIR [ITERATIONS] [SEED]

One store directory for the whole run. Each iteration starts
`tandem serve --in-process --kv-store DIR --kv-spill-idle-ms 1` (every state
goes to disk as soon as it is put), first checks the sessions: each of four
conversations' full prompt must be answered exactly as a server that never
caches answers it, whatever prefix it resumed from (a first clean run leaves
a prefix of each on disk); then sends prefixes of
those prompts (so states land on disk while it runs) and kills the server
with SIGKILL at a random instant, mid-spill or not. At the end the store
must verify clean (`tandem kvstore verify`). make test runs 3 iterations;
bench/kvstore-spill-stress.sh runs 100.
"""
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "serve"))
ARGV = sys.argv[:]
sys.argv = sys.argv[:3]  # serve_test reads TANDEM MODEL_DIR [CASE...]
import serve_test as st  # noqa: E402
from serve_test import check  # noqa: E402
import kvstore_test as kt  # noqa: E402

TANDEM, MODEL = st.TANDEM, st.MODEL
ITERS = int(ARGV[3]) if len(ARGV) > 3 else 3
rng = random.Random(int(ARGV[4]) if len(ARGV) > 4 else 7)
# four conversations of 400-1000 tokens (several 128-token blocks each)
CONV = [[rng.randrange(2, 500) for _ in range(rng.randrange(400, 1000))] for _ in range(4)]


# States of 256 tokens or more go in token ranges (shared between the
# states of a conversation): a kill can land between a range written and
# the state that needs it.
RANGES = ["--kv-store-range-tokens", "256"]


def main():
    store = tempfile.mkdtemp(prefix="tandem-spill-stress-")
    ref = kt.Ref()
    want = [ref(c, 6) for c in CONV]
    ref.close()
    resumed = served = 0
    t0 = time.time()
    try:
        # a store that holds a prefix of every conversation from the start,
        # so that even a short run checks resumes
        srv = st.Server(extra=["--in-process", "--kv-store", store] + RANGES)
        srv.wait_ready()
        for c in CONV:
            kt.complete(srv, c[:len(c) - 100], 1)
        check(srv.stop() == 0, "warm-up server exit status")
        for it in range(ITERS):
            srv = st.Server(extra=["--in-process", "--kv-store", store,
                                   "--kv-spill-idle-ms", "1", "--prefix-cache-mib", "1"] + RANGES)
            try:
                srv.wait_ready()
                for i, c in enumerate(CONV):
                    got, cached = kt.complete(srv, c, 6)
                    served += 1
                    resumed += cached > 0
                    check(got == want[i], "iteration %d, conversation %d: resumed from %d "
                          "tokens, answered %r, never spilled %r" % (it, i, cached, got, want[i]))
                stop = threading.Event()

                def load():
                    k = rng.randrange(len(CONV))
                    while not stop.is_set():
                        k = (k + 1) % len(CONV)  # every conversation gets states on disk
                        c = CONV[k]
                        try:
                            kt.complete(srv, c[:rng.randrange(130, len(c))], 1)
                        except Exception:  # noqa: BLE001  (the kill ends it)
                            return
                th = threading.Thread(target=load, daemon=True)
                th.start()
                time.sleep(rng.uniform(0.02, 0.8))
                srv.proc.send_signal(signal.SIGKILL)
                srv.proc.wait()
                stop.set()
                th.join(10)
            except Exception:
                print(srv.stderr()[-4000:])
                raise
            finally:
                if srv.proc.poll() is None:
                    srv.proc.kill()
                    srv.proc.wait()
        v = subprocess.run([TANDEM, "kvstore", "verify", store], capture_output=True, text=True)
        check(v.returncode == 0, "kvstore verify: %s %s" % (v.stdout, v.stderr))
        print("ok: %d kills, %d sessions served (%d resumed from disk), none corrupted, "
              "store verifies clean (%.1f s)" % (ITERS, served, resumed, time.time() - t0))
        return 0
    finally:
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
