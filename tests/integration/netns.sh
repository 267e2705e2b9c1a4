# Sourced first by suites that run real servers: re-run the suite in private mount and network
# namespaces (unshare -mn), so its servers get their own loopback and ports, and any file it
# bind-mounts (/etc/hosts, /etc/resolv.conf) changes nothing of the machine. Needs root.
if [ -z "${ML_NET_NS:-}" ]; then
	if ! unshare -mn true 2>/dev/null; then
		echo "skipped: needs root for unshare -mn (a private loopback)"
		echo "0 passed, 0 failed, 1 skipped"
		exit 0
	fi
	ML_NET_NS=1 exec unshare -mn "$0" "$@"
fi
