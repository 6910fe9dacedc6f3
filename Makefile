# The front door. `make serve` and `make test` work on a fresh Debian 12
# machine: they install missing packages, configure meson, build, then run.
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 15
MESON_OPTS ?= -Dbuildtype=debugoptimized

.PHONY: all deps e2e-deps build serve test test-fast test-asan test-fuzz bench clean

all: build

deps:
	@./scripts/install-deps.sh

$(BUILD)/build.ninja:
	@./scripts/install-deps.sh
	meson setup $(BUILD) $(MESON_OPTS)

$(ASAN_BUILD)/build.ninja:
	@./scripts/install-deps.sh
	meson setup $(ASAN_BUILD) $(MESON_OPTS) -Db_sanitize=address,undefined -Db_lundef=false \
	  -Dcuda=disabled

build: $(BUILD)/build.ninja
	ninja -C $(BUILD)

serve: build
	./$(BUILD)/tandem serve

# The suite runs twice, once as built and once under ASan+UBSan; then every
# fuzz target runs for FUZZ_SECONDS (clang, libFuzzer, ASan+UBSan).
test: test-fast test-asan test-fuzz

# The JavaScript SDK clients of tests/e2e, pinned by package-lock.json.
E2E_DEPS = tests/e2e/node_modules/.package-lock.json
$(E2E_DEPS): tests/e2e/package-lock.json
	cd tests/e2e && npm ci --no-audit --no-fund
e2e-deps: $(E2E_DEPS)

test-fast: build $(E2E_DEPS)
	meson test -C $(BUILD) --print-errorlogs --num-processes 2

test-asan: $(ASAN_BUILD)/build.ninja $(E2E_DEPS)
	ninja -C $(ASAN_BUILD)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
	  meson test -C $(ASAN_BUILD) --print-errorlogs --num-processes 2 --no-suite slow

# Every library is instrumented for coverage (fuzzer-no-link), not only the
# targets, or libFuzzer would see nothing past the target file.
$(FUZZ_BUILD)/build.ninja:
	@./scripts/install-deps.sh
	CC=clang meson setup $(FUZZ_BUILD) $(MESON_OPTS) -Db_sanitize=address,undefined \
	  -Db_lundef=false -Dfuzz_seconds=$(FUZZ_SECONDS) -Dc_args=-fsanitize=fuzzer-no-link \
	  -Dcuda=disabled -Dsimd_kernels=false

test-fuzz: $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD) fuzzers
	meson test -C $(FUZZ_BUILD) --no-rebuild --suite fuzz --print-errorlogs --num-processes 2

bench: build
	./$(BUILD)/tandem bench decode

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
