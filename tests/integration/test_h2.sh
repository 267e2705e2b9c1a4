#!/bin/bash
# HTTP/2 through the TLS-intercepting proxy, end to end: curl --http2 in the default image
# against an HTTP/2-only upstream (tests/integration/h2_server.py, python3-h2) and an
# HTTP/1.1-only one (secrets_server.py), both on the private loopback of the suite's network
# namespace (unshare -mn, like test_secrets.sh). The servers log what they received.
. "$(dirname "$0")/netns.sh"
. "$(dirname "$0")/lib.sh"

SRV=$T_OUT/srv
mkdir -p "$SRV"
# Debian's python3 (python3-h2 is a Debian package; a python3 earlier in PATH may lack it).
PY_H2=/usr/bin/python3
"$PY_H2" -c 'import h2, grpc' 2>/dev/null || { echo "skipped: python3-h2 or python3-grpcio is missing (scripts/deps.sh)"; echo "0 passed, 0 failed, 1 skipped"; exit 0; }
python3 "$ROOT/tests/integration/secrets_server.py" "$SRV" &
PIDS=$!
trap 'kill $PIDS 2>/dev/null; "$ML" kill --all >/dev/null 2>&1; rm -rf "$MATCHLOCK_HOME" "$T_OUT"' EXIT
for _ in $(seq 100); do [ -e "$SRV/ready" ] && break; sleep 0.1; done
"$PY_H2" "$ROOT/tests/integration/h2_server.py" "$SRV" 9443 &
PIDS="$PIDS $!"
for _ in $(seq 100); do [ -e "$SRV/h2ready" ] && break; sleep 0.1; done
"$PY_H2" "$ROOT/tests/integration/grpc_server.py" "$SRV" 9445 &
PIDS="$PIDS $!"
for _ in $(seq 100); do [ -e "$SRV/grpcready" ] && break; sleep 0.1; done
[ -e "$SRV/ready" ] && [ -e "$SRV/h2ready" ] && [ -e "$SRV/grpcready" ] || { echo "servers did not start"; echo "0 passed, 1 failed"; exit 1; }

ML="$ML" "$ROOT/scripts/default-image.sh" >/dev/null 2>&1 || { echo "no default image (make default-image)"; echo "0 passed, 1 failed"; exit 1; }
IMG=(--image matchlock/default)
# The test-client image (gRPC, httpx): `make test` builds it with the default image.
CLIENTS=(--image matchlock/clients)
ML="$ML" "$ROOT/scripts/default-image.sh" clients >/dev/null 2>&1 || CLIENTS=()

export API_KEY="sk-h2-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
REAL=$API_KEY
API=(--secret API_KEY@api.test:9443,api.test:8443,api.test:9445 --add-host api.test:127.0.0.1 --upstream-ca "$SRV/ca.pem")
h2log() { cat "$SRV/h2requests.log" 2>/dev/null; }
h1log() { cat "$SRV/requests.log" 2>/dev/null; }
expect_no_real() { [[ $OUT$ERR != *"$REAL"* ]] || fail "the real secret reached the guest or the terminal"; }

t_h2_header_gets_the_key_and_the_echo_is_scrubbed() {
	: >"$SRV/h2requests.log"
	ml run "${IMG[@]}" "${API[@]}" -- sh -c 'curl --http2 -sS -D - -w "\nproto=%{http_version}\n" \
		-H "X-Api-Key: $API_KEY" -u "user:$API_KEY" "https://api.test:9443/echo?key=$API_KEY"'
	expect_eq status "$RC" 0
	expect_match "HTTP/2 both ways" "$OUT" "proto=2"
	[[ $(h2log) == *"x-api-key: $REAL"* ]] || fail "header: upstream got: $(h2log)"
	[[ $(h2log) == *":path: /echo?key=$REAL"* ]] || fail "path: upstream got: $(h2log)"
	[[ $(h2log) == *"authorization: Basic $(printf 'user:%s' "$REAL" | base64 -w0)"* ]] || fail "basic: upstream got: $(h2log)"
	[[ $(h2log) == *"accept-encoding: identity"* ]] || fail "accept-encoding not identity: $(h2log)"
	[[ $(h2log) != *SANDBOX_SECRET_* ]] || fail "a placeholder reached the upstream"
	expect_match "response header scrubbed" "$OUT" "x-echo-key: SANDBOX_SECRET_[0-9a-f]{32}"
	expect_match "body scrubbed" "$OUT" '"x-api-key", "SANDBOX_SECRET_[0-9a-f]{32}"'
	expect_no_real
}

t_h2_request_bodies_get_the_key() {
	: >"$SRV/h2requests.log"
	ml run "${IMG[@]}" "${API[@]}" --allow-host other.test:9443 --add-host other.test:127.0.0.1 -- sh -c '
		curl --http2 -sS -d "grant_type=client_credentials&client_secret=$API_KEY" https://api.test:9443/echo; echo
		curl --http2 -sS -H "Content-Type: application/json" -d "{\"key\": \"$API_KEY\"}" https://api.test:9443/echo; echo
		curl --http2 -sS -w "\nbody_to_other=%{http_code}\n" -d "k=$API_KEY" https://other.test:9443/echo'
	expect_eq status "$RC" 0
	[[ $(h2log) == *"body: grant_type=client_credentials&client_secret=$REAL"* ]] || fail "form body: upstream got: $(h2log)"
	[[ $(h2log) == *"body: {\"key\": \"$REAL\"}"* ]] || fail "json body: upstream got: $(h2log)"
	[[ $(h2log) != *SANDBOX_SECRET_* ]] || fail "a placeholder reached an upstream: $(h2log)"
	expect_match "echoed body scrubbed" "$OUT" "client_secret=SANDBOX_SECRET_[0-9a-f]{32}"
	expect_match "a body toward another host is refused" "$OUT" "body_to_other=403"
	expect_match "secret_leak event" "$ERR" "secret_leak blocked POST https://other.test:9443/echo"
	expect_no_real
}

t_httpx_over_h2() {
	[ ${#CLIENTS[@]} -gt 0 ] || skip "no matchlock/clients image (make client-image)"
	: >"$SRV/h2requests.log"
	ml run "${CLIENTS[@]}" "${API[@]}" -- python3 -c '
import os, httpx
with httpx.Client(http2=True, verify=os.environ["SSL_CERT_FILE"]) as c:
    for i in range(3):
        r = c.post("https://api.test:9443/echo", headers={"x-api-key": os.environ["API_KEY"]},
                   json={"token": os.environ["API_KEY"], "i": i})
        print(r.http_version, r.status_code, r.headers["x-echo-key"], r.json()["body"])
'
	expect_eq status "$RC" 0
	expect_eq "three requests over HTTP/2" "$(grep -c '^HTTP/2 200 SANDBOX_SECRET_' <<<"$OUT")" 3
	expect_eq "one connection" "$(grep '^conn=' "$SRV/h2requests.log" | cut -d' ' -f1 | sort -u | wc -l)" 1
	[[ $(h2log) == *"x-api-key: $REAL"* && $(h2log) == *"\"token\": \"$REAL\""* ]] || fail "upstream got: $(h2log)"
	expect_match "JSON body echoed scrubbed" "$OUT" '"token": "SANDBOX_SECRET_[0-9a-f]{32}"'
	expect_no_real
}

t_h2_compressed_bodies() {
	: >"$SRV/h2requests.log"
	ml run "${IMG[@]}" "${API[@]}" -- sh -c '
		curl --http2 -sS --compressed -H "X-Api-Key: $API_KEY" https://api.test:9443/gzip; echo
		printf "k=%s" "$API_KEY" | gzip >/tmp/b.gz
		curl --http2 -sS -w "\ngzip_body=%{http_code}\n" -H "Content-Encoding: gzip" --data-binary @/tmp/b.gz https://api.test:9443/echo
		curl --http2 -sS -w "\nunknown_body=%{http_code}\n" -H "Content-Encoding: compress" --data-binary @/tmp/b.gz https://api.test:9443/echo'
	expect_eq status "$RC" 0
	[[ $(h2log) == *"accept-encoding: identity"* ]] || fail "accept-encoding: upstream got: $(h2log)"
	expect_match "gzip response decoded, scrubbed, encoded again" "$OUT" '"x-api-key", "SANDBOX_SECRET_[0-9a-f]{32}"'
	expect_match "placeholder in a gzip body: 415" "$OUT" "gzip_body=415"
	expect_match "the reason" "$OUT" "inside a compressed \(Content-Encoding\) body"
	expect_match "a coding the proxy cannot read: 415" "$OUT" "unknown_body=415"
	expect_no_real
}

t_h2_placeholder_to_another_host_is_refused() {
	: >"$SRV/h2requests.log"
	ml run "${IMG[@]}" "${API[@]}" --allow-host other.test:9443 --add-host other.test:127.0.0.1 -- sh -c \
		'curl --http2 -sS -w "\nstatus=%{http_code} proto=%{http_version}\n" -H "X-Api-Key: $API_KEY" https://other.test:9443/echo
		 curl --http2 -sS -o /dev/null -w "clean=%{http_code}\n" https://other.test:9443/echo'
	expect_match "403 over h2" "$OUT" "status=403 proto=2"
	expect_match "body names the rule" "$OUT" "placeholder of secret API_KEY, which may only be sent to api.test:9443"
	expect_match "a clean request still works" "$OUT" "clean=200"
	expect_match "secret_leak event" "$ERR" "secret_leak blocked GET https://other.test:9443/echo"
	expect_eq "requests that reached the server" "$(grep -c '^conn=' "$SRV/h2requests.log")" 1
	[[ $(h2log) != *SANDBOX_SECRET_* ]] || fail "the placeholder reached the other host: $(h2log)"
	expect_no_real
}

t_h2_guest_talks_http1_to_an_http1_upstream() {
	# curl offers h2 and http/1.1: it gets what the upstream chose (nothing to translate).
	: >"$SRV/requests.log"
	ml run "${IMG[@]}" "${API[@]}" -- sh -c 'curl --http2 -sS -w "\nproto=%{http_version}\n" \
		-H "X-Api-Key: $API_KEY" https://api.test:8443/echo'
	expect_match "the upstream's version" "$OUT" "proto=1.1"
	[[ $(h1log) == *"X-Api-Key: $REAL"* ]] || fail "upstream got: $(h1log)"
	expect_match "scrubbed" "$OUT" '"X-Api-Key": "SANDBOX_SECRET_'
	expect_no_real
}

# An h2-only guest (httpx with HTTP/1.1 turned off: it offers both in ALPN, gets http/1.1, and
# speaks HTTP/2 anyway, which the proxy takes) and an upstream that speaks only HTTP/1.1: each
# stream is one request on the upstream's keep-alive connection (proxy_h2.c's translation).
t_h2_only_guest_over_an_http1_only_upstream() {
	[ ${#CLIENTS[@]} -gt 0 ] || skip "no matchlock/clients image (make client-image)"
	: >"$SRV/requests.log"
	ml run "${CLIENTS[@]}" "${API[@]}" --allow-host other.test:8443 --add-host other.test:127.0.0.1 -- python3 -c '
import hashlib, os, httpx
key = os.environ["API_KEY"]
with httpx.Client(http1=False, http2=True, verify=os.environ["SSL_CERT_FILE"], timeout=30) as c:
    r = c.get("https://api.test:8443/echo", headers={"x-api-key": key, "cookie": "a=1"})
    h = {k.lower(): v for k, v in r.json()["headers"].items()}
    print("get", r.http_version, r.status_code, r.headers.get("content-type"), h.get("x-api-key"))
    r = c.post("https://api.test:8443/body", json={"token": key})
    print("body", r.http_version, r.status_code)
    data = os.urandom(3000000)
    r = c.post("https://api.test:8443/upload", content=data)
    print("upload", r.http_version, r.status_code, r.json()["length"], r.json()["sha256"] == hashlib.sha256(data).hexdigest())
    r = c.post("https://api.test:8443/upload", content=iter([data[:1000000], data[1000000:]]))
    print("chunked", r.http_version, r.status_code, r.json()["length"], r.json()["sha256"] == hashlib.sha256(data).hexdigest())
with httpx.Client(http1=False, http2=True, verify=os.environ["SSL_CERT_FILE"], timeout=30) as c:
    r = c.get("https://other.test:8443/echo", headers={"x-api-key": key})
    print("other", r.http_version, r.status_code, r.text.strip())
    r = c.post("https://other.test:8443/body", content=b"k=" + key.encode())
    print("other_body", r.http_version, r.status_code)
'
	expect_eq status "$RC" 0
	expect_match "the key in a header, echoed scrubbed" "$OUT" "get HTTP/2 200 application/json SANDBOX_SECRET_[0-9a-f]{32}"
	[[ $(h1log) == *"x-api-key: $REAL"* ]] || fail "header: upstream got: $(h1log)"
	[[ $(h1log) == *"BODY api.test "*"{\"token\": \"$REAL\"}"* ]] || fail "body: upstream got: $(h1log)"
	expect_match "JSON body answered" "$OUT" "body HTTP/2 200"
	expect_match "3 MB streamed through intact" "$OUT" "upload HTTP/2 200 3000000 True"
	expect_match "a body of unknown length too" "$OUT" "chunked HTTP/2 200 3000000 True"
	expect_match "a placeholder toward another host: 403 on its stream" "$OUT" "other HTTP/2 403 matchlock: .*placeholder of secret API_KEY"
	expect_match "in a body too" "$OUT" "other_body HTTP/2 403"
	expect_match "secret_leak event" "$ERR" "secret_leak blocked GET https://other.test:8443/echo"
	[[ $(h1log) != *SANDBOX_SECRET_* ]] || fail "a placeholder reached an upstream: $(h1log)"
	[[ $(h1log) != *"other.test"*"$REAL"* ]] || fail "the key reached other.test: $(h1log)"
	expect_no_real
}

# An HTTP/1.1 guest (curl --http1.1) and an h2-only upstream: each request is one stream
# (proxy_up2.c's translation under proxy.c).
t_http1_guest_over_an_h2_only_upstream() {
	: >"$SRV/h2requests.log"
	ml run "${IMG[@]}" "${API[@]}" --allow-host other.test:9443 --add-host other.test:127.0.0.1 -- sh -c '
		head -c 3000000 /dev/urandom >/tmp/up; sha256sum /tmp/up | cut -c1-64
		curl --http1.1 -sS -w "\nproto=%{http_version}\n" -H "X-Api-Key: $API_KEY" \
			https://api.test:9443/echo https://api.test:9443/echo?second=1
		curl --http1.1 -sS -d "client_secret=$API_KEY" https://api.test:9443/echo; echo
		curl --http1.1 -sS --data-binary @/tmp/up https://api.test:9443/upload; echo
		curl --http1.1 -sS -H "Transfer-Encoding: chunked" --data-binary @/tmp/up https://api.test:9443/upload; echo
		curl --http1.1 -sS "https://api.test:9443/big?n=3000000" | wc -c
		curl --http1.1 -sS -w "\nother=%{http_code}\n" -H "X-Api-Key: $API_KEY" https://other.test:9443/echo
		curl --http1.1 -sS -o /dev/null -w "other_body=%{http_code}\n" -d "k=$API_KEY" https://other.test:9443/echo
		curl --http1.1 -sS -w "\nws=%{http_code}\n" -H "Connection: Upgrade" -H "Upgrade: websocket" \
			-H "Sec-WebSocket-Version: 13" -H "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" https://api.test:9443/ws'
	expect_eq status "$RC" 0
	local sum
	sum=$(sed -n 1p <<<"$OUT")
	expect_eq "HTTP/1.1 to the guest" "$(grep -c '^proto=1.1' <<<"$OUT")" 2
	[[ $(h2log) == *"x-api-key: $REAL"* ]] || fail "header: upstream got: $(h2log)"
	[[ $(h2log) == *":path: /echo?second=1"* ]] || fail "the second request: upstream got: $(h2log)"
	expect_eq "both on one upstream connection" "$(grep '^conn=' "$SRV/h2requests.log" | head -2 | cut -d' ' -f1 | sort -u | wc -l)" 1
	[[ $(h2log) == *"body: client_secret=$REAL"* ]] || fail "body: upstream got: $(h2log)"
	[[ $(h2log) != *"connection:"* && $(h2log) != *"host: "* ]] || fail "connection-specific fields went upstream: $(h2log)"
	expect_match "the echo scrubbed" "$OUT" '"x-api-key", "SANDBOX_SECRET_[0-9a-f]{32}"'
	expect_match "echoed body scrubbed" "$OUT" "client_secret=SANDBOX_SECRET_[0-9a-f]{32}"
	expect_eq "3 MB uploads streamed intact" "$(grep -c "\"length\": 3000000, \"sha256\": \"$sum\"" <<<"$OUT")" 2
	expect_match "3 MB download" "$OUT" $'\n'"3000000"$'\n'
	expect_match "a placeholder toward another host: 403" "$OUT" "other=403"
	expect_match "in a body too" "$OUT" "other_body=403"
	expect_match "a WebSocket upgrade cannot cross to h2: 501" "$OUT" "ws=501"
	expect_match "saying why" "$OUT" "WebSocket upgrade needs HTTP/1.1 to the upstream"
	expect_match "secret_leak event" "$ERR" "secret_leak blocked GET https://other.test:9443/echo"
	[[ $(h2log) != *SANDBOX_SECRET_* ]] || fail "a placeholder reached the upstream: $(h2log)"
	expect_no_real
}

t_h2_many_concurrent_streams_share_one_connection() {
	# 110 at once: more than the 100 concurrent streams the proxy allows (curl opens more
	# connections for the rest).
	: >"$SRV/h2requests.log"
	ml run "${IMG[@]}" "${API[@]}" -- sh -c 'urls=; for i in $(seq 1 110); do urls="$urls https://api.test:9443/echo?i=$i"; done
		curl --http2 -sS -Z --parallel-max 110 -H "X-Api-Key: $API_KEY" -w "status=%{http_code} proto=%{http_version}\n" -o /dev/null $urls'
	expect_eq status "$RC" 0
	expect_eq "answered over h2" "$(grep -c 'status=200 proto=2' <<<"$OUT")" 110
	expect_eq "requests" "$(grep -c '^conn=' "$SRV/h2requests.log")" 110
	local most
	most=$(grep '^conn=' "$SRV/h2requests.log" | cut -d' ' -f1 | sort | uniq -c | sort -rn | awk 'NR == 1 {print $1}')
	[ "$most" -ge 100 ] || fail "the busiest connection carried $most streams, not 100"
	expect_eq "the key on every stream" "$(grep -c "x-api-key: $REAL" "$SRV/h2requests.log")" 110
	expect_no_real
}

t_h2_bodies_stream_both_ways_with_trailers() {
	ml run "${IMG[@]}" "${API[@]}" -- sh -c '
		head -c 3000000 /dev/urandom >/tmp/up; sha256sum /tmp/up | cut -c1-64
		curl --http2 -sS --data-binary @/tmp/up https://api.test:9443/upload; echo
		curl --http2 -sS "https://api.test:9443/big?n=4000000" | wc -c
		curl --http2 -sS -D /tmp/h -o /tmp/b -H "X-Api-Key: $API_KEY" https://api.test:9443/trailers; cat /tmp/h'
	expect_eq status "$RC" 0
	local sum
	sum=$(sed -n 1p <<<"$OUT")
	expect_match "upload streamed intact" "$OUT" "\"length\": 3000000, \"sha256\": \"$sum\""
	expect_match "download streamed" "$OUT" $'\n'"4000000"$'\n'
	expect_match "trailer passed" "$OUT" "grpc-status: 0"
	expect_match "trailer scrubbed" "$OUT" "x-trailer-key: SANDBOX_SECRET_[0-9a-f]{32}"
	expect_no_real
}

t_h2_upstream_reset_and_goaway_reach_the_guest() {
	ml run "${IMG[@]}" "${API[@]}" -- sh -c '
		curl --http2 -sS https://api.test:9443/reset; echo "reset=$?"
		curl --http2 -sS -o /dev/null -w "goaway=%{http_code}\n" https://api.test:9443/goaway https://api.test:9443/echo'
	expect_match "RST_STREAM passed on" "$OUT" "reset=92"
	expect_match "the answer before GOAWAY" "$OUT" "goaway=200"
	expect_eq "the request after GOAWAY (a new connection)" "$(grep -c 'goaway=200' <<<"$OUT")" 2
}

t_grpc_unary_streaming_and_bidi_calls_with_the_key_in_metadata() {
	[ ${#CLIENTS[@]} -gt 0 ] || skip "no matchlock/clients image (make client-image)"
	: >"$SRV/grpc.log"
	ml run "${CLIENTS[@]}" "${API[@]}" --allow-host other.test:9445 --add-host other.test:127.0.0.1 \
		-e GRPC_DNS_RESOLVER=native -- python3 -c '
import os, grpc
ca = open(os.environ["SSL_CERT_FILE"], "rb").read()
def chan(host):
    return grpc.secure_channel(host + ":9445", grpc.ssl_channel_credentials(ca))
key = os.environ["API_KEY"]
md = (("x-api-key", key),)
ch = chan("api.test")
r, call = ch.unary_unary("/test.Echo/Unary").with_call(b"hi " + key.encode(), metadata=md, timeout=30)
print("unary:", r.decode())
print("trailer:", dict(call.trailing_metadata()).get("x-trailer-key"))
print("empty:", ch.unary_unary("/test.Echo/Unary")(b"", metadata=md, timeout=30).decode())
for m in ch.unary_stream("/test.Echo/Stream")(b"s", metadata=md, timeout=30):
    print("stream:", m.decode())
for m in ch.stream_stream("/test.Echo/Bidi")(iter([b"a", b"b", b"c"]), metadata=md, timeout=30):
    print("bidi:", m.decode())
try:
    chan("other.test").unary_unary("/test.Echo/Unary")(b"x", metadata=md, timeout=30)
    print("other: answered")
except grpc.RpcError as e:
    print("other:", e.code())
'
	expect_eq status "$RC" 0
	[ "$(grep -c "x-api-key: $REAL" "$SRV/grpc.log")" = 4 ] || fail "metadata: upstream got: $(cat "$SRV/grpc.log")"
	grep -q "msg: hi $REAL" "$SRV/grpc.log" || fail "message: upstream got: $(cat "$SRV/grpc.log")"
	grep -q SANDBOX_SECRET_ "$SRV/grpc.log" && fail "a placeholder reached the upstream: $(cat "$SRV/grpc.log")"
	expect_match "unary, message re-framed and scrubbed" "$OUT" "unary: unary got hi SANDBOX_SECRET_[0-9a-f]{32} key=SANDBOX_SECRET_[0-9a-f]{32}"
	expect_match "trailing metadata scrubbed" "$OUT" "trailer: SANDBOX_SECRET_[0-9a-f]{32}"
	expect_match "an empty message" "$OUT" "empty: unary got  key=SANDBOX_SECRET_[0-9a-f]{32}"
	expect_eq "server streaming" "$(grep -c '^stream: msg [0-4] key=SANDBOX_SECRET_' <<<"$OUT")" 5
	expect_eq "bidi streaming" "$(grep -c '^bidi: echo [abc] key=SANDBOX_SECRET_' <<<"$OUT")" 3
	expect_match "metadata toward another host refused" "$OUT" "other: StatusCode.PERMISSION_DENIED"
	expect_match "secret_leak event" "$ERR" "secret_leak blocked POST https://other.test:9445/test.Echo/Unary"
	expect_no_real
}

run_tests "$@"
