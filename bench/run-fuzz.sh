#!/bin/sh
# Long fuzzing: every libFuzzer target for SECONDS seconds (default 600) on a
# copy of its seed corpus, one after another, in the clang ASan+UBSan build
# that `make test-fuzz` configures. Prints a table of executions, coverage
# and crashes; a crash input lands in build-fuzz/ and the script exits 1.
# Usage: bench/run-fuzz.sh [SECONDS [TARGET...]]   (targets: http, dsml, chat_encode, ...;
#        none = all)
set -u
cd "$(dirname "$0")/.." || exit 2
secs=${1:-600}
[ "$secs" -ge 1 ] 2>/dev/null || { echo "usage: $0 [SECONDS >= 1] [TARGET...]" >&2; exit 2; }
[ $# -gt 0 ] && shift
only=" $* "
make build-fuzz/build.ninja >/dev/null
ninja -C build-fuzz fuzzers >/dev/null || exit 1
fail=0
printf '| target | seconds | executions | coverage | result |\n|---|---:|---:|---:|---|\n'
for exe in build-fuzz/tests/fuzz/*_fuzz; do
    name=$(basename "$exe")
    [ "$only" = "  " ] || case "$only" in *" ${name%_fuzz} "*) ;; *) continue ;; esac
    seeds=tests/fuzz/corpus/${name%%_*}   # the rule tests/fuzz/meson.build uses
    log=$(mktemp)
    if sh tests/fuzz/run_fuzz.sh "$exe" "$seeds" "$secs" 65536 >"$log" 2>&1; then
        result=ok
    else
        result=CRASH
        fail=1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(sed -n 's/.*DONE *cov: \([0-9]*\).*/\1/p' "$log" | tail -1)
    printf '| %s | %s | %s | %s | %s |\n' "$name" "$secs" "${runs:-?}" "${cov:-?}" "$result"
    [ "$result" = ok ] || tail -30 "$log" >&2
    rm -f "$log"
done
exit $fail
