#!/bin/sh
# Runs one libFuzzer target for a while on a scratch copy of its seed corpus,
# so the source tree is never written to. A crash leaves its input in
# $TD_FUZZ_ARTIFACTS (default: the build directory) and fails the test.
# Usage: run_fuzz.sh TARGET SEED_DIR SECONDS MAX_LEN
set -eu
target=$1 seeds=$2 secs=$3 maxlen=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
art=${TD_FUZZ_ARTIFACTS:-$PWD}/
exec "$target" -max_total_time="$secs" -max_len="$maxlen" -timeout=10 \
    -rss_limit_mb=2048 -artifact_prefix="$art" -print_final_stats=1 "$work" "$seeds"
