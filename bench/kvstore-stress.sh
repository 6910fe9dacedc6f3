#!/bin/sh
# kill -9 stress of the kvstore (issue 5 acceptance): N kills at random
# instants per mode (strict: every acknowledged put survives byte for byte;
# evict: everything served is exactly what was put), zero corrupted entries
# served. make test runs 6 per mode.
#   bench/kvstore-stress.sh [BUILD] [N]   (defaults: build, 100)
set -eu
build=${1:-build} n=${2:-100}
exec "$build/tests/unit/kvstore/kvstore_crash" "$n"
