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
python3 - /tmp/tandem-bench-decode.md docs/benchmarks.md <<'PY'
import re, sys
new = open(sys.argv[1]).read()
try:
    doc = open(sys.argv[2]).read()
except FileNotFoundError:
    doc = "# Benchmarks\n\nTables written by the benchmarks in bench/; each names the machine it ran on.\n\n"
# Replace the decode section (up to the next "## " heading) or append it.
pat = re.compile(r"## Decode \(`tandem bench decode`\).*?(?=\n## |\Z)", re.S)
doc = pat.sub(lambda m: new.rstrip("\n"), doc) if pat.search(doc) else doc.rstrip("\n") + "\n\n" + new
open(sys.argv[2], "w").write(doc if doc.endswith("\n") else doc + "\n")
PY
