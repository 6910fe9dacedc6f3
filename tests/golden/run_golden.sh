#!/bin/sh
# The C runtime against the numpy reference (tools/reference/v4ref.py):
# golden logits of models/tiny-v4 for every case in tests/data/golden, in
# three call patterns that must all give the same bits: one-shot prefill,
# prefill of half then token-by-token decode, and prefill in chunks of 5.
# Usage: run_golden.sh TANDEM SOURCE_ROOT
set -eu
tandem=$1
root=$2
data=$root/tests/data/golden
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
for ids in "$data"/*.ids.json; do
    name=$(basename "$ids" .ids.json)
    n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$ids")
    half=$(( n / 2 > 0 ? n / 2 : 1 ))
    for mode in oneshot decode chunked; do
        case $mode in
            oneshot) extra=""
                     [ -f "$data/$name.mtp.f32" ] && extra="--mtp-out $tmp/$name.mtp.f32" ;;
            decode)  extra="--decode-from $half" ;;
            chunked) extra="--chunk 5" ;;
        esac
        # shellcheck disable=SC2086
        "$tandem" logits --model "$root/models/tiny-v4" --ids "$ids" $extra \
            --out "$tmp/$name.$mode.f32"
        if python3 "$root/tools/reference/compare_logits.py" "$data/$name.logits.f32" \
               "$tmp/$name.$mode.f32" --vocab 512 --tol 0 > "$tmp/out" 2>&1; then
            echo "ok   $name $mode"
        else
            echo "FAIL $name $mode: $(cat "$tmp/out")"
            fail=1
        fi
    done
    if [ -f "$data/$name.mtp.f32" ]; then
        if python3 "$root/tools/reference/compare_logits.py" "$data/$name.mtp.f32" \
               "$tmp/$name.mtp.f32" --vocab 512 --tol 0 > "$tmp/out" 2>&1; then
            echo "ok   $name mtp"
        else
            echo "FAIL $name mtp: $(cat "$tmp/out")"
            fail=1
        fi
    fi
done
exit $fail
