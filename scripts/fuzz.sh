#!/bin/sh
# fuzz.sh - build hikyaku's libFuzzer targets and run them, one at a time.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS (default 600) is the fuzzing time of each target; TARGET names
# are those of fuzz/fuzz_TARGET.c (default: all of them). For each target:
#
#   1. every file in fuzz/regressions/TARGET/ is run through it once
#      (inputs that once crashed it; each must pass now);
#   2. it fuzzes for SECONDS, starting from a writable copy of
#      fuzz/corpus/TARGET in build-fuzz/corpus/TARGET (new inputs go
#      there, never into the repository), with fuzz/dict/TARGET.dict
#      when there is one. Crash inputs land in build-fuzz/crashes/.
#
# One summary line per target; the exit status is non-zero when any
# regression failed or any target crashed (or leaked, or timed out).
# `scripts/fuzz.sh 5` is the smoke test of `make test`.
#
# Environment: FUZZ_BUILD (build directory, default build-fuzz),
# FUZZ_CC (default clang), FUZZ_JOBS (build jobs, default 2),
# FUZZ_ARGS (extra libFuzzer flags).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUILD=${FUZZ_BUILD:-build-fuzz}
SECONDS_EACH=600
case "${1:-}" in
'' | *[!0-9]*) ;;
*) SECONDS_EACH=$1; shift ;;
esac

ALL=""
for f in fuzz/fuzz_*.c; do
	t=${f#fuzz/fuzz_}
	ALL="$ALL ${t%.c}"
done
TARGETS=${*:-$ALL}
for t in $TARGETS; do
	[ -f "fuzz/fuzz_$t.c" ] || { echo "fuzz.sh: no target \"$t\" (have:$ALL)" >&2; exit 2; }
done

if ! grep -q 'add_subdirectory(fuzz)' CMakeLists.txt; then
	echo "fuzz.sh: CMakeLists.txt does not include fuzz/ (see fuzz/README.md)" >&2
	exit 2
fi

# ---- build -------------------------------------------------------------
echo "fuzz.sh: building $BUILD"
CC=${FUZZ_CC:-clang} cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DHIKYAKU_FUZZ=ON -DHIKYAKU_SANITIZE=ON >"$BUILD.configure.log" 2>&1 || {
	cat "$BUILD.configure.log" >&2
	exit 2
}
rm -f "$BUILD.configure.log"
cmake --build "$BUILD" --target fuzz -j "${FUZZ_JOBS:-2}" >/dev/null || {
	echo "fuzz.sh: build failed" >&2
	cmake --build "$BUILD" --target fuzz -j 1 2>&1 | grep -E 'error|warning' >&2 || true
	exit 2
}

# ---- run ---------------------------------------------------------------
mkdir -p "$BUILD/corpus" "$BUILD/crashes" "$BUILD/logs"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$ROOT/tests/lsan.supp:print_suppressions=0}"
export G_SLICE=always-malloc          # GLib (GMime) without its own allocator caches
export TMPDIR="${TMPDIR:-/tmp}"

# The crash, leak, timeout and out-of-memory inputs kept for target $1.
count_artifacts() {
	n=0
	for a in "$BUILD/crashes/$1-"*; do
		[ -e "$a" ] && n=$((n + 1))
	done
	echo "$n"
}

# Memory limit of target $1 (MB). dsn_parse reads whole reports from the
# Internet: SPEC §6.1 bounds their cost, and its structure bombs (see
# fuzz/fuzz_dsn_parse.c) must fail far below the default.
rss_limit() {
	case "$1" in
	dsn_parse) echo 512 ;;
	*) echo 2048 ;;
	esac
}

# ASan options of target $1: with a memory limit that tight, ASan's
# quarantine of freed memory (256 MB by default) would count as the
# target's own; keep it small there.
asan_options() {
	case "$1" in
	dsn_parse) echo "$ASAN_OPTIONS:quarantine_size_mb=16" ;;
	*) echo "$ASAN_OPTIONS" ;;
	esac
}

failed=0
summary=""
for t in $TARGETS; do
	bin="$BUILD/fuzz/fuzz_$t"
	log="$BUILD/logs/$t.log"
	status="ok"
	: >"$log"

	# 1. Regressions: each file once, every one even after a failure.
	nreg=0
	for f in "fuzz/regressions/$t"/*; do
		[ -f "$f" ] || continue
		nreg=$((nreg + 1))
		if ! ASAN_OPTIONS=$(asan_options "$t") "$bin" -rss_limit_mb="$(rss_limit "$t")" -timeout=10 "$f" >"$log.regression" 2>&1; then
			status="REGRESSION"
			echo "fuzz.sh: $t: regression input $f fails again:" >&2
			grep -E 'ERROR|invariant|SUMMARY|#[0-9]+ 0x' "$log.regression" | head -n 12 >&2
			cat "$log.regression" >>"$log"
		fi
	done
	rm -f "$log.regression"

	# 2. Fuzzing, on a writable copy of the seed corpus.
	corpus="$BUILD/corpus/$t"
	mkdir -p "$corpus"
	cp -n "fuzz/corpus/$t"/* "$corpus"/ 2>/dev/null || true
	dict=""
	[ -f "fuzz/dict/$t.dict" ] && dict="-dict=fuzz/dict/$t.dict"
	before=$(count_artifacts "$t")
	rc=0
	# shellcheck disable=SC2086
	ASAN_OPTIONS=$(asan_options "$t") "$bin" -max_total_time="$SECONDS_EACH" -rss_limit_mb="$(rss_limit "$t")" -timeout=10 \
		-artifact_prefix="$BUILD/crashes/$t-" -print_final_stats=1 \
		$dict ${FUZZ_ARGS:-} "$corpus" >>"$log" 2>&1 || rc=$?
	after=$(count_artifacts "$t")
	crashes=$((after - before))
	if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
		if [ "$status" = ok ]; then status="CRASH"; else status="$status+CRASH"; fi
		echo "fuzz.sh: $t: crashed (exit $rc), see $log:" >&2
		grep -E 'ERROR|invariant|SUMMARY|Test unit written' "$log" | tail -n 20 >&2
	fi
	[ "$status" = ok ] || failed=1

	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	cov=$(grep -E '^#[0-9]+.* cov: ' "$log" | tail -n 1 | sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\) corp: \([0-9]*\).*/cov \1 ft \2 corpus \3/p')
	line=$(printf '%-12s %-10s %3ss  execs %-10s exec/s %-7s %s  regressions %s  crashes %s' \
		"$t" "$status" "$SECONDS_EACH" "${execs:-?}" "${rate:-?}" "${cov:-cov ?}" "$nreg" "$crashes")
	echo "$line"
	summary="$summary$line
"
done

echo "---- fuzz.sh summary ($BUILD) ----"
printf '%s' "$summary"
exit "$failed"
