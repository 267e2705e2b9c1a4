# Shared by the escape suite (tests/escape/test_*.sh; sourced after tests/integration/lib.sh's
# harness): attacks run as root inside a sandbox by the static probe (tests/escape/probe.c,
# copied into a busybox root filesystem as /bin/probe), with the supervisor's memory watched.
. "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"

# The bound on a supervisor's resident memory during any attack: it idles at ~10 MB and the
# link's back-pressure holds it under 48 MB under every flood (src/proto/mux.h; measured by
# tests/integration/test_link_flood.sh). The same figure holds here for every attack.
RSS_MAX_KB=$((48 * 1024))

ESCFS=$T_OUT/rootfs-escape
[ -x "$BUILD/escape-probe" ] || { echo "no $BUILD/escape-probe (make fixtures)"; echo "0 passed, 1 failed"; exit 1; }
cp -a "$ROOTFS" "$ESCFS"
cp "$BUILD/escape-probe" "$ESCFS/bin/probe"

kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null; }
json_field() { python3 -c 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print("" if v is None else v)' "$1"; }

# start ARGS...: a detached sandbox of the probe's root filesystem; sets SB and SUP (its
# supervisor's pid) and starts watching SUP's memory.
start() {
	SB=$("$ML" run -d --rootfs "$ESCFS" "$@") || fail "run -d $*"
	SUP=$("$ML" get "$SB" | json_field pid)
	[ -n "$SUP" ] && [ -d "/proc/$SUP" ] || fail "no supervisor process for $SB"
	rss_watch "$SUP"
}

# stop SB: kill and remove a sandbox (a failed one too).
stop() {
	"$ML" kill "$1" >/dev/null 2>&1
	"$ML" rm "$1" >/dev/null 2>&1
	return 0
}

# wait_ended SB: until SB's status is no longer "running" (at most 10 s; the exec that saw the
# sandbox end may return before the supervisor has recorded why).
wait_ended() {
	local i
	for i in $(seq 50); do
		[ "$("$ML" get "$1" | json_field status)" != running ] && return 0
		sleep 0.2
	done
	return 0
}

# expect_clean_soon: expect_clean, once a supervisor that is still tearing down (it kills a QEMU
# that does not power off within 2 s) had up to 10 s to remove its state.
expect_clean_soon() {
	local i
	for i in $(seq 50); do
		[ -z "$(find "$MATCHLOCK_HOME" -path '*/sandboxes/vm-*' 2>/dev/null)" ] &&
			! pgrep -f "qemu-system.*$MATCHLOCK_HOME" >/dev/null && break
		sleep 0.2
	done
	expect_clean
}

# rss_watch PID: sample PID's VmRSS every 0.2 s (and its kernel-kept peak, VmHWM) into a file
# until it exits or the suite ends; rss_peak PID prints the highest figure seen so far in kB.
rss_watch() {
	local pid=$1 f=$T_OUT/rss.$1
	echo 0 >"$f"
	(
		peak=0
		while [ -d "/proc/$pid" ]; do
			for k in VmRSS VmHWM; do
				v=$(kb "$pid" $k)
				[ -n "$v" ] && [ "$v" -gt "$peak" ] && peak=$v && echo "$peak" >"$f"
			done
			sleep 0.2
		done
	) &
}
rss_peak() { cat "$T_OUT/rss.$1" 2>/dev/null || echo 0; }
# expect_rss_bound PID WHAT: the supervisor's peak stayed under RSS_MAX_KB (and was measured).
expect_rss_bound() {
	local p
	p=$(rss_peak "$1")
	echo "    $2: supervisor peak RSS ${p} kB (bound ${RSS_MAX_KB} kB)" >&2
	[ "$p" -gt 0 ] || fail "$2: no RSS reading for the supervisor $1"
	[ "$p" -lt "$RSS_MAX_KB" ] || fail "$2: supervisor peak RSS ${p} kB >= ${RSS_MAX_KB} kB"
}

# exec_rtt SB N: the median wall time in ms of N `exec SB -- true` round trips (each bounded
# by 60 s; a failed one fails the test).
exec_rtt() {
	local i t0 t1 all=()
	for i in $(seq "$2"); do
		t0=$(date +%s%N)
		timeout 60 "$ML" exec "$1" -- true >/dev/null 2>&1 || fail "exec $1 -- true failed during the attack"
		t1=$(date +%s%N)
		all+=($(((t1 - t0) / 1000000)))
	done
	printf '%s\n' "${all[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'
}

# A listener on the host's loopback (TCP and UDP, IPv4 and IPv6) that counts everything that
# arrives: sets LPORT; lcount prints the total so far.
listen_loopback() {
	LPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	python3 - "$LPORT" "$T_OUT/arrived" <<'PY' &
import os, select, socket, sys
port, out = int(sys.argv[1]), sys.argv[2]
socks = []
for fam, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    for typ in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        try:
            s = socket.socket(fam, typ)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
            if typ == socket.SOCK_STREAM:
                s.listen(64)
            socks.append(s)
        except OSError:
            pass
n = 0
open(out, "w").write("0\n")
while True:
    for s in select.select(socks, [], [])[0]:
        if s.type == socket.SOCK_STREAM:
            c, _ = s.accept()
            c.sendall(b"host-listener\n")
            c.close()
        else:
            s.recvfrom(65536)
        n += 1
        open(out + ".tmp", "w").write("%d\n" % n)
        os.rename(out + ".tmp", out)
PY
	LPID=$!
	trap "kill $LPID 2>/dev/null" EXIT
	for _ in $(seq 50); do [ -s "$T_OUT/arrived" ] && break; sleep 0.1; done
	[ -s "$T_OUT/arrived" ] || fail "the loopback listener did not start"
}
lcount() { cat "$T_OUT/arrived"; }
