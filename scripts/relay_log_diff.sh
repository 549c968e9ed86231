#!/bin/bash
# Does a change alter what the relay does? Builds two revisions, runs the
# same scripted mails through each (scripts/relay_log_scenario.sh, from the
# working tree, so both see the same script) and diffs their normalised
# relay logs. Exit 0 when they are the same, 1 when they differ.
#
#   scripts/relay_log_diff.sh OLD_REV [NEW_REV]      (NEW_REV: the working tree's build/)
#
# For refactorings that promise no change of behaviour (issue 12).
set -eu
cd "$(dirname "$0")/.."
old=${1:?usage: relay_log_diff.sh OLD_REV [NEW_REV]}
new=${2:-}
work=$(mktemp -d /tmp/hikyaku-logdiff.XXXXXX)
trap 'for w in "$work"/src-*; do [ -d "$w" ] && git worktree remove --force "$w"; done; rm -rf "$work"' EXIT

build_rev() { # build_rev REV NAME: prints the hikyaku binary's path
	local src=$work/src-$2
	git worktree add -q --detach "$src" "$1" >&2
	cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build "$src/build" -j "$(nproc)" --target hikyaku >/dev/null
	echo "$src/build/hikyaku"
}

old_bin=$(build_rev "$old" old)
if [ -n "$new" ]; then
	new_bin=$(build_rev "$new" new)
else
	cmake --build build -j "$(nproc)" --target hikyaku >/dev/null
	new_bin=$PWD/build/hikyaku
	new="working tree"
fi
HIKYAKU_BIN=$old_bin scripts/relay_log_scenario.sh >"$work/old.log"
HIKYAKU_BIN=$new_bin scripts/relay_log_scenario.sh >"$work/new.log"
echo "relay_log_diff: $old: $(wc -l <"$work/old.log") events; $new: $(wc -l <"$work/new.log") events"
if diff -u --label "$old" --label "$new" "$work/old.log" "$work/new.log"; then
	echo "relay_log_diff: the same"
else
	exit 1
fi
