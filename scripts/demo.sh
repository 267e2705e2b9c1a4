#!/bin/sh
# make demo: boot sandboxes from the busybox test root filesystem and run a few commands,
# showing what each took. (The Debian-based default image arrives with OCI image support.)
set -eu
cd "$(dirname "$0")/.."
ml=build/matchlock
rootfs=build/rootfs-busybox
export MATCHLOCK_HOME="${MATCHLOCK_HOME:-$(mktemp -d /tmp/matchlock-demo.XXXXXX)}"

step() {
	printf '\n$ matchlock run --rootfs %s %s\n' "$rootfs" "$*"
	start=$(date +%s%N)
	set +e
	MATCHLOCK_TIMING=1 "$ml" run --rootfs "$rootfs" "$@" 2>/tmp/matchlock-demo.err
	rc=$?
	set -e
	grep -v '^timing:' /tmp/matchlock-demo.err || true
	end=$(date +%s%N)
	printf '[exit %d, %d ms wall; %s]\n' "$rc" $(((end - start) / 1000000)) \
		"$(grep '^timing:' /tmp/matchlock-demo.err | sed 's/^timing: //')"
}

"$ml" diagnose
step -- uname -a
step -- sh -c 'echo "hello from $(hostname) as $(id -un)"; cat /proc/cpuinfo | grep -m1 "model name"'
step -- sh -c 'echo to stdout; echo to stderr >&2; exit 3'
printf 'piped into the sandbox\n' | step -i -- sh -c 'tr a-z A-Z'
step -u user -w /tmp/work -- sh -c 'pwd; id'
step --timeout 2 -- sleep 60
step -- sh -c 'rm -rf /bin/ls && echo "deleted /bin/ls in this sandbox"'
step -- sh -c 'ls -d /bin/ls && echo "...and the next sandbox starts clean"'
rm -rf "$MATCHLOCK_HOME" /tmp/matchlock-demo.err
