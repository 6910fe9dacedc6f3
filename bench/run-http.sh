#!/bin/sh
# Router overhead: requests/s and latency (p50, p99) of `tandem serve` on
# GET /v1/models and on a 1-token completion, measured with wrk, next to
# nginx serving a static file of the same size as our /v1/models body on
# another loopback port (the reference: what a mature server does with the
# same bytes on the same machine). Prints the table and writes the
# "## HTTP (`bench/run-http.sh`)" section of docs/benchmarks.md.
#
# Usage: bench/run-http.sh            (builds ./build, serves models/tiny-v4)
# Env:   TANDEM=path/to/tandem  MODEL=dir  DURATION=10  CONNS=32  THREADS=1
# Needs: wrk, nginx (scripts/install-deps.sh installs both).
set -eu
cd "$(dirname "$0")/.."
MODEL=${MODEL:-models/tiny-v4}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
if [ -z "${TANDEM:-}" ]; then
    make build >/dev/null
    TANDEM=./build/tandem
fi
for tool in wrk nginx curl python3; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || {
        echo "run-http: $tool not found (scripts/install-deps.sh)" >&2; exit 1; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

dir=$(mktemp -d /tmp/tandem-bench-http.XXXXXX)
chmod 755 "$dir"
tandem_pid=""
nginx_pid=""
cleanup() {
    [ -n "$tandem_pid" ] && kill "$tandem_pid" 2>/dev/null && wait "$tandem_pid" 2>/dev/null
    [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

# tandem on a free port (the startup line names it); one model thread so the
# other core is left to wrk.
"$TANDEM" serve --model "$MODEL" --port 0 --threads 1 >"$dir/tandem.out" 2>"$dir/tandem.err" &
tandem_pid=$!
port=""
for _ in $(seq 100); do
    port=$(sed -n 's/.*http:\/\/127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$dir/tandem.out")
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "run-http: tandem did not start:" >&2; cat "$dir/tandem.err" >&2; exit 1; }
for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break
    sleep 0.1
done

# nginx serves the very bytes of our /v1/models answer.
mkdir -p "$dir/www"
curl -sf "http://127.0.0.1:$port/v1/models" >"$dir/www/models.json"
size=$(wc -c <"$dir/www/models.json")
nport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$nport|g" bench/http/nginx.conf.in >"$dir/nginx.conf"
"$NGINX" -c "$dir/nginx.conf" -p "$dir" &
nginx_pid=$!
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$nport/v1/models" >/dev/null && break
    sleep 0.1
done
nsize=$(curl -sf "http://127.0.0.1:$nport/v1/models" | wc -c)
[ "$nsize" = "$size" ] || { echo "run-http: nginx serves $nsize bytes, wanted $size" >&2; exit 1; }

body='{"prompt":"Hi","max_tokens":1,"temperature":0}'
curl -sf "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' \
    -d "$body" >/dev/null || { echo "run-http: the completion fails" >&2; exit 1; }

# run NAME URL [BODY] -> appends "NAME|rps|p50|p99|requests|errors" to rows
rows="$dir/rows"
: >"$rows"
run() {
    out=$(WRK_BODY="${3:-}" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" \
        -s bench/http/wrk.lua "$2")
    line=$(printf '%s\n' "$out" | grep '^RESULT ')
    set -- "$1" $line
    echo "$1|$3|$4|$5|$6|$7" >>"$rows"
}
run "nginx: static file, same bytes as /v1/models" "http://127.0.0.1:$nport/v1/models"
run "tandem: GET /v1/models" "http://127.0.0.1:$port/v1/models"
run "tandem: POST /v1/completions, 1 token" "http://127.0.0.1:$port/v1/completions" "$body"

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
load=$(cut -d' ' -f1-3 /proc/loadavg)
out="$dir/section.md"
{
    echo '## HTTP (`bench/run-http.sh`)'
    echo
    echo "Router overhead: wrk ($THREADS thread, $CONNS keep-alive connections, ${DURATION}s"
    echo "per row) against \`tandem serve\` ($MODEL, one model thread) and, as the"
    echo "reference, nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///') (one worker) serving a"
    echo "static file of the same $size bytes as our /v1/models answer, all on loopback."
    echo "The 1-token completion includes tokenising, one forward pass of the tiny model"
    echo "and the JSON answer. Machine: a shared $(nproc)-core VM ($cpu), $(date -u +%Y-%m-%d),"
    echo "load average $load at the end (other work was running): wrk, the server and the"
    echo "engine share those cores, so read the numbers as ranges and the ratios as the result."
    echo
    echo "| target | requests/s | p50 ms | p99 ms | requests | errors |"
    echo "|---|---:|---:|---:|---:|---:|"
    while IFS='|' read -r name rps p50 p99 n errs; do
        echo "| $name | $rps | $p50 | $p99 | $n | $errs |"
    done <"$rows"
} >"$out"
cat "$out"

python3 bench/update_benchmarks.py "$out" docs/benchmarks.md
