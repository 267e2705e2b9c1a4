#!/bin/bash
# Escape suite, reading what is not the guest's: host files through the FUSE mounts, and the
# secrets the supervisor holds. The harm that must not happen: a host file outside the shared
# folder read or changed, an attribute the host acts on (setuid, a device node, a file
# capability) planted in a host folder, or a secret's real value anywhere the guest can read:
# its files, /proc, its environment, the memory of any guest process, the guest's RAM as a
# whole (QEMU's memory, scanned from the host).
# (tests/integration/test_mounts.sh t_escape_attempts_from_guest_root already tries "..",
# symlinks out of the folder, hard links and a symlink-swap race: not repeated here.)
. "$(dirname "$0")/lib.sh"

t_mount_tricks_from_guest_root() {
	local base=$T_OUT/esc d secret before
	d=$base/share
	mkdir -p "$d/dir" "$base/outside"
	secret="CANARY-$RANDOM$RANDOM-$$"
	echo "$secret" >"$base/outside/canary"
	echo inside >"$d/dir/f"
	echo run >"$d/exe" && chmod 755 "$d/exe"
	before=$( (ls -la --time-style=full-iso "$base/outside"; ls "$base") | md5sum)
	start -v "$d:/rw:rw" -v "$d:/ro:ro" -e "C=$base/outside/canary"
	ml exec "$SB" -- sh -c '
		for m in /rw /ro; do
			# /proc/self magic links: through a directory fd of the mount, and back up.
			exec 3<$m/dir
			cat /proc/self/fd/3/../../outside/canary /proc/self/fd/3/../../../$C
			cd /proc/self/fd/3 && cat ../../outside/canary ../../../../../../$C; cd /
			exec 3<&-
			cat /proc/self/root$m/../outside/canary /proc/1/root$m/../outside/canary
			cat /proc/self/cwd/$m/../../$C
			# The host path itself, from inside.
			cat $C $m$C
		done 2>/dev/null
		echo "mounts: $(grep -c "'"$base"'" /proc/self/mountinfo)"
		# What a host would act on, planted through the rw mount.
		mknod /rw/blk b 8 0 2>&1; mknod /rw/chr c 1 3 2>&1
		chmod 4755 /rw/exe; chmod 2755 /rw/dir/f
		cp /bin/busybox /rw/sh && chmod 6755 /rw/sh
		probe setxattr /rw/exe
		echo done'
	expect_eq "status ($ERR)" "$RC" 0
	printf '%s\n' "$OUT" | sed 's/^/    /' >&2
	expect_match "ran" "$OUT" "done"
	[[ $OUT != *"$secret"* ]] || fail "the canary was read into the guest"
	expect_match "the share's host path is not shown" "$OUT" "mounts: 0"
	expect_match "no block device" "$OUT" "mknod: /rw/blk: Operation not permitted"
	expect_match "no character device" "$OUT" "mknod: /rw/chr: Operation not permitted"
	expect_match "no file capability" "$OUT" "setxattr security.capability: (Not supported|Operation not permitted)"
	expect_match "no trusted attribute" "$OUT" "setxattr trusted.probe: (Not supported|Operation not permitted)"
	# On the host: nothing new outside, nothing the host would act on inside.
	expect_eq "nothing changed outside the folder" \
		"$( (ls -la --time-style=full-iso "$base/outside"; ls "$base") | md5sum)" "$before"
	local bad
	bad=$(find "$d" \( -type b -o -type c -o \( -type f -perm /6000 \) \) -printf '%M %p\n')
	[ -z "$bad" ] || fail "planted on the host: $bad"
	[ -f "$d/sh" ] || fail "the guest's copy did not arrive: $(ls -la "$d")"
	bad=$(python3 -c 'import os, sys
for root, dirs, files in os.walk(sys.argv[1]):
    for n in dirs + files:
        p = os.path.join(root, n)
        for a in os.listxattr(p, follow_symlinks=False):
            if not a.startswith("user."):
                print(p, a)' "$d")
	[ -z "$bad" ] || fail "attributes planted on the host: $bad"
	expect_rss_bound "$SUP" "mount tricks"
	stop "$SB"
	expect_clean_soon
}

# xhex STRING: the hex of STRING's bytes XOR 0x5a (the probe's memscan argument).
xhex() { python3 -c 'import sys; print(bytes(b ^ 0x5a for b in sys.argv[1].encode()).hex())' "$1"; }

# scan_qemu PID STRING: occurrences of STRING in the memory of QEMU (the guest's RAM and QEMU's
# own); "unreadable" if this user may not read it (a jailed QEMU).
scan_qemu() {
	python3 - "$1" "$2" <<'PY'
import re, sys
pid, needle = sys.argv[1], sys.argv[2].encode()
hits = 0
try:
    maps = open("/proc/%s/maps" % pid).read().splitlines()
    mem = open("/proc/%s/mem" % pid, "rb", 0)
except OSError:
    print("unreadable"); sys.exit(0)
for line in maps:
    m = re.match(r"([0-9a-f]+)-([0-9a-f]+) r", line)
    if not m or "[vvar]" in line or "[vsyscall]" in line:
        continue
    lo, hi = int(m.group(1), 16), int(m.group(2), 16)
    tail = b""
    at = lo
    while at < hi:
        n = min(hi - at, 1 << 24)
        try:
            mem.seek(at); b = mem.read(n)
        except OSError:
            b = b""
        at += n
        if not b:
            tail = b""; continue
        buf = tail + b
        hits += buf.count(needle)
        tail = buf[-(len(needle) - 1):]
print(hits)
PY
}

t_secret_never_readable_by_the_guest() {
	local real srv="" ph qemu out
	real="sk-escape-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
	# An HTTPS upstream that echoes the request back (tests/integration/secrets_server.py on
	# 127.0.0.1:8443), so the value really is substituted and comes back to be scrubbed.
	local args=(--secret "ESC_KEY@api.test:8443" --add-host api.test:127.0.0.1)
	if ! ss -ltn 2>/dev/null | grep -qE '127.0.0.1:(8443|8444|8080) '; then
		mkdir -p "$T_OUT/srv"
		python3 "$ROOT/tests/integration/secrets_server.py" "$T_OUT/srv" >/dev/null 2>&1 &
		srv=$!
		trap "kill $srv 2>/dev/null" EXIT
		for _ in $(seq 100); do [ -e "$T_OUT/srv/ready" ] && break; sleep 0.1; done
		[ -e "$T_OUT/srv/ready" ] && args+=(--upstream-ca "$T_OUT/srv/ca.pem") || srv=""
	fi
	ESC_KEY=$real start "${args[@]}"
	ml exec "$SB" -- sh -c 'echo $ESC_KEY'
	ph=$OUT
	expect_match "the guest holds a placeholder" "$ph" "^SANDBOX_SECRET_[0-9a-f]+$"
	if [ -n "$srv" ]; then
		ml exec "$SB" -- sh -c 'wget -qO- --header "X-Api-Key: $ESC_KEY" https://api.test:8443/echo'
		expect_match "the upstream got the value and the guest the placeholder back ($ERR)" "$OUT" "\"X-Api-Key\": \"$ph\""
		grep -q "X-Api-Key: $real" "$T_OUT/srv/requests.log" || fail "the upstream did not get the real value"
	else
		echo "    (127.0.0.1:8443 busy: no substitution round trip; the scans still run)" >&2
	fi
	# Everything the guest can name, searched from inside by the probe: the memory, environ and
	# cmdline of every process, every file of its filesystems, /sys/firmware, the kernel's
	# command line and log. The value goes in XOR-masked (xhex), so the search itself never
	# puts it into the guest; the placeholder is the control.
	ml exec "$SB" -- probe memscan "$(xhex "$real")"
	printf '%s\n' "$OUT" | sed 's/^/    /' >&2
	expect_match "guest scanned ($ERR)" "$OUT" "memscan: [0-9]+ processes, [1-9][0-9]* bytes, [1-9][0-9]* files, 0 hits"
	ml exec "$SB" -- probe memscan "$(xhex "$ph")"
	expect_match "control: the placeholder is found in memory" "$OUT" "memscan: .* hits \([1-9][0-9]* in memory\)"
	ml exec "$SB" -- env
	expect_match "the environment holds the placeholder" "$OUT" "ESC_KEY=$ph"
	[[ $OUT == *"$real"* ]] && fail "the real value is in the guest's environment"
	# The guest's RAM as a whole: QEMU's memory, from the host.
	qemu=$(pgrep -P "$SUP" -f qemu-system | head -1)
	[ -n "$qemu" ] || fail "no QEMU under $SUP"
	out=$(scan_qemu "$qemu" "$ph")
	if [ "$out" = unreadable ]; then
		echo "    (QEMU's memory is not readable by this user: that scan is left to the guest's own)" >&2
	else
		[ "$out" -gt 0 ] || fail "control: the placeholder is not in QEMU's memory"
		expect_eq "the real value in QEMU's memory (the guest's RAM)" "$(scan_qemu "$qemu" "$real")" 0
	fi
	expect_rss_bound "$SUP" "secret scans"
	stop "$SB"
	expect_clean_soon
}

run_tests "$@"
