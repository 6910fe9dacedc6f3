#!/bin/sh
# tandem kvstore stat / verify / dump / gc on a store made by kvstore_fixture.
# Usage: cli.sh TANDEM FIXTURE
set -u
tandem=$1 fixture=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
store=$work/store

key=$("$fixture" "$store" "$work/expect") || fail "fixture"
"$tandem" kvstore stat "$store" > "$work/stat" || fail "stat"
grep -q '^entries  *3$' "$work/stat" || fail "stat entries: $(cat "$work/stat")"
grep -q '^pinned  *1$' "$work/stat" || fail "stat pinned"
# The fixture's store runs LRU; the checkpoint keeps the choice.
grep -q '^eviction  *lru$' "$work/stat" || fail "stat eviction: $(cat "$work/stat")"
"$tandem" kvstore stat "$store" --metrics > "$work/metrics" || fail "stat --metrics"
grep -q '^tandem_kvstore_entries 3$' "$work/metrics" || fail "metrics: $(cat "$work/metrics")"
grep -q '^tandem_kvstore_eviction_policy{policy="lru"} 1$' "$work/metrics" || fail "metrics policy"
grep -q '^tandem_kvstore_evicted_tokens_total 0$' "$work/metrics" || fail "metrics evicted tokens"
if command -v promtool >/dev/null 2>&1; then
    promtool check metrics < "$work/metrics" || fail "promtool check metrics"
fi
"$tandem" kvstore verify "$store" | grep -q '^3 entries ok, 0 failed$' || fail "verify"
[ "$("$tandem" kvstore dump "$store" | wc -l)" = 3 ] || fail "dump list"
"$tandem" kvstore dump "$store" "$key" -o "$work/got" | grep -q 'tokens 48 .*pinned' || fail "dump entry"
cmp -s "$work/got" "$work/expect" || fail "dumped bytes differ"

# One flipped byte in the first block of the first entry.
printf 'X' | dd of="$store/seg-000000.dat" bs=1 seek=1000 conv=notrunc 2>/dev/null
"$tandem" kvstore verify "$store" > "$work/v" 2>&1 && fail "verify passed a flipped byte"
grep -q 'checksum mismatch' "$work/v" || fail "verify message: $(cat "$work/v")"
"$tandem" kvstore verify "$store" --repair > /dev/null 2>&1
"$tandem" kvstore verify "$store" | grep -q '^2 entries ok, 0 failed$' || fail "verify after repair"
"$tandem" kvstore gc "$store" | grep -q 'checkpoint written' || fail "gc"

# Errors: a directory without a store, usage.
"$tandem" kvstore stat "$work/none" 2> "$work/e" && fail "stat of nothing"
grep -q 'no store' "$work/e" || fail "stat error: $(cat "$work/e")"
"$tandem" kvstore frob "$store" 2> /dev/null; [ $? = 2 ] || fail "unknown verb exit status"
"$tandem" kvstore dump "$store" nothex 2> /dev/null; [ $? = 2 ] || fail "bad key exit status"

# tandem bench kvstore: a small value through the store, its table, and the
# scratch store removed after.
"$tandem" bench kvstore --dir "$work" --bytes 3000000 --block-bytes 65536 > "$work/b" ||
    fail "bench kvstore: $(cat "$work/b")"
grep -q '^| get | ' "$work/b" || fail "bench kvstore table: $(cat "$work/b")"
[ -z "$(ls -d "$work"/td-kvbench-* 2>/dev/null)" ] || fail "bench kvstore left its scratch store"
"$tandem" bench kvstore --block-bytes 5000 2> /dev/null; [ $? = 2 ] || fail "bench kvstore bad block"
echo "kvstore cli ok"
