#!/bin/bash
# bench/suppression.sh [BUILD] — the suppression lookup per delivery with the
# SQLite store and with PostgreSQL (a private PostgreSQL 15 cluster started
# for the run, as tests/e2e/t_pgsql.sh does), by bench/bench_suppression.c.
# Run as root (the cluster runs as the postgres user).
set -u
BUILD=${1:-build}
export E2E_BUILD=$BUILD
. "$(dirname "$0")/../tests/e2e/lib.sh"
. "$(dirname "$0")/../tests/e2e/lib_pg.sh"
cmake --build "$ROOT/$BUILD" --target bench_suppression -j2 >/dev/null || exit 1
start_pg || exit 1
mkdir -p "$T/sq" "$T/pg"
"$ROOT/$BUILD/bench_suppression" "$T/sq/suppression.db" "$T/sq" "${ENTRIES:-10000}" "${LOOKUPS:-20000}"
"$ROOT/$BUILD/bench_suppression" "$PG_URI" "$T/pg" "${ENTRIES:-10000}" "${LOOKUPS:-20000}" 2>/dev/null
rm -rf "$T"
