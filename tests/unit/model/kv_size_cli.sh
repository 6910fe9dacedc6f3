#!/bin/sh
# tandem kv-size on the official V4-Flash config: the 1M-token headline
# (3,688,172,544 B, 2.00 % of GQA), --json, and usage errors.
# usage: kv_size_cli.sh TANDEM SOURCE_ROOT
set -u
tandem=$1
cfg=$2/tests/data/configs/deepseek-v4-flash.config.json
fail=0
check() { # name, text, pattern
    if ! printf '%s\n' "$2" | grep -q -- "$3"; then
        echo "FAIL $1: output lacks '$3'"; printf '%s\n' "$2"; fail=1
    fi
}

out=$("$tandem" kv-size --config "$cfg" --tokens 1048576) || { echo "FAIL: exit $?"; fail=1; }
check 1m "$out" 'ratio: 2.00 % of the GQA baseline'
check 1m "$out" 'KV state, main layers: *3,688,172,544 B (3.435 GiB'
check 1m "$out" '184,683,593,728 B'
check 1m "$out" 'compressor state (fp32): *12,206,080 B'
check 1m "$out" 'MTP block (1 layer, not included above)'

out=$("$tandem" kv-size --config "$cfg" --tokens 128K) || { echo "FAIL: exit $?"; fail=1; }
check 128k "$out" '463,834,112 B'
check 128k "$out" 'ratio: 2.01 %'

out=$("$tandem" kv-size --config "$cfg" --tokens 1M --json) || { echo "FAIL: exit $?"; fail=1; }
check json "$out" '"total_bytes": 3688172544'
check json "$out" '"gqa_baseline_bytes": 184683593728'

"$tandem" kv-size --tokens 5 >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || { echo "FAIL: missing --config exits $rc, want 2"; fail=1; }
"$tandem" kv-size --config "$cfg" --tokens 12x >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || { echo "FAIL: bad --tokens exits $rc, want 2"; fail=1; }
err=$("$tandem" kv-size --config "$2/tests/unit/model/kv_size_cli.sh" --tokens 5 2>&1); rc=$?
[ $rc -eq 1 ] || { echo "FAIL: bad config exits $rc, want 1"; fail=1; }
check badcfg "$err" 'not valid JSON'
[ $fail -eq 0 ] && echo "ok   kv_size_cli"
exit $fail
