#!/bin/sh
# Runs the SDK tests; skips (77) when node or the pinned packages are missing
# (`make test` installs them with `npm ci` from package-lock.json).
set -u
cd "$(dirname "$0")" || exit 2
command -v node >/dev/null 2>&1 || { echo "skip: no node"; exit 77; }
[ -d node_modules/openai ] || { echo "skip: run npm ci in tests/e2e"; exit 77; }
exec node --test "$@"
