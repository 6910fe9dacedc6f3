#!/bin/sh
# kill -9 of a serving engine while its disk tier spills, then restart, N
# times at random instants (issue 5 acceptance): every session served after
# a restart is token-identical to one never spilled, and the store verifies
# clean at the end. make test runs 3 iterations (tests/integration/kvstore).
#   bench/kvstore-spill-stress.sh [BUILD] [N] [SEED]   (defaults: build, 100, 7)
set -eu
build=${1:-build} n=${2:-100} seed=${3:-7}
here=$(cd "$(dirname "$0")/.." && pwd)
exec python3 "$here/tests/integration/kvstore/spill_stress.py" "$build/tandem" \
    "$here/models/tiny-v4" "$n" "$seed"
