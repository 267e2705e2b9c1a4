#!/bin/bash
# Escape suite, the network: a guest root tries every way out that is not the egress engine's
# relay by host name (direct IPv4 and IPv6 addresses, IPv4-mapped IPv6, UDP, raw IP, packet and
# ICMP sockets) and tunnels data through DNS. The harm that must not happen: anything arriving
# at a listener on the host's loopback (TCP and UDP, 127.0.0.1 and ::1) except through the one
# name allowed, a DNS query answered with anything but a synthetic address, unbounded state.
# Runs as a normal user: no namespaces needed, only the host's own loopback is used.
# (tests/integration/test_net.sh checks the policy itself in a private network namespace.)
. "$(dirname "$0")/lib.sh"

t_every_other_way_out_reaches_nothing() {
	listen_loopback
	start --allow-host "ctl.test:$LPORT" --add-host ctl.test:127.0.0.1 --allow-private-ips
	local before
	# Control: the listener is reachable from this guest, through the allowed name.
	before=$(lcount)
	ml exec "$SB" -- sh -c "echo hi | nc -w 3 ctl.test $LPORT"
	expect_match "the allowed name answers ($ERR)" "$OUT" host-listener
	expect_eq "arrived through the allowed name" "$(lcount)" "$((before + 1))"
	before=$(lcount)
	ml exec "$SB" -- probe net "$LPORT"
	expect_eq "probe status ($ERR)" "$RC" 0
	printf '%s\n' "$OUT" | sed 's/^/    /' >&2
	expect_match "the probe ran to the end" "$OUT" "net: done"
	expect_match "direct IPv4" "$OUT" "net tcp 10.0.2.2: "
	expect_match "IPv4-mapped IPv6" "$OUT" "net tcp6 ::ffff:10.0.2.2: "
	expect_match "raw IP" "$OUT" "net raw-ip: "
	grep -q "answered" <<<"$OUT" && fail "something answered a direct connect: $(grep answered <<<"$OUT")"
	expect_match "no ICMP echo came back" "$OUT" "net icmp: [0-9]+ sent, 0 replies"
	expect_match "no packet socket, or nowhere to send" "$OUT" "net packet: (socket: Address family not supported by protocol|[0-9]+ interfaces)"
	sleep 1
	expect_eq "arrivals at the host's loopback" "$(lcount)" "$before"
	expect_match "direct connects are denied by name" "$("$ML" log "$SB")" "connect denied - 10.0.2.2 port $LPORT: not an address matchlock's DNS handed out"
	expect_rss_bound "$SUP" "every way out"
	stop "$SB"
	expect_clean_soon
}

# dns_figure WHAT FIELD: a figure of the probe's "dns WHAT:" line ("answers", "noerror", ...).
dns_figure() {
	local line
	line=$(grep "^dns $1: " <<<"$OUT")
	case $2 in
	queries | answers | "synthetic A") grep -oE "[0-9]+ $2" <<<"$line" | cut -d' ' -f1 ;;
	*) grep -oE "$2 [0-9]+" <<<"$line" | cut -d' ' -f2 ;;
	esac
}

t_dns_tunnelling_is_refused_and_bounded() {
	start --allow-host "*.tun.test"
	ml exec "$SB" -- probe dns 5000 tun.test
	expect_eq "probe status ($ERR)" "$RC" 0
	printf '%s\n' "$OUT" | sed 's/^/    /' >&2
	# The odd ones: 8 each of a 250-byte name (allowed: a synthetic A), TXT, MX, NULL, ANY
	# (refused), a name past 255 bytes and a pointer loop (FORMERR), binary labels (no name).
	expect_eq "answered" "$(dns_figure odd answers)" 64
	expect_eq "TXT, MX, NULL, ANY refused" "$(dns_figure odd refused)" 32
	expect_eq "malformed names" "$(dns_figure odd formerr)" 16
	expect_eq "binary labels" "$(dns_figure odd nxdomain)" 8
	expect_eq "every A answer synthetic" "$(dns_figure odd "synthetic A")" "$(dns_figure odd noerror)"
	expect_match "TXT explained" "$("$ML" log "$SB")" "DNS denied [a-z]+\\.tun\\.test TXT: only A, AAAA and CNAME"
	# Many names: the pool holds 4096 (ADDRPOOL_MAX, src/net/addrpool.h), then SERVFAIL.
	local ok
	ok=$(dns_figure many noerror)
	expect_eq "many: every query answered" "$(dns_figure many answers)" 5000
	expect_eq "many: every A synthetic (none resolved for real)" "$(dns_figure many "synthetic A")" "$ok"
	[ "$ok" -le 4096 ] || fail "$ok names got addresses: more than ADDRPOOL_MAX"
	expect_eq "many: the rest SERVFAIL" "$(dns_figure many servfail)" "$((5000 - ok))"
	expect_match "explained" "$("$ML" log "$SB")" "too many names in this sandbox"
	expect_rss_bound "$SUP" "5000 names"
	# A name nobody allowed: every query NXDOMAIN, nothing answered.
	ml exec "$SB" -- probe dns 2000 evil.test
	printf '%s\n' "$OUT" | sed 's/^/    /' >&2
	expect_eq "denied: nxdomain" "$(dns_figure many nxdomain)" 2000
	expect_eq "denied: no address" "$(dns_figure many noerror)" 0
	expect_rss_bound "$SUP" "2000 denied names"
	ml exec "$SB" -- echo alive
	expect_eq "exec afterwards ($ERR)" "$OUT" alive
	stop "$SB"
	expect_clean_soon
}

run_tests "$@"
