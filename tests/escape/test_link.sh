#!/bin/bash
# Escape suite, the link: a guest root writes raw frames on the agent's virtio port (forged,
# oversized, out of order), opens thousands of streams, and floods stdout while never reading
# stdin. The harm that must not happen: the supervisor crashing, growing past RSS_MAX_KB, acting
# on a frame that breaks the protocol, or another sandbox noticing anything.
# (tests/integration/test_link_flood.sh floods with well-formed frames; not repeated here.)
. "$(dirname "$0")/lib.sh"

# Each breaks the protocol (src/proto/mux.c); see tests/escape/probe.c for the bytes.
FATAL="huge-len oversized flags type chan stream0-data never-opened host-id-open reopen backwards window credit-overflow ctl-garbage ctl-unknown"

t_forged_frames_end_only_their_sandbox() {
	local k other osup sb sup st err qemu
	start
	other=$SB osup=$SUP
	for k in $FATAL; do
		start
		sb=$SB sup=$SUP
		qemu=$(pgrep -P "$sup" -f qemu-system | head -1)
		[ -n "$qemu" ] || fail "$k: no QEMU under the supervisor $sup"
		ml exec "$sb" -- probe forge "$k"
		# The probe's exec ends with the sandbox: nothing after "wrote", the reason instead.
		expect_eq "$k: exec status ($OUT)" "$RC" 125
		expect_match "$k: the reason on the exec" "$ERR" "the guest broke the link protocol"
		for _ in $(seq 100); do [ -d "/proc/$qemu" ] || break; sleep 0.1; done
		[ -d "/proc/$qemu" ] && fail "$k: QEMU $qemu still runs after the protocol error"
		wait_ended "$sb"
		st=$("$ML" get "$sb" | json_field status)
		err=$("$ML" get "$sb" | json_field error)
		expect_eq "$k: status" "$st" failed
		expect_eq "$k: error" "$err" "the guest broke the link protocol (Protocol error); sandbox stopped"
		expect_rss_bound "$sup" "$k"
		stop "$sb"
		# The bystander never noticed.
		ml exec "$other" -- echo alive
		expect_eq "$k: the other sandbox ($ERR)" "$OUT" alive
	done
	expect_rss_bound "$osup" "bystander"
	stop "$other"
	expect_clean_soon
}

# Frames after a stream's CLOSE, and for a stream the host has freed, are in flight as far as
# the host can tell: ignored, the sandbox goes on.
t_late_frames_are_ignored() {
	local k
	start
	for k in after-close late-frames; do
		ml exec "$SB" -- probe forge "$k"
		expect_eq "$k: status ($ERR)" "$RC" 0
		expect_match "$k: frames written" "$OUT" "forge $k: wrote [0-9]+ bytes"
		expect_match "$k: agent let go" "$OUT" "forge $k: released"
		ml exec "$SB" -- echo alive
		expect_eq "$k: exec afterwards ($ERR)" "$OUT" alive
	done
	expect_eq "status" "$("$ML" get "$SB" | json_field status)" running
	expect_rss_bound "$SUP" "late frames"
	stop "$SB"
	expect_clean_soon
}

# A guest speaks for the execs the host opened: it may forge its own exec's output and status
# (it owns that process anyway), but nothing more. The probe is the first exec of a fresh
# sandbox, so its stream is 1; it sends a CTL_ERROR with terminal escapes, output on both
# channels, two exits, EOFs and a CLOSE with an errno. The harm that must not happen: the
# supervisor failing, an exit status outside 0..255, the guest's error text reaching the
# terminal unfiltered, other execs affected.
t_forged_exec_results_stay_with_that_exec() {
	start
	ml exec "$SB" -- probe forge own-exec
	expect_eq "the forged output arrived (the probe's stream was 1; $ERR)" "$OUT" forged-stdout
	expect_match "forged stderr" "$ERR" "^forged-stderr"
	[ "$RC" -ge 0 ] && [ "$RC" -le 255 ] || fail "exit status $RC"
	[[ $ERR == *$'\e[2J'* || $ERR == *owned* ]] && fail "the guest's error text reached the terminal: $ERR"
	# The probe read the host's answers meant for the agent (its CLOSE of stream 1), so the
	# agent may find its link out of step and end the VM: the guest broke its own sandbox.
	# Either the sandbox serves on, or it ends with a reason; the supervisor never crashes.
	local st
	OUT=$(timeout 40 "$ML" exec "$SB" -- echo alive 2>&1)
	st=$("$ML" get "$SB" | json_field status)
	echo "    after the forged results: exec said [$OUT], the sandbox is $st" >&2
	if [ "$OUT" != alive ]; then
		[ "$st" = running ] && fail "the sandbox neither serves nor ended: $OUT"
		expect_eq "ended with a reason, not a crash" "$st" failed
		[ -n "$("$ML" get "$SB" | json_field error)" ] || fail "no reason for the end"
	fi
	expect_rss_bound "$SUP" "forged exec results"
	stop "$SB"
	expect_clean_soon
}

# The file-service link of host folders ("matchlock.fs"), as the FUSE relay: a frame that breaks
# the protocol ends the sandbox; a request record claiming 4 GB, or DATA on the wrong channel,
# ends that folder's stream only (its mount is dead for the guest) and the sandbox goes on.
# Before the fix in sandbox_fs.c's fss_end (the stream's state was read after it was freed),
# either crashed the supervisor with SIGSEGV about a second later.
t_forged_file_service_frames() {
	local d=$T_OUT/share k sup
	mkdir -p "$d" && echo kept >"$d/file"
	for k in huge-len never-opened; do
		start -v "$d:/work:rw"
		ml exec "$SB" -- cat /work/file
		expect_eq "$k: the mount before ($ERR)" "$OUT" kept
		ml exec "$SB" -- probe forge-fs "$k"
		expect_eq "$k: exec status ($OUT)" "$RC" 125
		wait_ended "$SB"
		expect_eq "$k: error" "$("$ML" get "$SB" | json_field error)" \
			"the guest broke the file-service protocol (Protocol error); sandbox stopped"
		expect_rss_bound "$SUP" "fs $k"
		stop "$SB"
	done
	for k in record-len:"Message too long" wrong-chan:"Protocol error"; do
		start -v "$d:/work:rw"
		sup=$SUP
		ml exec "$SB" -- cat /work/file
		expect_eq "${k%%:*}: the mount before ($ERR)" "$OUT" kept
		ml exec "$SB" -- probe forge-fs "${k%%:*}"
		expect_eq "${k%%:*}: probe status ($ERR)" "$RC" 0
		expect_match "${k%%:*}: written and released" "$OUT" "forge-fs ${k%%:*}: released"
		expect_match "${k%%:*}: the stream ended" "$("$ML" log "$SB")" \
			"host folder /work: closing the guest's connection \(${k#*:}\)"
		sleep 2 # the crash came about a second after the record
		[ -d "/proc/$sup" ] || fail "${k%%:*}: the supervisor $sup died: $("$ML" get "$SB" | json_field status)"
		ml exec "$SB" -- echo alive
		expect_eq "${k%%:*}: exec afterwards ($ERR)" "$OUT" alive
		expect_eq "${k%%:*}: status" "$("$ML" get "$SB" | json_field status)" running
		expect_eq "${k%%:*}: the host file" "$(cat "$d/file")" kept
		expect_rss_bound "$sup" "fs ${k%%:*}"
		stop "$SB"
	done
	expect_clean_soon
}

# 3000 connections at once, each a stream on the link: past EGRESS_MAX_CONNS (256, the agent's
# NET_MAX_CONNS too) they are refused at once, none is left hanging, none reaches anything it was
# not allowed to, the supervisor stays bounded, and afterwards the sandbox still connects.
t_thousands_of_streams() {
	listen_loopback
	start --allow-host "ctl.test:$LPORT" --add-host ctl.test:127.0.0.1 --allow-private-ips
	local a before out ok
	ml exec "$SB" -- sh -c "grep ' ctl.test' /etc/hosts | head -1 | cut -d' ' -f1"
	a=$OUT
	expect_match "ctl.test's synthetic address" "$a" "^198\.1[89]\."
	# Control: one connection to the allowed name reaches the host's listener.
	before=$(lcount)
	ml exec "$SB" -- sh -c "echo hi | nc -w 3 ctl.test $LPORT"
	expect_match "the allowed name answers ($ERR)" "$OUT" host-listener
	expect_eq "arrived" "$(lcount)" "$((before + 1))"
	before=$(lcount)
	ml exec "$SB" -- probe streams 3000 "$a" "$LPORT" 20
	expect_eq "probe status ($ERR)" "$RC" 0
	out=$OUT
	echo "    $out" >&2
	expect_match "the probe ran" "$out" "^streams: 3000 sockets, [0-9]+ connected, [0-9]+ failed, 0 pending$"
	ok=$(sed -E 's/.* ([0-9]+) connected.*/\1/' <<<"$out")
	[ "$ok" -ge 1 ] && [ "$ok" -le 256 ] || fail "connected at once: $ok, want 1..256"
	[ "$(lcount)" -le "$((before + ok))" ] || fail "the listener saw $(($(lcount) - before)) connections, the guest $ok"
	expect_rss_bound "$SUP" "3000 streams"
	ml exec "$SB" -- sh -c "echo hi | nc -w 3 ctl.test $LPORT"
	expect_match "a connection afterwards ($ERR)" "$OUT" host-listener
	# The same flood at addresses DNS never handed out reaches nothing at all.
	before=$(lcount)
	ml exec "$SB" -- probe streams 3000 10.0.2.2 "$LPORT" 10
	expect_match "direct address ($ERR)" "$OUT" "^streams: 3000 sockets, .* 0 pending$"
	expect_eq "arrivals from direct connects" "$(lcount)" "$before"
	expect_rss_bound "$SUP" "3000 direct connects"
	stop "$SB"
	expect_clean_soon
}

# The guest writes 200 MB to stdout and never reads its stdin while the host side pushes 64 MB
# into it and reads the output slowly: both directions wait on credit, nothing piles up.
t_stdout_flood_never_reading_stdin() {
	start
	local n
	n=$(head -c 67108864 /dev/zero | timeout 300 "$ML" exec -i "$SB" -- sh -c \
		'exec 0<&-; sleep 1; head -c 209715200 /dev/zero' | (sleep 5; wc -c))
	expect_eq "bytes out" "$n" 209715200
	expect_rss_bound "$SUP" "stdout flood"
	ml exec "$SB" -- echo alive
	expect_eq "exec afterwards ($ERR)" "$OUT" alive
	stop "$SB"
	expect_clean_soon
}

run_tests "$@"
