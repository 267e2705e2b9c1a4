#!/bin/bash
# tests/run: root
# (Root-only: t_secret_in_no_process_environment reads /proc/PID/environ of the supervisor, which
# is not dumpable: only root may.)
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
	[ "$(id -u)" = 0 ] || skip "needs root: the supervisor is not dumpable, only root reads its /proc/PID/environ"
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
	# RPC: the value comes in JSON, but the SDK's program (whose environment the server
	# inherits) holds it too, as here.
	coproc RPC { exec "$ML" rpc 2>"$T_OUT/rpc.err"; }
	local rpc=$RPC_PID line=
	printf '{"jsonrpc":"2.0","id":1,"method":"create","params":{"image":"%s","network":{"secrets":{"API_KEY":{"value":"%s","hosts":["api.test"]}}}}}\n' \
		"$ROOTFS" "$REAL" >&"${RPC[1]}"
	for i in $(seq 100); do
		read -r -t 60 line <&"${RPC[0]}" || break
		[[ $line == *'"id":1'* ]] && break
	done
	[[ $line == *'"result"'* ]] || { kill $rpc; fail "rpc create: $line $(cat "$T_OUT/rpc.err")"; }
	(expect_value_in_no_process "$rpc") || { kill $rpc; fail "rpc"; }
	printf '{"jsonrpc":"2.0","id":2,"method":"close"}\n' >&"${RPC[1]}"
	exec {RPC[1]}>&-
	wait $rpc
}

# Only a variable's whole value is wiped: a short secret that is also part of PATH leaves PATH
# whole, and QEMU is still found through it.
t_short_secret_leaves_other_variables() {
	SHORT=bin ml run --rootfs "$ROOTFS" --secret SHORT@api.test -- sh -c 'echo "$SHORT"'
	expect_eq status "$RC" 0
	expect_match "placeholder" "$OUT" "^SANDBOX_SECRET_[0-9a-f]{32}$"
}

# Text from an image config (what a registry sends) and from the guest's agent reaches our error
# messages; a terminal must get it escaped, never as ESC/BEL/newline bytes it would act on.
t_guest_and_image_text_is_escaped() {
	local esc bad
	esc=$(printf '\033]0;pwned\007\033[2J/nope\nmatchlock: forged')
	tar -C "$ROOTFS" --owner=0 --group=0 -cf "$T_OUT/base.tar" .
	python3 "$ROOT/scripts/oci_image.py" docker-save "$T_OUT/esc.tar" --layer "$T_OUT/base.tar" \
		--entrypoint "$esc" >/dev/null || fail "building the image"
	ml image import local/esc <"$T_OUT/esc.tar"
	expect_eq "import" "$RC" 0
	ml run --image local/esc
	expect_eq status "$RC" 127
	[[ $ERR != *[$'\001'-$'\010\012'-$'\037\177']* ]] || fail "a control byte reached stderr: $(printf '%s' "$ERR" | od -c | head -5)"
	expect_match "escaped, one line" "$ERR" '^matchlock: \\x1b\]0;pwned\\x07\\x1b\[2J/nope\\x0amatchlock: forged: .*No such file'
	# A root filesystem path with an escape: `ls` shows it escaped.
	bad="$T_OUT/$(printf 'r\033[31m')"
	ln -s "$ROOTFS" "$bad"
	ml run -d --rootfs "$bad"
	expect_eq "run -d" "$RC" 0
	local id=$OUT
	ml ls
	[[ $OUT != *$'\033'* ]] || fail "ls printed an ESC byte"
	expect_match "ls" "$OUT" "$id +running +.*r\\\\x1b\[31m "
	ml kill "$id"
}

LOG_CAP=$((8 << 20)) # LOG_FILE_CAP in src/common/log.h

# A guest filling its log: 40 MB of a detached command's output, then console writes (the
# console is slow under TCG, so the bulk goes through the command's output: the same sink). The sandbox's log files never pass twice the cap; `log` and `log -f`
# still show the newest output.
t_log_capped_and_rotated() {
	ml run -d --rootfs "$ROOTFS" -- sh -c 'dd if=/dev/zero bs=64k count=640 2>/dev/null | tr "\0" y
		sleep 1; dd if=/dev/zero bs=1k count=200 2>/dev/null | tr "\0" c >/dev/console; echo END-MARK >/dev/console; sleep 600'
	expect_eq "run -d" "$RC" 0
	local id=$OUT dir="$MATCHLOCK_HOME/state/sandboxes/$OUT" max=0 total i
	"$ML" log -f "$id" >"$T_OUT/follow" 2>&1 &
	local fpid=$!
	for i in $(seq 600); do
		total=$(( $(stat -c %s "$dir/log" 2>/dev/null || echo 0) + $(stat -c %s "$dir/log.1" 2>/dev/null || echo 0) ))
		[ "$total" -gt "$max" ] && max=$total
		"$ML" log "$id" | tail -c 300000 | grep -q END-MARK && break
		sleep 0.1
	done
	"$ML" log "$id" >"$T_OUT/log"
	ml kill "$id"
	for i in $(seq 100); do kill -0 $fpid 2>/dev/null || break; sleep 0.1; done
	kill $fpid 2>/dev/null
	echo "    log: peak $max bytes on disk (cap $LOG_CAP)"
	[ "$max" -le $((2 * LOG_CAP)) ] || fail "the log reached $max bytes (cap $LOG_CAP, at most twice that)"
	[ -e "$dir/log.1" ] || fail "no rotation: $(ls -l "$dir")"
	tail -c 300000 "$T_OUT/log" | grep -q END-MARK || fail "log does not end with the newest output"
	[ "$(stat -c %s "$T_OUT/log")" -le $((2 * LOG_CAP)) ] || fail "log printed more than the two files"
	grep -q ccccccccc "$T_OUT/log" || fail "no console output in the log"
	grep -q END-MARK "$T_OUT/follow" || fail "log -f lost the output after a rotation"
}

run_tests "$@"
