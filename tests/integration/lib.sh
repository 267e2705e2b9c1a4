# Tiny test harness for integration tests (sourced). Each test is a shell function named t_*;
# `run_tests "$@"` runs them (or only those named on the command line, each a whole name or the
# start of names: `test_run.sh t_timeout` runs t_timeout_exits_124), each in a subshell, and
# prints "N passed, N failed" (", N skipped" when a test called skip).
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
ML=$BUILD/matchlock
ROOTFS=${ROOTFS:-$BUILD/rootfs-busybox}
export MATCHLOCK_HOME=${MATCHLOCK_HOME:-$(mktemp -d /tmp/matchlock-test.XXXXXX)}
T_OUT=$(mktemp -d /tmp/matchlock-out.XXXXXX)
# Whatever happens, no sandbox of ours outlives the suite.
trap '"$ML" kill --all >/dev/null 2>&1; rm -rf "$MATCHLOCK_HOME" "$T_OUT"' EXIT

fail() { echo "    FAIL: $*" >&2; exit 1; }
# skip REASON: this test cannot run here (say why); counted as a skip, never as a failure.
skip() { echo "    skipped: $*"; exit 77; }
# expect_eq WHAT GOT WANT
expect_eq() { [ "$2" = "$3" ] || fail "$1: got [$2], want [$3]"; }
expect_match() { [[ $2 =~ $3 ]] || fail "$1: [$2] does not match /$3/"; }
# ml ARGS...: run matchlock, stdout to $T_OUT/out, stderr to $T_OUT/err, status in $RC.
ml() { "$ML" "$@" >"$T_OUT/out" 2>"$T_OUT/err"; RC=$?; OUT=$(cat "$T_OUT/out"); ERR=$(cat "$T_OUT/err"); }
# The QEMU processes holding a file under $1 (their disks and RAM are descriptors, never in the
# command line: src/host/jail.h).
qemu_with() {
	local p
	for p in $(pgrep qemu-system); do
		ls -l "/proc/$p/fd" 2>/dev/null | grep -qF -- "$1" && echo "$p"
	done
	return 0
}
# wait_qemu_gone PATH: until no QEMU holds a file under PATH (bounded); 1 if one still does.
wait_qemu_gone() {
	for _ in $(seq 300); do [ -z "$(qemu_with "$1")" ] && return 0; sleep 0.1; done
	return 1
}
# No sandbox state, temp files or QEMU processes of ours may be left behind.
expect_clean() {
	local left
	left=$(find "$MATCHLOCK_HOME" \( -name '*.tmp*' -o -name '.stage.*' -o -path '*/sandboxes/vm-*' \) 2>/dev/null)
	[ -z "$left" ] || fail "left behind: $left"
	[ -z "$(qemu_with "$MATCHLOCK_HOME")" ] || fail "a QEMU process is still running"
	return 0
}
# One clear line on stderr.
expect_one_line_error() {
	expect_eq "exit status" "$RC" 125
	[ "$(printf '%s\n' "$ERR" | grep -c .)" = 1 ] || fail "expected one stderr line, got: $ERR"
	expect_match "error" "$ERR" "^matchlock: "
}

run_tests() {
	local pass=0 failed=0 skipped=0 t rc
	local all=($(declare -F | awk '{print $3}' | grep '^t_')) names=() arg
	[ $# -gt 0 ] || names=("${all[@]}")
	for arg in "$@"; do
		if declare -F "$arg" >/dev/null; then
			names+=("$arg")
		else
			local before=${#names[@]}
			for t in "${all[@]}"; do [[ $t == "$arg"* ]] && names+=("$t"); done
			[ "${#names[@]}" != "$before" ] || names+=("$arg") # reported below
		fi
	done
	for t in "${names[@]}"; do
		declare -F "$t" >/dev/null || { echo "FAIL $t (no such test)"; failed=$((failed + 1)); continue; }
		local start=$SECONDS
		(set -u; $t)
		rc=$?
		if [ "$rc" = 0 ]; then
			pass=$((pass + 1))
			echo "ok   $t ($((SECONDS - start))s)"
		elif [ "$rc" = 77 ]; then
			skipped=$((skipped + 1))
			echo "skip $t"
		else
			failed=$((failed + 1))
			echo "FAIL $t"
		fi
	done
	if [ "$skipped" = 0 ]; then
		echo "$pass passed, $failed failed"
	else
		echo "$pass passed, $failed failed, $skipped skipped"
	fi
}
