# hikyaku — the two set-up commands of a fresh Debian 12 machine:
#   make run    install what is missing, build, run the relay on config/hikyaku.conf
#   make test   install what is missing, build, run every test (also under ASan+UBSan,
#               and each fuzz target for a few seconds)
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CONFIG ?= config/hikyaku.conf

.PHONY: all deps build build-asan run test unit unit-asan e2e fuzz bench clean

all: build

deps:
	@./scripts/install-deps.sh

build: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build build -j $(JOBS)

build-asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DHIKYAKU_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j $(JOBS)

run: build
	@mkdir -p var
	./build/hikyaku -c $(CONFIG)

# Unit tests in both builds; end-to-end tests against the sanitizer build,
# whose every report fails the test that caused it.
test: build build-asan
	@cd build && ctest --output-on-failure -j $(JOBS)
	@cd build-asan && ctest --output-on-failure -j $(JOBS)
	@tests/e2e/run.sh build-asan
	@scripts/fuzz.sh 5

unit: build
	@cd build && ctest --output-on-failure -j $(JOBS)

e2e: build-asan
	@tests/e2e/run.sh build-asan

# Every libFuzzer target (fuzz/) for FUZZ_SECONDS each, after its
# regression inputs; make test runs each for 5 seconds.
FUZZ_SECONDS ?= 600
fuzz: deps
	@scripts/fuzz.sh $(FUZZ_SECONDS)

# hikyaku and Postfix side by side on this machine (docs/performance.md);
# BENCH_QUICK=1 make bench for a smoke run; parameters: top of bench/run.sh.
bench: build
	@bench/run.sh

clean:
	rm -rf build build-asan build-fuzz
