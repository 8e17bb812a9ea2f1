#!/usr/bin/env bash
# Runs gridex-replay as a process on every scenario NAME.in and compares its
# stdout with NAME.out, byte for byte. Directives in NAME.in comments:
#   # args: <options>     options for gridex-replay
#   # exit: <status>      expected exit status (default 0)
#   # stderr: <text>      text that stderr must contain
# Prints TAP.
set -u
tool=$1
dir=$2
scenarios=("$dir"/*.in)
echo "1..${#scenarios[@]}"
n=0
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for in in "${scenarios[@]}"; do
	n=$((n + 1))
	name=$(basename "$in" .in)
	args=$(sed -n 's/^# args: //p' "$in" | head -n 1)
	want_exit=$(sed -n 's/^# exit: //p' "$in" | head -n 1)
	want_err=$(sed -n 's/^# stderr: //p' "$in" | head -n 1)
	# shellcheck disable=SC2086 # args are words by design
	"$tool" $args "$in" >"$tmp/out" 2>"$tmp/err"
	status=$?
	ok=1
	if [ "$status" != "${want_exit:-0}" ]; then
		echo "# $name: exit status $status, want ${want_exit:-0}"
		ok=0
	fi
	if [ -n "$want_err" ] && ! grep -qF -- "$want_err" "$tmp/err"; then
		echo "# $name: stderr lacks '$want_err':"
		sed 's/^/#   /' "$tmp/err"
		ok=0
	fi
	if ! diff -u "${in%.in}.out" "$tmp/out" >"$tmp/diff"; then
		echo "# $name: output differs:"
		sed 's/^/#   /' "$tmp/diff"
		ok=0
	fi
	if [ $ok = 1 ]; then
		echo "ok $n - $name"
	else
		echo "not ok $n - $name"
		fail=1
	fi
done
exit $fail
