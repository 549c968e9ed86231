#!/bin/bash
# Runs every end-to-end test (tests/e2e/t_*.sh) against the given build
# directory (default build-asan) and prints one closing line:
# "N passed, N failed".
#
# The scripts mostly wait (for peers, timeouts, retries), so E2E_JOBS of
# them (default 3) run at once, each in its own temporary directory, on
# its own free ports; their outputs are printed whole, in name order.
set -u
cd "$(dirname "$0")/../.."
export E2E_BUILD=${1:-build-asan}
JOBS=${E2E_JOBS:-3}
OUT=$(mktemp -d /tmp/hikyaku-e2e-run.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

tests=(tests/e2e/t_*.sh)
# The longest first, so that they do not end up alone at the end.
order=()
for slow in t_sendmail t_pgsql t_hostile_mx t_faults t_security t_metrics t_crash; do
	for t in "${tests[@]}"; do
		[ "$(basename "$t" .sh)" = "$slow" ] && order+=("$t")
	done
done
for t in "${tests[@]}"; do
	case " ${order[*]} " in *" $t "*) ;; *) order+=("$t") ;; esac
done

run_one() {
	local t=$1 name start
	name=$(basename "$t" .sh)
	start=$SECONDS
	bash "$t" >"$OUT/$name.out" 2>&1
	echo $? >"$OUT/$name.rc"
	echo $((SECONDS - start)) >"$OUT/$name.time"
}

running=0
for t in "${order[@]}"; do
	if [ "$running" -ge "$JOBS" ]; then
		wait -n
		running=$((running - 1))
	fi
	run_one "$t" &
	running=$((running + 1))
done
wait

pass=0
fail=0
failed=()
for t in "${tests[@]}"; do
	name=$(basename "$t" .sh)
	echo "# $t"
	out=$(cat "$OUT/$name.out" 2>/dev/null)
	rc=$(cat "$OUT/$name.rc" 2>/dev/null || echo 1)
	echo "$out"
	echo "# $t took $(cat "$OUT/$name.time" 2>/dev/null || echo '?') s"
	p=$(echo "$out" | grep -c '^ok - ')
	f=$(echo "$out" | grep -c '^not ok - ')
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	# A script that checked nothing, or stopped before its closing line,
	# proves nothing: it fails.
	if [ $((p + f)) -eq 0 ] || ! echo "$out" | grep -Eq '^[0-9]+ passed, [0-9]+ failed$'; then
		echo "not ok - $t ran no check or did not finish"
		f=$((f + 1))
		rc=1
	fi
	pass=$((pass + p))
	fail=$((fail + f))
	[ "$rc" -eq 0 ] || failed+=("$t")
done
[ ${#failed[@]} -eq 0 ] || echo "# failed: ${failed[*]}"
echo "e2e: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
