# Sourced first by suites that run real servers: re-run the suite in private mount and network
# namespaces, so its servers get their own loopback and ports, and its /etc/hosts and
# /etc/resolv.conf are private, writable copies (write them with `cat >`; nothing of the machine
# changes). No root needed: a normal user gets the namespaces inside a user namespace, sets them up
# as its root, then runs the suite as itself again (a nested user namespace mapping its own uid),
# with no capability left. The loopback is up and every port may be bound when the suite starts;
# NETNS_SETUP, when the suite sets it before sourcing this file, runs (sh -c) as the namespaces'
# root first: interfaces and addresses the suite needs.
if [ -z "${ML_NET_NS:-}" ]; then
	ns=(unshare -mn)
	[ "$(id -u)" = 0 ] || ns=(unshare --map-root-user -mn)
	if ! "${ns[@]}" true 2>/dev/null; then
		echo "skipped: cannot create private network namespaces here (${ns[*]})"
		echo "0 passed, 0 failed, 1 skipped"
		exit 0
	fi
	# The copies are bound over the originals and then unlinked: they live as long as the mounts.
	ML_NET_NS=1 exec "${ns[@]}" bash -c '
		set -e
		ip link set lo up
		# The suite may serve on ports below 1024 (DNS on 53, HTTP on 80) without root.
		echo 0 >/proc/sys/net/ipv4/ip_unprivileged_port_start
		d=$(mktemp -d /tmp/matchlock-netns.XXXXXX)
		cp /etc/hosts "$d/hosts"
		mount --bind "$d/hosts" /etc/hosts
		if [ -e /etc/resolv.conf ]; then
			cat /etc/resolv.conf >"$d/resolv.conf"
			mount --bind "$d/resolv.conf" /etc/resolv.conf
		fi
		rm -rf "$d"
		sh -c "$3"
		uid=$1 gid=$2
		shift 3
		[ "$uid" = 0 ] && exec "$@"
		exec unshare --map-user="$uid" --map-group="$gid" -- "$@"' \
		netns "$(id -u)" "$(id -g)" "${NETNS_SETUP:-:}" "$0" "$@"
fi
