#!/bin/sh
# The kvstore's put/get throughput of one large value next to fio's io_uring
# engine with O_DIRECT on the same disk, block size and queue depth.
#   bench/kvstore.sh [BUILD] [bytes] [block_bytes] [queue_depth] [scratch dir]
# Defaults: build, a 1M-token V4-Flash state (3,688,172,544 bytes), 1 MiB,
# 16, a directory under /tmp. Needs 3x bytes of free disk. Prints one table.
set -eu
build=${1:-build} bytes=${2:-3688172544} bs=${3:-1048576} qd=${4:-16}
scratch=${5:-/tmp}
command -v fio >/dev/null || { echo "bench/kvstore.sh: fio is missing (make deps)"; exit 2; }
work=$(mktemp -d "$scratch/td-kvbench-XXXXXX")
trap 'rm -rf "$work"' EXIT

out=$("$build/kvstore/kvstore_bench" "$work/store" "$bytes" "$bs" "$qd")
echo "$out" | head -1
rm -rf "$work/store"
val() { echo "$out" | tr ' ' '\n' | grep -A1 "^$1\$" | tail -1; }

# fio: the same bytes written into a preallocated file (as the store's
# steady-state put), then read back.
fio_bw() {   # rw -> GB/s
    fio --name=kv --filename="$work/fio.dat" --ioengine=io_uring --direct=1 --rw="$1" \
        --bs="$bs" --iodepth="$qd" --size="$bytes" --fallocate=native --end_fsync=1 \
        --output-format=terse --terse-version=3 2>/dev/null |
    awk -F';' -v rw="$1" '{ kb = (rw == "read") ? $7 : $48; printf "%.2f", kb * 1024 / 1e9 }'
}
fio_bw write >/dev/null   # lay the file out (first write allocates it)
fw=$(fio_bw write)
fr=$(fio_bw read)
pw=$(val put_GBps) pf=$(val put_first_GBps) gr=$(val get_GBps) g2=$(val get2_GBps)
printf '%-28s %8s %8s %8s\n' "" "kvstore" "fio" "ratio"
printf '%-28s %8s %8s %8s\n' "write GB/s (preallocated)" "$pw" "$fw" "$(echo "$pw $fw" | awk '{printf "%.0f%%", 100*$1/$2}')"
printf '%-28s %8s %8s %8s\n' "write GB/s (new segments)" "$pf" "" ""
printf '%-28s %8s %8s %8s\n' "read GB/s" "$gr" "$fr" "$(echo "$gr $fr" | awk '{printf "%.0f%%", 100*$1/$2}')"
printf '%-28s %8s %8s %8s\n' "read GB/s (again)" "$g2" "" ""
