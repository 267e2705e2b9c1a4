#!/bin/bash
# Escape suite, the host's resources: a guest root fills its disk and runs a fork bomb. The harm
# that must not happen: the host filling up or slowing down. A second sandbox's `exec -- true`
# round trip (median of a few) must stay within RTT_FACTOR times its idle value measured in the
# same test, and both supervisors under RSS_MAX_KB. The guest's CPU is bounded by QEMU (TCG: one
# host thread per vCPU), its disk by --disk-size, its processes by its own memory.
. "$(dirname "$0")/lib.sh"

RTT_FACTOR=3
# Samples per measurement: the median absorbs a single slow one on this shared machine.
RTT_SAMPLES=5
# Slack for a shared 2-core machine: an idle round trip counts as at least this long, so
# scheduling noise of a few tens of ms is not read as the host slowing down.
RTT_FLOOR_MS=100
DISK_MB=256

# measure_idle: sets IDLE_MS, the bystander's median round trip with nothing else running.
measure_idle() {
	exec_rtt "$OTHER" 1 >/dev/null # the first exec pays for the sandbox's warm-up
	IDLE_MS=$(exec_rtt "$OTHER" "$RTT_SAMPLES")
	[ "$IDLE_MS" -gt 0 ] || fail "no idle round trip measured"
	BASE_MS=$((IDLE_MS > RTT_FLOOR_MS ? IDLE_MS : RTT_FLOOR_MS))
}
# expect_responsive WHAT: the bystander's round trip now, against RTT_FACTOR x the idle one.
expect_responsive() {
	local now
	now=$(exec_rtt "$OTHER" "$RTT_SAMPLES")
	echo "    $1: the other sandbox's exec round trip ${now} ms (idle ${IDLE_MS} ms, bound x$RTT_FACTOR)" >&2
	[ "$now" -le $((BASE_MS * RTT_FACTOR)) ] ||
		fail "$1: exec round trip ${now} ms > ${RTT_FACTOR} x idle ${IDLE_MS} ms (floor ${RTT_FLOOR_MS} ms)"
}

t_disk_fill_stays_in_its_disk() {
	start
	OTHER=$SB OSUP=$SUP
	measure_idle
	start --disk-size "$DISK_MB"
	local img free0 used
	img=$(find "$MATCHLOCK_HOME" -path "*/$SB/disk.img")
	[ -f "$img" ] || fail "no disk image for $SB"
	free0=$(df -Pk "$(dirname "$img")" | awk 'NR == 2 {print $4}')
	"$ML" exec "$SB" -- sh -c 'dd if=/dev/zero of=/fill bs=1M 2>&1; dd if=/dev/urandom of=/tmp/fill2 bs=1M 2>&1; sync; df -k /' \
		>"$T_OUT/fill" 2>&1 &
	local fp=$!
	sleep 3
	expect_responsive "while the guest fills its disk"
	for _ in $(seq 300); do kill -0 $fp 2>/dev/null || break; sleep 1; done
	kill -0 $fp 2>/dev/null && fail "the fill did not end within 300 s"
	wait $fp
	expect_match "the guest hit the end of its disk" "$(cat "$T_OUT/fill")" "No space left on device"
	used=$(du -k "$img" | cut -f1)
	echo "    disk image: ${used} kB allocated on the host (--disk-size ${DISK_MB} MB)" >&2
	[ "$used" -le $((DISK_MB * 1024)) ] || fail "the disk image holds ${used} kB > ${DISK_MB} MB"
	[ "$used" -ge $((DISK_MB * 1024 / 2)) ] || fail "the fill wrote only ${used} kB: did it run?"
	# The host lost no more than the disk's size (others may write meanwhile: a slack of 1 GB).
	local free1
	free1=$(df -Pk "$(dirname "$img")" | awk 'NR == 2 {print $4}')
	[ $((free0 - free1)) -le $((DISK_MB * 1024 + 1024 * 1024)) ] || fail "host free space fell by $((free0 - free1)) kB"
	ml exec "$SB" -- sh -c 'rm -f /fill /tmp/fill2; echo alive'
	expect_eq "the filled sandbox still works ($ERR)" "$OUT" alive
	expect_responsive "after the fill"
	expect_rss_bound "$SUP" "disk fill"
	expect_rss_bound "$OSUP" "bystander"
	stop "$SB"
	stop "$OTHER"
	expect_clean_soon
}

t_fork_bomb_leaves_the_host_responsive() {
	start
	OTHER=$SB OSUP=$SUP
	measure_idle
	start
	local qemu threads0 threads
	qemu=$(pgrep -P "$SUP" -f qemu-system | head -1)
	[ -n "$qemu" ] || fail "no QEMU under $SUP"
	threads0=$(kb "$qemu" Threads)
	# Detached inside the guest (the exec returns at once); the bomb runs until the VM is killed.
	ml exec "$SB" -- sh -c 'b() { b | b & }; (b) >/dev/null 2>&1 </dev/null & echo started'
	expect_eq "the bomb started ($ERR)" "$OUT" started
	sleep 5
	expect_responsive "during the fork bomb"
	sleep 5
	expect_responsive "10 s into the fork bomb"
	# The bomb really runs: the guest is either too busy to answer or shows hundreds of processes.
	local procs
	procs=$(timeout 20 "$ML" exec "$SB" -- sh -c 'ls -d /proc/[0-9]* | wc -l' 2>/dev/null)
	echo "    guest processes 10 s into the bomb: ${procs:-no answer within 20 s}" >&2
	[ -z "$procs" ] || [ "$procs" -ge 100 ] || fail "only $procs processes: did the bomb run?"
	threads=$(kb "$qemu" Threads)
	echo "    QEMU threads: ${threads0} before, ${threads} during" >&2
	[ "$threads" -le $((threads0 + 8)) ] || fail "QEMU grew from ${threads0} to ${threads} threads"
	# The bomb is the guest's business: killing the sandbox ends it, whatever state it is in.
	if ! "$ML" kill "$SB" >"$T_OUT/kill" 2>&1; then
		# Only if the guest ended on its own meanwhile (its kernel may panic out of memory).
		local st
		st=$("$ML" get "$SB" | json_field status)
		echo "    kill: $(cat "$T_OUT/kill"); the sandbox is $st: $("$ML" get "$SB" | json_field error)" >&2
		[ "$st" != running ] || fail "kill of the bombed sandbox failed: $(cat "$T_OUT/kill")"
	fi
	for _ in $(seq 100); do [ -d "/proc/$qemu" ] || break; sleep 0.1; done
	[ -d "/proc/$qemu" ] && fail "QEMU $qemu survived the kill"
	expect_rss_bound "$SUP" "fork bomb"
	expect_rss_bound "$OSUP" "bystander"
	stop "$SB"
	stop "$OTHER"
	expect_clean_soon
}

run_tests "$@"
