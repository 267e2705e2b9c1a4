#!/bin/sh
# make demo: boot sandboxes from the embedded Debian-based default image (make default-image)
# and run a few commands, showing what each took.
set -eu
cd "$(dirname "$0")/.."
ml=build/matchlock

step() {
	printf '\n$ matchlock run %s\n' "$*"
	start=$(date +%s%N)
	set +e
	MATCHLOCK_TIMING=1 "$ml" run "$@" 2>/tmp/matchlock-demo.err
	rc=$?
	set -e
	grep -v '^timing:' /tmp/matchlock-demo.err || true
	end=$(date +%s%N)
	printf '[exit %d, %d ms wall; %s]\n' "$rc" $(((end - start) / 1000000)) \
		"$(grep '^timing:' /tmp/matchlock-demo.err | sed 's/^timing: //')"
}

"$ml" diagnose
step -- uname -a
step -- sh -c '. /etc/os-release; echo "$PRETTY_NAME"; python3 --version; git --version; curl --version | head -1'
step -- sh -c 'echo "hello from $(hostname) as $(id -un)"; cat /proc/cpuinfo | grep -m1 "model name"'
step -- sh -c 'echo to stdout; echo to stderr >&2; exit 3'
printf 'piped into the sandbox\n' | step -i -- sh -c 'tr a-z A-Z'
step -u user -w /tmp/work -- sh -c 'pwd; id'
step --timeout 2 -- sleep 60
step -- sh -c 'rm -rf /bin/ls && echo "deleted /bin/ls in this sandbox"'
step -- sh -c 'ls -d /bin/ls && echo "...and the next sandbox starts clean"'
rm -f /tmp/matchlock-demo.err

# Secrets and the sealed network, against a local HTTPS API (private network namespace).
if [ "$(id -u)" = 0 ]; then
	unshare -mn scripts/demo-secrets.sh
else
	echo "(the secrets demo needs root for a private network namespace: skipped)"
fi
