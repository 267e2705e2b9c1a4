#!/bin/bash
# arm64 guests (QEMU virt, emulated under TCG on an x86_64 host): a representative part of the
# run/exec, life-cycle, network, secrets and snapshot suites, run unchanged with
# MATCHLOCK_PLATFORM=linux/arm64 and the arm64 busybox root filesystem. Each suite keeps its own
# servers and namespaces; this prints their sum as one verdict. The multi-arch image test (both
# --platform values from one index) is in test_images.sh.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
# The kernel as the host will find it: $MATCHLOCK_KERNEL_ARM64 (tests/run points the test user at
# its own link to root's cache), else the link next to the binary.
for f in "${MATCHLOCK_KERNEL_ARM64:-$BUILD/arm64/Image}" "$BUILD/arm64/initramfs.cpio" "$BUILD/arm64/rootfs-busybox/bin/busybox"; do
	[ -r "$f" ] || { echo "skipped: $f missing or unreadable (make guest-arm64)"; echo "0 passed, 0 failed, 1 skipped"; exit 0; }
done
command -v qemu-system-aarch64 >/dev/null ||
	{ echo "skipped: qemu-system-aarch64 missing (apt-get install qemu-system-arm)"; echo "0 passed, 0 failed, 1 skipped"; exit 0; }
export MATCHLOCK_PLATFORM=linux/arm64 ROOTFS=$BUILD/arm64/rootfs-busybox BUILD

suites=(
	"test_run.sh t_stdout_stderr_and_status t_signal_status t_stdin_round_trip t_bulk_data_both_ways
		t_tty t_timeout_exits_124 t_kill9_leaves_no_qemu t_exec_errors t_user_workdir_env_hostname
		t_writes_stay_in_the_sandbox"
	"test_lifecycle.sh t_detach_exec_keeps_state t_exec_stdin_and_bulk_output
		t_concurrent_execs_in_one_sandbox t_allow_list_takes_effect t_port_forward_round_trip"
	"test_net.sh t_allowed_http_and_raw_tcp t_unlisted_name_nxdomain_and_raw_connect_refused
		t_private_address_blocked_unless_opted_in t_udp_and_icmp_go_nowhere t_dns_tunnel_never_leaves_the_host"
	"test_secrets.sh t_guest_sees_only_the_placeholder t_busybox_wget_over_tls
		t_secret_file_get_redacted_and_nothing_on_disk"
	"test_snapshot.sh t_first_boot_saves_then_restores t_clones_do_not_share_identity
		t_corrupt_or_truncated_template_falls_back t_clones_never_write_the_template"
)
pass=0 fail=0 skip=0
# The suites below must really drive arm64 guests.
export MATCHLOCK_HOME=$(mktemp -d /tmp/matchlock-test.XXXXXX)
m=$("$BUILD/matchlock" run --rootfs "$ROOTFS" -- uname -m 2>&1)
"$BUILD/matchlock" kill --all >/dev/null 2>&1
rm -rf "$MATCHLOCK_HOME"
unset MATCHLOCK_HOME
if [ "$m" = aarch64 ]; then
	echo "ok   the guest is arm64"; pass=1
else
	echo "FAIL the guest is arm64: uname -m said [$m]"; fail=1
fi
for entry in "${suites[@]}"; do
	read -r -a words <<<"$(echo $entry)"
	echo "== ${words[*]} (arm64)"
	out=$("$ROOT/tests/integration/${words[0]}" "${words[@]:1}" 2>&1)
	rc=$?
	printf '%s\n' "$out"
	last=$(printf '%s\n' "$out" | tail -n 1)
	if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)?$ ]]; then
		pass=$((pass + BASH_REMATCH[1])) fail=$((fail + BASH_REMATCH[2])) skip=$((skip + ${BASH_REMATCH[4]:-0}))
		[ "$rc" = 0 ] || [ "${BASH_REMATCH[2]}" != 0 ] || fail=$((fail + 1))
	else
		echo "${words[0]} did not report a result (exit $rc)"
		fail=$((fail + 1))
	fi
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
