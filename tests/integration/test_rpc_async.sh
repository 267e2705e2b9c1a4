#!/bin/bash
# Several sandboxes in one `matchlock rpc`, each started and stopped asynchronously (issue 12
# part 2): a slow image pull for one sandbox never stops another from answering; two sandboxes
# serve side by side; a create cancelled mid-pull leaves nothing behind. The driver is
# rpc_async.py; the slow registry is slow_registry.py (loopback, its layer held until released).
# Runs in private namespaces (netns.sh): the denied lookups never leave this machine.
. "$(dirname "$0")/netns.sh"
. "$(dirname "$0")/lib.sh"
export ML ROOTFS MATCHLOCK_HOME
DIR=$(dirname "$0")
DRIVER=$DIR/rpc_async.py

# slow_registry: start a fresh slow registry (a layer no cache holds) in a new $REG_DIR; stopped
# when the test's shell ends.
slow_registry() {
	REG_DIR=$(mktemp -d "$T_OUT/reg.XXXXXX")
	python3 "$DIR/slow_registry.py" "$REG_DIR" "$ROOTFS" --chunk 4096 --interval 0.05 2>"$REG_DIR/log" &
	REG_PID=$!
	trap 'kill $REG_PID 2>/dev/null; wait $REG_PID 2>/dev/null' EXIT
	local i
	for i in $(seq 100); do [ -f "$REG_DIR/port" ] && return 0; sleep 0.1; done
	fail "the slow registry did not start: $(cat "$REG_DIR/log")"
}

# A worker killed mid-pull leaves no partial blob or staging directory in the image cache (the
# sandbox side is checked by the driver).
cache_tmp_clean() {
	local left
	left=$(find "$MATCHLOCK_HOME/cache" \( -name '*.tmp*' -o -name '.stage.*' \) 2>/dev/null)
	[ -z "$left" ] || fail "left in the image cache: $left"
}

# The done-when of issue 12: A's execs are answered while B's image is pulled (B's create still
# unanswered), then B runs the pulled image; closing B leaves A serving.
t_exec_answers_while_another_sandbox_pulls() {
	slow_registry
	timeout 900 python3 "$DRIVER" pull "$REG_DIR" || fail "driver"
}
# Two sandboxes: files and events of each are its own; close one, the other still answers; one
# stopped by `matchlock kill` leaves the server.
t_two_sandboxes_one_server() { timeout 600 python3 "$DRIVER" two || fail "driver"; }
# cancel of a create while its image is pulled: no record, no directory, no worker process.
t_cancel_create_while_pulling() {
	slow_registry
	timeout 600 python3 "$DRIVER" cancel "$REG_DIR" || fail "driver"
	cache_tmp_clean
}
# A client that asks for 100 answers of 5.6 MB and reads none: requests wait (unparsed, in a
# bounded buffer) while stdout is full; memory stays bounded; all are answered once it reads.
t_requests_wait_while_stdout_is_full() { timeout 600 python3 "$DRIVER" backpressure || fail "driver"; }
# 16 sandboxes starting at once, the 17th refused; EOF abandons every start.
t_sandbox_limit_and_eof_while_starting() {
	slow_registry
	timeout 600 python3 "$DRIVER" limit "$REG_DIR" || fail "driver"
	cache_tmp_clean
}

run_tests "$@"
