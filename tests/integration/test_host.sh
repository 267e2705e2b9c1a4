#!/bin/bash
# What the host side shows and keeps of a sandbox: the environments of its processes (no secret
# values), the text matchlock prints about itself (no terminal escapes from the guest), and the
# sandbox log (capped and rotated).
. "$(dirname "$0")/lib.sh"

export API_KEY="sk-live-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
REAL=$API_KEY
API=(--secret API_KEY@api.test)

# Every process of the tree rooted at $1: itself and its descendants.
proc_tree() {
	local todo=("$1") p
	while [ ${#todo[@]} -gt 0 ]; do
		p=${todo[0]}
		todo=("${todo[@]:1}")
		echo "$p"
		todo+=($(ps -o pid= --ppid "$p"))
	done
}
# No process of the tree at $1 (the supervisor) holds the real value in its environment or
# command line; the supervisor's own environment still names the variable (we read the right
# thing), and QEMU is among them.
expect_value_in_no_process() {
	local p pids seen=0
	pids=$(proc_tree "$1")
	for p in $pids; do
		[ -r "/proc/$p/environ" ] || continue
		if grep -qaF -- "$REAL" "/proc/$p/environ" "/proc/$p/cmdline"; then
			fail "the real value is in /proc/$p/environ or cmdline of: $(tr '\0' ' ' <"/proc/$p/cmdline" | head -c 100)"
		fi
		grep -qa qemu-system "/proc/$p/cmdline" && seen=1
	done
	tr '\0' '\n' <"/proc/$1/environ" | grep -q "^API_KEY=" || fail "no API_KEY in the supervisor's environment"
	expect_eq "QEMU among the sandbox's processes ($pids)" "$seen" 1
}

t_secret_in_no_process_environment() {
	# Foreground: the run process the user gave $API_KEY to is the supervisor itself.
	"$ML" run --rootfs "$ROOTFS" "${API[@]}" -- sh -c 'echo ready; sleep 60' >"$T_OUT/fg.out" 2>&1 &
	local fg=$! i
	for i in $(seq 300); do grep -q ready "$T_OUT/fg.out" && break; sleep 0.1; done
	grep -q ready "$T_OUT/fg.out" || { kill $fg; fail "the sandbox did not start: $(cat "$T_OUT/fg.out")"; }
	(expect_value_in_no_process "$fg") || { kill $fg; wait $fg; fail "foreground run"; }
	kill $fg
	wait $fg
	# Detached: the supervisor is a forked child of run, which has exited.
	ml run -d --rootfs "$ROOTFS" "${API[@]}" -- sleep 60
	expect_eq status "$RC" 0
	local id=$OUT pid
	pid=$("$ML" get "$id" | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
	[ -n "$pid" ] || fail "no supervisor pid for $id"
	(expect_value_in_no_process "$pid") || { "$ML" kill "$id" >/dev/null; fail "detached run"; }
	ml kill "$id"
}

run_tests "$@"
