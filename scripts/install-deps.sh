#!/bin/sh
# Installs the Debian packages tandem builds and tests with. Idempotent: it
# asks dpkg first and calls apt-get only for what is missing, so `make` stays
# fast on a machine that already has everything.
#
#   scripts/install-deps.sh            what `make serve` and `make test` need
#   scripts/install-deps.sh --build    only what `meson setup` + `ninja` need
#                                      (the container image's build stage:
#                                      no test, fuzz, bench or npm tools)
set -eu

BUILD_ONLY=0
case "${1:-}" in
    --build) BUILD_ONLY=1 ;;
    "") ;;
    *) echo "usage: $0 [--build]" >&2; exit 2 ;;
esac

# What the build needs: compiler, meson/ninja (cmake finds nng), the
# libraries' headers, llhttp's sources, protoc-c, python3 (meson's
# find_program).
BUILD_PKGS="
build-essential pkg-config meson ninja-build cmake libsimde-dev
libuv1-dev libnng-dev libprotobuf-c-dev protobuf-c-compiler node-llhttp
libucx-dev liburing-dev libjansson-dev libxxhash-dev libutf8proc-dev
python3
"
# What the tests, fuzzers and benchmarks add: clang and its runtime (fuzz),
# ucx-utils, numpy (reference tools), nodejs (SDK tests), python3-yaml
# (tests/deploy reads the Helm chart). prometheus brings promtool (the
# /metrics format check in serve_ops); wrk and nginx are for
# bench/run-http.sh. Only their binaries are used. fio is the disk baseline
# of bench/kvstore.sh.
TEST_PKGS="
clang libclang-rt-14-dev ucx-utils
python3-numpy python3-yaml nodejs
prometheus wrk nginx
fio
"
PKGS="$BUILD_PKGS"
[ "$BUILD_ONLY" = 1 ] || PKGS="$PKGS $TEST_PKGS"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

# npm comes with nodejs on most installs (nodesource bundles it); Debian's own
# npm package conflicts with those, so only ask for it when there is none.
[ "$BUILD_ONLY" = 1 ] || command -v npm >/dev/null 2>&1 || missing="$missing npm"

if [ -n "$missing" ]; then
    echo "install-deps: installing:$missing"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # Packages such as nginx and prometheus start a system service when
    # installed; we only want their binaries. policy-rc.d exiting 101 tells
    # Debian's maintainer scripts not to start anything (only while we
    # install, and only if the machine has no policy of its own).
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod 755 "$policy"
        own_policy=1
    fi
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing || status=$?
    [ "$own_policy" = 1 ] && $SUDO rm -f "$policy"
    exit "${status:-0}"
fi
