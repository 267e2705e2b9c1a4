#!/bin/bash
# Hook rules through the CLI (--hooks FILE): network rules on intercepted HTTPS requests to a
# loopback upstream (tests/sdk/hooks_upstream.py logs what it received), file rules on a rw host
# folder. The SDK callbacks are tested by tests/sdk (test_hooks_python.py, sdk/go/hooks_test.go).
. "$(dirname "$0")/lib.sh"

SRV=$T_OUT/srv
mkdir -p "$SRV"
python3 "$ROOT/tests/sdk/hooks_upstream.py" "$SRV" &
SRV_PID=$!
trap 'kill $SRV_PID 2>/dev/null; "$ML" kill --all >/dev/null 2>&1; rm -rf "$MATCHLOCK_HOME" "$T_OUT"' EXIT
for _ in $(seq 100); do [ -e "$SRV/port" ] && break; sleep 0.1; done
[ -e "$SRV/port" ] || { echo "the upstream did not start"; echo "0 passed, 1 failed"; exit 1; }
PORT=$(cat "$SRV/port")
NET=(--allow-host "api.test:$PORT" --add-host api.test:127.0.0.1 --upstream-ca "$SRV/ca.pem")
URL=https://api.test:$PORT

t_network_rules_block_and_edit() {
	: >"$SRV/requests.log"
	cat >"$T_OUT/hooks.json" <<JSON
{"network": [{"name": "no-admin", "path": "/admin/**", "action": "block"},
             {"name": "tag", "set_headers": {"X-Tag": "cli"}, "delete_headers": ["user-agent"],
              "set_response_headers": {"X-Hooked": "1"}}]}
JSON
	ml run --rootfs "$ROOTFS" "${NET[@]}" --hooks "$T_OUT/hooks.json" -- sh -c \
		"wget -q -S -O - $URL/admin/x 2>&1; echo rc=\$?; wget -q -S -O - $URL/ok 2>&1; echo rc=\$?"
	expect_eq status "$RC" 0
	expect_match "blocked" "$OUT" "403 Forbidden"
	expect_match "allowed" "$OUT" "path=/ok"
	expect_match "response header" "$OUT" "[Xx]-[Hh]ooked: 1"
	local log
	log=$(cat "$SRV/requests.log")
	[[ $log != *admin* ]] || fail "the upstream saw the blocked request: $log"
	[[ $log == *"x-tag: cli"* ]] || fail "no x-tag upstream: $log"
	[[ $log != *"User-Agent"* ]] || fail "user-agent was not deleted: $log"
}

t_callback_rule_without_an_sdk_fails_closed() {
	: >"$SRV/requests.log"
	echo '{"network": [{"name": "ask", "action": "callback"}]}' >"$T_OUT/hooks.json"
	ml run --rootfs "$ROOTFS" "${NET[@]}" --hooks "$T_OUT/hooks.json" -- sh -c "wget -q -O - $URL/x 2>&1; echo rc=\$?"
	expect_match "refused" "$OUT" "403 Forbidden"
	[ ! -s "$SRV/requests.log" ] || fail "the upstream saw it: $(cat "$SRV/requests.log")"
}

t_file_rule_blocks_writes_under_a_path() {
	local w=$T_OUT/w
	mkdir -p "$w/locked"
	echo original >"$w/locked/keep.txt"
	cat >"$T_OUT/hooks.json" <<JSON
{"files": [{"name": "locked", "ops": ["write", "remove"], "path": "/workspace/locked/**", "action": "block"}]}
JSON
	ml run --rootfs "$ROOTFS" --hooks "$T_OUT/hooks.json" -v "$w:/workspace:rw" -- sh -c \
		'echo bad >/workspace/locked/keep.txt; echo new >/workspace/locked/new.txt; mv /workspace/locked/keep.txt /workspace/out.txt; ln /workspace/locked/keep.txt /workspace/alias; rm -f /workspace/locked/keep.txt; echo free >/workspace/free.txt; cat /workspace/locked/keep.txt'
	expect_eq stdout "$OUT" original
	expect_match "denied" "$ERR" "Permission denied"
	expect_eq "host file" "$(cat "$w/locked/keep.txt")" original
	[ ! -e "$w/locked/new.txt" ] || fail "the blocked create reached the host"
	[ ! -e "$w/out.txt" ] || fail "the blocked rename reached the host"
	[ ! -e "$w/alias" ] || fail "a hard link to a locked file was made (a write through it would change it)"
	expect_eq "elsewhere" "$(cat "$w/free.txt")" free
}

t_bad_hooks_file_is_one_line() {
	echo '{"network": [{"set_headers": {"Host": "x"}}]}' >"$T_OUT/hooks.json"
	ml run --rootfs "$ROOTFS" --hooks "$T_OUT/hooks.json" -- true
	expect_one_line_error
	expect_match "names the field" "$ERR" "set_headers"
	ml run --rootfs "$ROOTFS" --hooks "$T_OUT/missing.json" -- true
	expect_one_line_error
}

run_tests "$@"
