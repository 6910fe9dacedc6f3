#!/bin/sh
# Makes the "small" random-weight benchmark model (once; not committed) and
# runs `tandem bench decode` on it, writing the table to docs/benchmarks.md.
# Usage: bench/run-decode.sh [MODEL_DIR]
set -eu
cd "$(dirname "$0")/.."
model=${1:-/tmp/tandem-small}
[ -f "$model/model.safetensors" ] || /usr/bin/python3 tools/make_tiny_model.py --config small "$model"
make build >/dev/null
./build/tandem bench decode --model "$model" --out /tmp/tandem-bench-decode.md
python3 bench/update_benchmarks.py /tmp/tandem-bench-decode.md docs/benchmarks.md
