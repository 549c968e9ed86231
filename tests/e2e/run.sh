#!/bin/bash
# Runs every end-to-end test (tests/e2e/t_*.sh) against the given build
# directory (default build-asan) and prints one closing line:
# "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
export E2E_BUILD=${1:-build-asan}
pass=0
fail=0
failed=()
for t in tests/e2e/t_*.sh; do
	echo "# $t"
	start=$SECONDS
	out=$(bash "$t" 2>&1)
	rc=$?
	echo "$out"
	echo "# $t took $((SECONDS - start)) s"
	p=$(echo "$out" | grep -c '^ok - ')
	f=$(echo "$out" | grep -c '^not ok - ')
	if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	# A script that checked nothing, or stopped before its closing line,
	# proves nothing: it fails.
	if [ $((p + f)) -eq 0 ] || ! echo "$out" | grep -Eq '^[0-9]+ passed, [0-9]+ failed$'; then
		echo "not ok - $t ran no check or did not finish"
		f=$((f + 1))
		rc=1
	fi
	pass=$((pass + p))
	fail=$((fail + f))
	[ $rc -eq 0 ] || failed+=("$t")
done
[ ${#failed[@]} -eq 0 ] || echo "# failed: ${failed[*]}"
echo "e2e: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
