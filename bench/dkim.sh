#!/bin/bash
# bench/dkim.sh - the CPU cost of DKIM signing per mail (bench/dkim_sign.c):
# RSA-2048 through libopendkim, Ed25519 through OpenSSL, and the unsigned
# path, on one thread, N mails each (default 2000).
#   bench/dkim.sh [N]          BENCH_BUILD=build (the default) is used
set -e
cd "$(dirname "$0")/.."
BUILD=${BENCH_BUILD:-build}
cmake -S . -B "$BUILD" >/dev/null
cmake --build "$BUILD" --target bench_dkim_sign -j2 >/dev/null
"$BUILD/bench_dkim_sign" "${1:-2000}"
