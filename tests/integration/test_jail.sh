#!/bin/bash
# The jails (src/host/jail.h): QEMU in its own namespaces with no capability, rlimits and QEMU's
# seccomp; the supervisor not dumpable with its seccomp allow-list; the control socket and state
# owner-only, and refused to another local user. Runs as any user; the second-user tests need
# root to create that user, so tests/run runs it as root (every other suite, run as the test
# user, boots its QEMUs in the unprivileged jail; t_other_user_supervisor_not_dumpable too).
# tests/run: root
. "$(dirname "$0")/lib.sh"

OTHER=matchlock-jail-other # the second local user (created when we are root)
OTHER_MADE=$(mktemp -u /tmp/matchlock-jail-other.XXXXXX) # exists if this run created it

SB= SUP= QEMU=
start_shared() {
	SB=$("$ML" run -d --rootfs "$ROOTFS" --memory 256) || fail "run -d"
	SUP=$("$ML" ls | awk -v id="$SB" '$1 == id { print $NF }')
	QEMU=$(pgrep -P "$SUP" | head -n 1)
	[ -n "$SUP" ] && [ -n "$QEMU" ] || fail "no supervisor ($SUP) or QEMU ($QEMU) for $SB"
}
# status_field PID NAME: a field of /proc/PID/status, tabs squeezed to single spaces.
status_field() { awk -v f="$2:" '$1 == f { $1 = ""; sub(/^ /, ""); print }' "/proc/$1/status"; }

t_qemu_own_namespaces() {
	local ns
	for ns in user mnt net pid ipc uts cgroup; do
		[ "$(readlink "/proc/$QEMU/ns/$ns")" != "$(readlink "/proc/self/ns/$ns")" ] ||
			fail "QEMU shares our $ns namespace"
	done
	# PID 1 of its own PID namespace: NSpid is "<ours> 1".
	expect_match NSpid "$(status_field "$QEMU" NSpid)" '^[0-9]+ 1$'
	# No network interface but a loopback that is down.
	expect_eq "QEMU's interfaces" "$(awk -F: 'NR > 2 { gsub(/ /, "", $1); print $1 }' "/proc/$QEMU/net/dev")" lo
}

t_qemu_identity_and_seccomp() {
	local want=$(id -u)
	[ "$want" = 0 ] && want=65534 # root's QEMU is mapped to nobody
	expect_eq Uid "$(status_field "$QEMU" Uid)" "$want $want $want $want"
	expect_eq CapEff "$(status_field "$QEMU" CapEff)" 0000000000000000
	expect_eq CapBnd "$(status_field "$QEMU" CapBnd)" 0000000000000000
	expect_eq NoNewPrivs "$(status_field "$QEMU" NoNewPrivs)" 1
	expect_eq "QEMU's Seccomp" "$(status_field "$QEMU" Seccomp)" 2 # -sandbox on
	# The user namespace maps its root to that one uid and nothing else.
	expect_eq uid_map "$(awk '{ print $1, $2, $3 }' "/proc/$QEMU/uid_map")" "0 $want 1"
}

# writable_by_qemu PID [as_other]: QEMU's files that QEMU's own identity could open again for
# writing through /proc/self/fd (what a QEMU taken over by its guest would try: the kernel, an
# image's disk, a template are shared by every sandbox), entered into its user and mount
# namespaces. Skips its memfds (private copies) and its sandbox's own disk. Prints "checked N"
# first, then one line a file it could write.
writable_by_qemu() {
	local creds=
	[ -n "${2:-}" ] && creds=--preserve-credentials
	${2:+as_other} nsenter -t "$1" -U -m $creds -- /usr/bin/python3 -c '
import os
files = []
for n in os.listdir("/proc/1/fd"):
    p = "/proc/1/fd/" + n
    t = os.readlink(p)
    if not t.startswith("/") or t.startswith(("/dev/", "/memfd:")) or "/state/sandboxes/" in t:
        continue
    files.append((p, t))
print("checked", len(files))
for p, t in files:
    try:
        os.close(os.open(p, os.O_RDWR))
        print("writable:", t)
    except OSError:
        pass
'
}

# A sandbox restored from the template (its shape's template exists once one has run).
t_qemu_cannot_write_what_it_reads() {
	local id sup q out
	"$ML" run --rootfs "$ROOTFS" --memory 256 -- true || fail "run"
	id=$("$ML" run -d --rootfs "$ROOTFS" --memory 256) || fail "run -d"
	sup=$("$ML" ls | awk -v i="$id" '$1 == i { print $NF }')
	q=$(pgrep -P "$sup" | head -n 1)
	out=$(writable_by_qemu "$q")
	"$ML" kill "$id" >/dev/null
	expect_match "files checked (kernel, initramfs, image disk)" "$(head -n 1 <<<"$out")" '^checked ([3-9]|[1-9][0-9])$'
	expect_eq "files QEMU could write" "$(tail -n +2 <<<"$out")" ""
}

t_qemu_sees_only_its_files() {
	local root=/proc/$QEMU/root
	expect_eq "QEMU's /" "$(ls "$root" | tr '\n' ' ')" "bin dev etc lib lib32 lib64 proc sbin usr "
	expect_eq "QEMU's /etc" "$(ls "$root/etc")" ld.so.cache
	expect_match "QEMU's /dev" "$(ls "$root/dev" | tr '\n' ' ')" '^(kvm )?null random urandom zero $'
	# Its /proc shows only itself.
	expect_eq "QEMU's processes" "$(ls "$root/proc" | grep -c '^[0-9]')" 1
	# Its disks, kernel and RAM are descriptors, no path of ours.
	ls -l "/proc/$QEMU/fd" | grep -q "$MATCHLOCK_HOME" || fail "QEMU holds none of the sandbox's files"
	[ ! -e "$root$MATCHLOCK_HOME" ] || fail "QEMU can see $MATCHLOCK_HOME"
	[ ! -e "$root/tmp" ] && [ ! -e "$root/home" ] && [ ! -e "$root/root" ] || fail "QEMU sees host dirs"
	touch "$root/x" 2>/dev/null && fail "QEMU's root is writable"
	return 0
}

t_qemu_rlimits() {
	local l=/proc/$QEMU/limits
	expect_eq core "$(awk '/^Max core file size/ { print $5 }' "$l")" 0
	expect_eq nofile "$(awk '/^Max open files/ { print $4 }' "$l")" 1024
	expect_eq nproc "$(awk '/^Max processes/ { print $3 }' "$l")" 512
	expect_eq memlock "$(awk '/^Max locked memory/ { print $4 }' "$l")" 65536
	[ "$(awk '/^Max address space/ { print $4 }' "$l")" != unlimited ] || fail "address space unlimited"
}

t_qemu_cgroup_where_delegated() {
	ml diagnose
	[[ $OUT =~ cgroup\ +ok ]] || skip "no delegated cgroup v2 here: $(grep '^cgroup' <<<"$OUT")"
	local cg
	cg=$(awk -F: '$1 == 0 { print $3 }' "/proc/$QEMU/cgroup")
	expect_match "QEMU's cgroup" "$cg" "/matchlock-$SB\$"
}

t_supervisor_sealed() {
	expect_eq "supervisor's Seccomp" "$(status_field "$SUP" Seccomp)" 2
	expect_eq "supervisor's NoNewPrivs" "$(status_field "$SUP" NoNewPrivs)" 1 # with the filter
	# Not dumpable: its /proc files belong to root whoever runs it (visible when that is not
	# root; as root the second user's supervisor shows it, t_other_user_supervisor_not_dumpable).
	if [ "$(id -u)" != 0 ]; then
		expect_eq "owner of /proc/SUP/environ" "$(stat -c %u "/proc/$SUP/environ")" 0
	else
		# Root's supervisor kept chown, dac_override, dac_read_search, fowner, fsetid, kill,
		# setgid, setuid and net_bind_service to start QEMU (the bounding set shows it: no
		# admin, ptrace, module, raw, mknod...); sealed, serving no host folder, it keeps
		# net_bind_service only (for a later port-forward below 1024).
		expect_eq "root supervisor's CapBnd" "$(status_field "$SUP" CapBnd)" 00000000000004ff
		expect_eq "root supervisor's CapPrm" "$(status_field "$SUP" CapPrm)" 0000000000000400
		expect_eq "root supervisor's CapEff" "$(status_field "$SUP" CapEff)" 0000000000000400
	fi
	# The sandbox still does everything after the seal.
	ml exec "$SB" -- sh -c 'echo sealed > /root/f && cat /root/f'
	expect_eq exec "$OUT" sealed
}

# Root's supervisor serving a host folder keeps the file powers (and nothing else) to serve
# files of any owner as root does; it stops its QEMU without CAP_KILL (QEMU's user namespace
# is root's), leaving nothing behind.
t_root_supervisor_serving_a_folder() {
	[ "$(id -u)" = 0 ] || skip "needs root"
	local dir id sup qemu
	dir=$(mktemp -d)
	mkdir "$dir/theirs" && chown nobody:nogroup "$dir/theirs" && chmod 0700 "$dir/theirs"
	id=$("$ML" run -d --rootfs "$ROOTFS" --memory 256 -v "$dir:/mnt/host:rw") || fail "run -d -v"
	sup=$("$ML" ls | awk -v i="$id" '$1 == i { print $NF }')
	qemu=$(pgrep -P "$sup" | head -n 1)
	expect_eq "its CapEff" "$(status_field "$sup" CapEff)" 000000000000041f
	ml exec "$id" -- sh -c 'echo in > /mnt/host/theirs/f && cat /mnt/host/theirs/f'
	expect_eq "a write into another owner's 0700 folder" "$OUT" in
	expect_eq "the file's owner" "$(stat -c %U "$dir/theirs/f" 2>&1)" root
	"$ML" kill "$id" >/dev/null 2>&1 || fail "kill $id"
	for _ in $(seq 100); do kill -0 "$qemu" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$qemu" 2>/dev/null && fail "QEMU $qemu is still running after kill"
	rm -rf "$dir"
}

# A supervisor that runs code it should not (here: gdb makes it call fork, as code injected by
# an attacker would) is stopped by its filter, with a line in the sandbox's log saying why.
seccomp_needs() {
	[ "$(id -u)" = 0 ] || skip "needs root to ptrace the non-dumpable supervisor"
	command -v gdb >/dev/null || skip "gdb is not installed"
}
# seccomp_violation [VAR=VALUE...]: prints the log line, then "SUPERVISOR_PID ID".
seccomp_violation() {
	local id sup said log
	id=$(env "$@" "$ML" run -d --rootfs "$ROOTFS" --memory 256) || fail "run -d"
	sup=$("$ML" ls | awk -v i="$id" '$1 == i { print $NF }')
	log=$MATCHLOCK_HOME/state/sandboxes/$id/log
	said=$(timeout 60 gdb -p "$sup" -batch -nx -ex 'handle SIGSYS nostop noprint pass' \
		-ex 'call (int)fork()' 2>&1)
	for _ in $(seq 50); do grep -q "seccomp filter" "$log" && break; sleep 0.1; done
	grep -o "supervisor: system call [0-9]* is not allowed by its seccomp filter.*" "$log" || fail "no line in the log: $said"
	echo "$sup $id"
}

t_seccomp_violation_stops_the_supervisor() {
	local line sup id
	seccomp_needs
	line=$(seccomp_violation) || exit 1
	sup=${line##*$'\n'} && id=${sup#* } && sup=${sup% *}
	expect_match "log line" "$line" "system call 56 is not allowed by its seccomp filter; stopping"
	for _ in $(seq 50); do kill -0 "$sup" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$sup" 2>/dev/null && fail "the supervisor survived a call outside its allow-list"
	"$ML" rm "$id" >/dev/null 2>&1
	return 0
}

t_seccomp_log_mode_fails_the_call() {
	local line sup id
	seccomp_needs
	line=$(seccomp_violation MATCHLOCK_SECCOMP=log) || exit 1
	sup=${line##*$'\n'} && id=${sup#* } && sup=${sup% *}
	expect_match "log line" "$line" "system call 56 is not allowed by its seccomp filter \\(MATCHLOCK_SECCOMP=log"
	ml exec "$id" -- echo alive
	expect_eq "exec after the refused call" "$OUT" alive
	"$ML" kill "$id" >/dev/null
	"$ML" rm "$id" >/dev/null
}

# `rpc` starts VMs and workers, so its filter is a deny-list: loaded, and ptrace is on it.
t_rpc_supervisor_deny_list() {
	local pid err=$T_OUT/rpc.err seccomp
	"$ML" rpc < <(sleep 30) >/dev/null 2>"$err" &
	pid=$!
	for _ in $(seq 50); do [ "$(status_field "$pid" Seccomp)" = 2 ] && break; sleep 0.1; done
	seccomp=$(status_field "$pid" Seccomp)
	if [ "$(id -u)" = 0 ] && command -v gdb >/dev/null; then
		timeout 60 gdb -p "$pid" -batch -nx -ex 'call (long)syscall(101, 16, 1, 0, 0)' >/dev/null 2>&1
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$pid" 2>/dev/null && { kill "$pid"; fail "rpc survived a ptrace call"; }
		expect_match "rpc's last words" "$(cat "$err")" "system call 101 is not allowed by its seccomp filter"
	fi
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	expect_eq "rpc's Seccomp" "$seccomp" 2
}

# Root's QEMU is nobody: a kernel only root may read (umask 077) still boots (a memfd copy).
t_root_kernel_readable_by_root_only() {
	[ "$(id -u)" = 0 ] || skip "needs root (a normal user's QEMU has the user's own uid)"
	local k=$T_OUT/vmlinux
	cp -L "$BUILD/vmlinux" "$k" && chmod 600 "$k" || fail "copy the kernel"
	MATCHLOCK_KERNEL=$k ml run --no-snapshot --rootfs "$ROOTFS" -- echo booted
	expect_eq output "$OUT" booted
}

t_state_owner_only() {
	local dir=$MATCHLOCK_HOME/state
	expect_eq "state dir" "$(stat -c %a "$dir")" 700
	expect_eq "sandboxes dir" "$(stat -c %a "$dir/sandboxes")" 700
	expect_eq "sandbox dir" "$(stat -c %a "$dir/sandboxes/$SB")" 700
	expect_eq "control socket" "$(stat -c %a "$dir/sandboxes/$SB/control.sock")" 600
	expect_eq "database" "$(stat -c %a "$dir/matchlock.db")" 600
}

# The second local user, made once (root only), and a command run as it.
need_other() {
	[ "$(id -u)" = 0 ] || skip "needs root to create a second user"
	id "$OTHER" >/dev/null 2>&1 && return 0
	useradd --system --no-create-home --shell /bin/sh "$OTHER" || fail "useradd $OTHER"
	: >"$OTHER_MADE" # removed again when the suite ends: nothing left behind
}
as_other() { setpriv --reuid="$OTHER" --regid="$OTHER" --clear-groups -- "$@"; }

t_other_user_cannot_use_the_socket() {
	need_other
	local dir=$MATCHLOCK_HOME/state/sandboxes/$SB
	# Through the CLI, with the first user's state: nothing to reach.
	RC=0
	as_other env MATCHLOCK_HOME="$MATCHLOCK_HOME" "$ML" exec "$SB" -- true >/dev/null 2>&1 || RC=$?
	[ "$RC" != 0 ] || fail "another user ran a command in the sandbox"
	as_other env MATCHLOCK_HOME="$MATCHLOCK_HOME" "$ML" kill "$SB" >/dev/null 2>&1
	"$ML" exec "$SB" -- true || fail "another user's kill stopped the sandbox"
	# Straight at the socket, even with every directory opened up by mistake: SO_PEERCRED.
	local modes
	modes=$(stat -c %a "$MATCHLOCK_HOME" "$MATCHLOCK_HOME/state" "$MATCHLOCK_HOME/state/sandboxes" "$dir" | tr '\n' ' ')
	chmod 755 "$MATCHLOCK_HOME" "$MATCHLOCK_HOME/state" "$MATCHLOCK_HOME/state/sandboxes" "$dir"
	chmod 666 "$dir/control.sock"
	local said
	said=$(as_other /usr/bin/python3 - "$dir/control.sock" <<-'EOF'
		import socket, struct, sys
		s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
		s.connect(sys.argv[1])
		# Refused at once, before any request: the answer is waiting.
		print(s.recv(4096)[2:].decode("latin-1", "replace").replace("\0", ""))
		try:
		    s.send(struct.pack(">H", 4))  # CTRL_STOP: the socket is closed already
		except OSError:
		    pass
		EOF
	)
	set -- $modes
	chmod "$1" "$MATCHLOCK_HOME"; chmod "$2" "$MATCHLOCK_HOME/state"
	chmod "$3" "$MATCHLOCK_HOME/state/sandboxes"; chmod "$4" "$dir"; chmod 600 "$dir/control.sock"
	expect_match "refusal" "$said" "permission denied: this sandbox belongs to another user"
	"$ML" exec "$SB" -- true || fail "another user's stop reached the sandbox"
}

t_other_user_cannot_read_state() {
	need_other
	local f
	for f in "$MATCHLOCK_HOME/state/matchlock.db" "$MATCHLOCK_HOME/state/sandboxes/$SB/log"; do
		as_other cat "$f" >/dev/null 2>&1 && fail "another user read $f"
	done
	as_other ls "$MATCHLOCK_HOME/state/sandboxes" >/dev/null 2>&1 && fail "another user listed the sandboxes"
	# Nor the supervisor's memory or environment, where the secrets live.
	as_other cat "/proc/$SUP/environ" >/dev/null 2>&1 && fail "another user read the supervisor's environment"
	as_other dd if="/proc/$SUP/mem" bs=1 count=1 >/dev/null 2>&1 && fail "another user read the supervisor's memory"
	return 0
}

t_other_user_supervisor_not_dumpable() {
	need_other
	# The second user's own sandbox: its supervisor's /proc files are root's (not dumpable),
	# its QEMU runs as that user, mapped, in its own namespaces, and cannot write that user's
	# files it reads.
	local home kernel id sup q
	home=$(mktemp -d /tmp/matchlock-other.XXXXXX)
	kernel=$home/vmlinux
	cp -L "$BUILD/vmlinux" "$kernel" && chmod 644 "$kernel" && chown -R "$OTHER" "$home" || fail "setup"
	id=$(as_other env HOME="$home" MATCHLOCK_HOME="$home" MATCHLOCK_KERNEL="$kernel" "$ML" run -d --rootfs "$ROOTFS" --memory 256) ||
		{ rm -rf "$home"; fail "the second user cannot run a sandbox"; }
	sup=$(as_other env MATCHLOCK_HOME="$home" "$ML" ls | awk -v i="$id" '$1 == i { print $NF }')
	q=$(pgrep -P "$sup" | head -n 1)
	local owner uid seccomp writable
	owner=$(stat -c %u "/proc/$sup/environ")
	uid=$(status_field "$q" Uid)
	seccomp=$(status_field "$sup" Seccomp)
	# Its kernel and image disk are that user's files: QEMU gets them through read-only mounts.
	writable=$(writable_by_qemu "$q" other)
	as_other env MATCHLOCK_HOME="$home" "$ML" kill "$id" >/dev/null
	as_other env MATCHLOCK_HOME="$home" "$ML" rm "$id" >/dev/null
	rm -rf "$home"
	local o=$(id -u "$OTHER")
	expect_eq "owner of its supervisor's /proc files" "$owner" 0
	expect_eq "its supervisor's Seccomp" "$seccomp" 2
	expect_eq "its QEMU's Uid" "$uid" "$o $o $o $o"
	expect_match "its QEMU's files checked" "$(head -n 1 <<<"$writable")" '^checked ([3-9]|[1-9][0-9])$'
	expect_eq "its user's files its QEMU could write" "$(tail -n +2 <<<"$writable")" ""
}

start_shared
run_tests "$@"
rc=$?
"$ML" kill "$SB" >/dev/null 2>&1
if [ -e "$OTHER_MADE" ]; then
	userdel "$OTHER" >/dev/null 2>&1
	rm -f "$OTHER_MADE"
fi
exit $rc
