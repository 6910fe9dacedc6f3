#!/bin/sh
# The kvstore's put/get throughput of one large value next to fio's io_uring
# engine with O_DIRECT on the same disk, block size and queue depth:
# `tandem bench kvstore --fio` (bench/kvstore.c).
#   bench/kvstore.sh [BUILD] [bytes] [block_bytes] [queue_depth] [scratch dir]
# Defaults: build, a 1M-token V4-Flash state (3,688,172,544 bytes), 1 MiB,
# 16, /tmp. Needs 3x bytes of free disk. Prints one table.
set -eu
build=${1:-build} bytes=${2:-3688172544} bs=${3:-1048576} qd=${4:-16}
scratch=${5:-/tmp}
command -v fio >/dev/null || { echo "bench/kvstore.sh: fio is missing (make deps)"; exit 2; }
exec "$build/tandem" bench kvstore --dir "$scratch" --bytes "$bytes" --block-bytes "$bs" \
    --queue-depth "$qd" --fio
