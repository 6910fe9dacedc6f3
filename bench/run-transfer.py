#!/usr/bin/python3
"""KV transfer throughput: td_xfer next to ucx_perftest on the same transport.

usage: bench/run-transfer.py [XFER_BENCH]      (default build/transport/xfer/xfer_bench)
env:   SIZES="1 4 16 64 256 1024"  TCP_SIZES="1 4 16 64"  (MiB)  ROUNDS=3
       NO_DOC=1 (print only, leave docs/benchmarks.md alone)

For each transport (shared memory: UCX_TLS=sm,self,tcp, since sm alone never connects;
tcp: UCX_TLS=tcp) and size, runs in turn, ROUNDS times (A, B, C, A, B, C, ...: the noise of
this shared machine hits all alike):
  A  ucx_perftest -t ucp_put_bw (server and client on loopback; UCX-allocated memory on both
     sides, one put of SIZE per iteration, a flush at the end),
  B  xfer_bench with UCX-allocated memory on both sides (like with like),
  C  xfer_bench with the sender's bytes in ordinary memory registered once, as a prefill
     worker's are (the receiver's region is UCX memory in all, as a decode worker's is),
  D  C with each section's XXH3 given by the caller (-H: a producer that hashed while writing,
     as the prefill shipper does for layers while the engine computes the next ones): what
     the sender's own hashing costs.
tcp stops at 64 MiB by default: perftest's ucp_put_bw moves some 25 MB/s over tcp/lo here, so
one 256 MiB put takes ten seconds.
xfer_bench times whole transfers: open, 43 sections (put + XXH3; a flush and notes per MiB),
the receiver's checks, the completion and the ack. Both report the overall rate (bytes over total
time); the ratio is taken within each round, and the table gives medians. Writes the
"## KV transfer (`bench/run-transfer.py`)" section of docs/benchmarks.md.
"""
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BENCH = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build/transport/xfer/xfer_bench")
MIB = 1 << 20
SIZES = [int(x) for x in os.environ.get("SIZES", "1 4 16 64 256 1024").split()]
TCP_SIZES = [int(x) for x in os.environ.get("TCP_SIZES", "1 4 16 64").split()]
ROUNDS = int(os.environ.get("ROUNDS", "3"))
TRANSPORTS = [("shared memory", "sm,self,tcp", SIZES, False),
              ("tcp", "tcp", TCP_SIZES, True)]


def iters(size, tcp):
    """Transfers per measurement: about 256 MiB worth on shared memory; on tcp perftest moves
    some 25 MB/s here (its responder is idle while the puts go), so 16 MiB worth there."""
    want = (16 if tcp else 256) * MIB
    return max(2 if tcp else 3, min(200, want // size))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def perftest(env, size, n):
    """overall_bw of ucp_put_bw in GB/s (perftest prints MB/s of 2^20 bytes)."""
    port = free_port()
    args = ["-p", str(port), "-t", "ucp_put_bw", "-s", str(size), "-n", str(n), "-w", "1",
            "-f", "-v"]
    srv = subprocess.Popen(["ucx_perftest"] + args, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            time.sleep(0.1)
            out = subprocess.run(["ucx_perftest", "127.0.0.1"] + args, env=env,
                                 capture_output=True, text=True, timeout=600)
            if out.returncode == 0:
                break
        else:
            raise SystemExit("run-transfer: ucx_perftest client failed:\n" + out.stderr)
    finally:
        try:
            srv.wait(timeout=30)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()
    last = [l for l in out.stdout.splitlines() if re.match(r"\s*\d+,", l)][-1]
    return float(last.split(",")[5]) * MIB / 1e9


def ours(env, size, n, mem, tcp, extra=()):
    cmd = [BENCH, "-s", str(size), "-n", str(n), "-w", "1", "-m", mem, "-M", "ucx", *extra]
    if tcp:
        cmd.append("-p")  # peer error handling, as the workers use over tcp
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    m = re.search(r"^RESULT \d+ \d+ ([\d.]+) ([\d.]+)$", out.stdout, re.M)
    if out.returncode or not m:
        raise SystemExit("run-transfer: %s failed:\n%s%s" % (" ".join(cmd), out.stdout,
                                                               out.stderr))
    return float(m.group(1))


def main():
    if not os.access(BENCH, os.X_OK):
        raise SystemExit("run-transfer: %s not built (ninja -C build transport/xfer/xfer_bench)"
                         % BENCH)
    t0 = time.time()
    rows = []
    for name, tls, sizes, tcp in TRANSPORTS:
        env = dict(os.environ, UCX_TLS=tls)
        for mib in sizes:
            size, n = mib * MIB, iters(mib * MIB, tcp)
            pt, like, prod, given = [], [], [], []
            for _ in range(ROUNDS):
                pt.append(perftest(env, size, n))
                like.append(ours(env, size, n, "ucx", tcp))
                prod.append(ours(env, size, n, "host", tcp))
                given.append(ours(env, size, n, "host", tcp, ["-H"]))
            row = [name, mib, n, statistics.median(pt)]
            for col in (like, prod, given):
                row += [statistics.median(col), statistics.median(b / a for a, b in zip(pt, col))]
            rows.append(row)
            print("%-14s %5d MiB x%-3d perftest %6.2f  ours: ucx %6.2f (%.2f)  host %6.2f (%.2f)"
                  "  host, sums given %6.2f (%.2f)" % tuple(row), flush=True)
    elapsed = time.time() - t0
    cpu = "unknown CPU"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    load = open("/proc/loadavg").read().split()[:3]
    ucx = subprocess.run(["ucx_info", "-v"], capture_output=True, text=True).stdout
    ucx_ver = re.search(r"Version (\S+)", ucx)
    lines = [
        "## KV transfer (`bench/run-transfer.py`)",
        "",
        "State transfer between two processes on one host: `xfer_bench` (bench/transfer.c, td_xfer",
        "as the prefill and decode workers use it) next to `ucx_perftest -t ucp_put_bw` on the same",
        "`UCX_TLS`, run in turn %d times per row (perftest, then ours three ways, again ...); each" % ROUNDS,
        "ratio (ours / perftest) is taken within a round, the table shows medians (GB/s: 10^9",
        "bytes/s, overall rate over the row's transfers). perftest streams puts of one size",
        "into UCX-allocated memory with one flush at the end; ours moves whole transfers: open,",
        "43 sections (put and XXH3 in 256 KiB pieces; a flush and the notes per MiB), the",
        "receiver's check of every section as it lands, the completion, the section-table",
        "check and the ack.",
        "*UCX mem*: both sides UCX-allocated, as perftest's; *prefill mem*: the sender's",
        "bytes in ordinary memory registered once (a prefill worker's state buffer); *sums",
        "given*: prefill mem with each section's XXH3 passed in (hashed by its producer, as the",
        "prefill shipper does for layers while the engine computes), i.e. without the sender's",
        "hashing pass. Receivers are a UCX-allocated region registered once (a decode worker's).",
        "tcp runs use peer error handling, as the workers do over tcp; they stop at 64 MiB",
        "because perftest moves about 25 MB/s over tcp/lo here.",
        "Machine: a shared %d-core VM (%s), UCX %s, %s, load average %s at the end (other"
        % (os.cpu_count(), cpu, ucx_ver.group(1) if ucx_ver else "?",
           time.strftime("%Y-%m-%d", time.gmtime()), " ".join(load)),
        "engineers' builds and tests were running), %.0f s in all: read GB/s as ranges, the" % elapsed,
        "ratios as the result.",
        "",
        "| transport | size | transfers | perftest GB/s | ours, UCX mem | ratio | ours, prefill mem | ratio | ours, sums given | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, mib, n, pt, like, r1, prod, r2, given, r3 in rows:
        size = "%d GiB" % (mib // 1024) if mib >= 1024 else "%d MiB" % mib
        lines.append("| %s | %s | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |"
                     % (name, size, n, pt, like, r1, prod, r2, given, r3))
    section = "\n".join(lines) + "\n"
    print()
    print(section)
    if os.environ.get("NO_DOC"):
        return
    path = "/tmp/run-transfer-%d.md" % os.getpid()
    with open(path, "w") as f:
        f.write(section)
    subprocess.run([sys.executable, os.path.join(HERE, "update_benchmarks.py"), path,
                    os.path.join(ROOT, "docs/benchmarks.md")], check=True)
    os.unlink(path)


if __name__ == "__main__":
    main()
