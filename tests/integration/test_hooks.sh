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

# Plain HTTP is relayed, not proxied: what the rules would block or edit is refused there.
t_plain_http_fails_closed_where_rules_apply() {
	: >"$SRV/requests.log"
	local hp
	hp=$(cat "$SRV/http_port")
	cat >"$T_OUT/hooks.json" <<JSON
{"network": [{"name": "no-admin", "path": "/admin/**", "action": "block"},
             {"name": "edit", "path": "/edit/**", "set_headers": {"X-Tag": "plain"}}]}
JSON
	ml run --rootfs "$ROOTFS" --allow-host "api.test:$hp" --add-host api.test:127.0.0.1 \
		--hooks "$T_OUT/hooks.json" -- sh -c "for p in ok admin/x edit/x; do wget -q -O - http://api.test:$hp/\$p 2>&1; echo \$p=\$?; done"
	expect_match "passes" "$OUT" "path=/ok"$'\n'"ok=0"
	expect_match "blocked" "$OUT" "admin/x=1"
	expect_match "edit refused" "$OUT" "edit/x=1"
	local log
	log=$(cat "$SRV/requests.log")
	[[ $log == *"GET /ok"* && $log != *admin* && $log != *edit* ]] || fail "the upstream got: $log"
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

# HTTP/2 (curl --http2 in the default image, tests/integration/h2_server.py upstream on a free
# port, with the certificate hooks_upstream.py made): rules and response edits on h2 streams;
# callback rules make the guest's connections HTTP/1.1.
t_h2_rules_block_and_edit_and_callback_rules_get_http1() {
	/usr/bin/python3 -c 'import h2' 2>/dev/null || skip "python3-h2 is missing (scripts/deps.sh)"
	ML="$ML" "$ROOT/scripts/default-image.sh" >/dev/null 2>&1 || skip "no default image (make default-image)"
	local port pid
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	/usr/bin/python3 "$ROOT/tests/integration/h2_server.py" "$SRV" "$port" &
	pid=$!
	trap "kill $pid 2>/dev/null" EXIT # this test's subshell (pid is local: expanded now)
	for _ in $(seq 100); do [ -e "$SRV/h2ready" ] && break; sleep 0.1; done
	[ -e "$SRV/h2ready" ] || fail "the h2 upstream did not start"
	cat >"$T_OUT/hooks.json" <<JSON
{"network": [{"name": "no-admin", "path": "/admin/**", "action": "block"},
             {"name": "tag", "set_headers": {"X-Tag": "h2"}, "set_response_headers": {"X-Hooked": "1"},
              "delete_response_headers": ["x-echo-key"],
              "body_replacements": [{"find": "x-tag", "replace": "X-TAG-SEEN"}]}]}
JSON
	: >"$SRV/h2requests.log"
	ml run --image matchlock/default --allow-host "api.test:$port" --add-host api.test:127.0.0.1 \
		--upstream-ca "$SRV/ca.pem" --hooks "$T_OUT/hooks.json" -- sh -c "
		curl --http2 -sS -o /dev/null -w 'admin=%{http_code} proto=%{http_version}\n' https://api.test:$port/admin/x
		curl --http2 -sS -D - https://api.test:$port/echo"
	expect_eq status "$RC" 0
	expect_match "blocked over h2" "$OUT" "admin=403 proto=2"
	expect_match "response header set" "$OUT" "x-hooked: 1"
	[[ $OUT != *x-echo-key* ]] || fail "x-echo-key was not deleted: $OUT"
	expect_match "body replaced" "$OUT" "X-TAG-SEEN"
	local log
	log=$(cat "$SRV/h2requests.log")
	[[ $log == *"x-tag: h2"* ]] || fail "no x-tag upstream: $log"
	[[ $log != *admin* ]] || fail "the upstream saw a refused request: $log"
	# With a callback rule, a guest offering h2 and http/1.1 gets http/1.1, where requests can
	# be held (here no SDK answers: refused; the h2-only upstream may also fail that handshake).
	echo '{"network": [{"name": "ask", "path": "/ask", "action": "callback"}]}' >"$T_OUT/hooks.json"
	ml run --image matchlock/default --allow-host "api.test:$port" --add-host api.test:127.0.0.1 \
		--upstream-ca "$SRV/ca.pem" --hooks "$T_OUT/hooks.json" -- sh -c "
		curl --http2 -sS -o /dev/null -w 'ask=%{http_code} proto=%{http_version}\n' https://api.test:$port/ask"
	expect_match "http/1.1 chosen" "$OUT" "ask=(403|502) proto=1.1"
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
