#!/bin/bash
# Secrets never enter the VM: TLS interception and in-flight secret injection, end to end.
#
# Runs in private mount and network namespaces (unshare -mn) like test_net.sh. An HTTPS "API"
# (tests/integration/secrets_server.py) with its own test CA listens on the private loopback;
# matchlock trusts that CA through --upstream-ca and pins the names with --add-host. The server
# logs what it received, so the tests see what actually left the host.
. "$(dirname "$0")/netns.sh"
. "$(dirname "$0")/lib.sh"

SRV=$T_OUT/srv
mkdir -p "$SRV"
python3 "$ROOT/tests/integration/secrets_server.py" "$SRV" &
SRV_PID=$!
trap 'kill $SRV_PID 2>/dev/null; "$ML" kill --all >/dev/null 2>&1; rm -rf "$MATCHLOCK_HOME" "$T_OUT"' EXIT
for _ in $(seq 100); do [ -e "$SRV/ready" ] && break; sleep 0.1; done
[ -e "$SRV/ready" ] || { echo "servers did not start"; echo "0 passed, 1 failed"; exit 1; }

# The default image (curl, python3) for clients that verify certificates: `make test` builds
# the cached tarball first (this suite runs where the package archive is out of reach).
ML="$ML" "$ROOT/scripts/default-image.sh" >/dev/null 2>&1 || { echo "no default image (make default-image)"; echo "0 passed, 1 failed"; exit 1; }
IMG=(--image matchlock/default)

export API_KEY="sk-live-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
REAL=$API_KEY
# A bare host opens 443 only (and 80): the test server's ports are named.
API=(--secret API_KEY@api.test:8443 --allow-host api.test:8080 --add-host api.test:127.0.0.1 --upstream-ca "$SRV/ca.pem")
log() { cat "$SRV/requests.log" 2>/dev/null; }
count() { cat "$SRV/$1.count" 2>/dev/null || echo 0; }
# No output of ours may carry the real value.
expect_no_real() { [[ $OUT$ERR != *"$REAL"* ]] || fail "the real secret reached the guest or the terminal"; }

t_guest_sees_only_the_placeholder() {
	ml run --rootfs "$ROOTFS" "${API[@]}" -- sh -c 'echo "key=$API_KEY"; cat /proc/cmdline; env; echo "ca=$SSL_CERT_FILE"; grep -c BEGIN "$SSL_CERT_FILE"'
	expect_eq status "$RC" 0
	expect_match "placeholder" "$OUT" "key=SANDBOX_SECRET_[0-9a-f]{32}"$'\n'
	expect_match "CA bundle variable" "$OUT" "ca=/etc/ssl/matchlock-bundle.pem"
	expect_no_real
}

t_real_key_in_header_basic_auth_and_query_over_tls() {
	: >"$SRV/requests.log"
	ml run "${IMG[@]}" "${API[@]}" -- sh -c 'curl -sS -H "X-Api-Key: $API_KEY" "https://api.test:8443/echo?key=$API_KEY&v=1"; echo
		curl -sS -u "user:$API_KEY" https://api.test:8443/echo; echo
		python3 -c "import os,urllib.request as u; print(u.urlopen(u.Request(\"https://api.test:8443/echo\", headers={\"Authorization\": \"Bearer \"+os.environ[\"API_KEY\"]})).read().decode())"'
	expect_eq status "$RC" 0
	local basic
	basic=$(printf 'user:%s' "$REAL" | base64 -w0)
	[[ $(log) == *"X-Api-Key: $REAL"* ]] || fail "header: upstream got: $(log)"
	[[ $(log) == *"GET /echo?key=$REAL&v=1"* ]] || fail "query: upstream got: $(log)"
	[[ $(log) == *"Authorization: Basic $basic"* ]] || fail "basic auth: upstream got: $(log)"
	[[ $(log) == *"Authorization: Bearer $REAL"* ]] || fail "python bearer: upstream got: $(log)"
	[[ $(log) != *SANDBOX_SECRET_* ]] || fail "a placeholder reached the upstream"
	# The echo carried the real value back: the guest saw the placeholder instead.
	expect_match "echo scrubbed" "$OUT" '"X-Api-Key": "SANDBOX_SECRET_[0-9a-f]{32}"'
	expect_no_real
}

t_placeholder_to_another_allowed_host_is_blocked() {
	local before
	before=$(count 8443)
	ml run "${IMG[@]}" "${API[@]}" --allow-host other.test:8443 --add-host other.test:127.0.0.1 -- sh -c \
		'curl -sS -w "status=%{http_code}\n" -H "X-Api-Key: $API_KEY" https://other.test:8443/echo
		 curl -sS -w "status=%{http_code}\n" -o /dev/null https://other.test:8443/echo
		 curl -sS -w "status=%{http_code}\n" -H "X-Api-Key: $API_KEY" https://unlisted.test/; echo "unlisted=$?"'
	expect_match "403" "$OUT" "status=403"
	expect_match "body names the rule" "$OUT" "placeholder of secret API_KEY, which may only be sent to api.test"
	expect_match "a clean request still works" "$OUT" "status=200"
	expect_match "unlisted host: no name" "$OUT" "unlisted=6"
	expect_match "secret_leak event" "$ERR" "secret_leak blocked GET https://other.test:8443/echo"
	expect_eq "requests that reached the server" "$(count 8443)" "$((before + 1))"
	expect_no_real
}

t_reflecting_upstream_gives_back_no_encoding_of_the_value() {
	# A value with characters every encoding changes; the upstream echoes the request in raw,
	# percent, JSON and base64 forms (headers, Basic token, query). The guest prints it all and
	# the host looks for the value in every decoding it can think of.
	local v="sk/live+$(head -c 9 /dev/urandom | od -An -tx1 | tr -d ' \n')&=\"q~"
	: >"$SRV/requests.log"
	RFL_KEY=$v ml run "${IMG[@]}" --secret RFL_KEY@api.test:8443 --add-host api.test:127.0.0.1 \
		--upstream-ca "$SRV/ca.pem" -- sh -c 'curl -sS -i -u "user:$RFL_KEY" -H "X-Api-Key: $RFL_KEY" \
		-H "X-Prefixed: ab$RFL_KEY" "https://api.test:8443/reflect?key=$RFL_KEY&v=1"'
	expect_eq status "$RC" 0
	# The upstream did get the value (in the header, the Basic token and the query).
	[[ $(log) == *"X-Api-Key: $v"* ]] || fail "header: upstream got: $(log)"
	expect_match "the reflection arrived" "$OUT" "X-Reflect-Auth: Basic "
	local found
	found=$(V="$v" python3 -c '
import base64, os, re, sys, urllib.parse
v = os.environ["V"]; mid = v[2:-2]; t = sys.stdin.read()
cands = [t, urllib.parse.unquote(t), t.replace("\\\"", "\"").replace("\\/", "/").replace("\\\\", "\\")]
for run in re.findall(r"[A-Za-z0-9+/_-]{8,}", t):
    for off in range(4):
        r = run[off:].replace("-", "+").replace("_", "/")
        r = r[: len(r) // 4 * 4]
        try:
            cands.append(base64.b64decode(r).decode("latin-1"))
        except Exception:
            pass
print("yes" if any(mid in c for c in cands) else "no")' <<<"$OUT")
	expect_eq "the value (all but 2 bytes at each end) recoverable from the guest's copy" "$found" "no"
	[[ $OUT == *"$v"* ]] && fail "the literal value reached the guest"
	return 0
}

t_placeholder_over_plain_http_is_refused() {
	local before
	before=$(count 8080)
	# (the body goes to another name: repeated denials of one name are only counted)
	ml run --rootfs "$ROOTFS" "${API[@]}" --allow-host other.test:8080 --add-host other.test:127.0.0.1 -- sh -c \
		'wget -qO- "http://api.test:8080/echo?k=$API_KEY"; echo "wget=$?"
		wget -qO- --post-data "client_secret=$API_KEY" http://other.test:8080/body/plain; echo "post=$?"'
	expect_match "refused" "$OUT" "wget=1"
	expect_match "reason" "$ERR" "placeholder of secret API_KEY over plain HTTP"
	expect_match "body refused" "$OUT" "post=1"
	expect_match "body reason" "$ERR" "request body carries the placeholder of secret API_KEY over plain HTTP"
	[[ $(log) != *"BODY other.test"* ]] || fail "a plain-HTTP body with a placeholder completed: $(log)"
	[ "$(count 8080)" -le "$((before + 1))" ] || fail "plain requests reached the server: $(count 8080)"
}

t_busybox_wget_over_tls() {
	: >"$SRV/requests.log"
	ml run --rootfs "$ROOTFS" "${API[@]}" -- sh -c 'wget -qO- --header "X-Api-Key: $API_KEY" https://api.test:8443/echo'
	expect_eq status "$RC" 0
	[[ $(log) == *"X-Api-Key: $REAL"* ]] || fail "upstream got: $(log)"
	expect_match "scrubbed" "$OUT" '"X-Api-Key": "SANDBOX_SECRET_'
	expect_no_real
}

t_sse_streams_and_websocket_round_trips() {
	local sid=$RANDOM$RANDOM
	ml run "${IMG[@]}" "${API[@]}" -- python3 -c '
import base64, os, socket, ssl, sys, urllib.request as u
sid = sys.argv[1]
r = u.urlopen("https://api.test:8443/sse?id=" + sid)
first = r.readline().decode().strip(); r.readline()
u.urlopen("https://api.test:8443/ack?id=" + sid).read()
second = r.readline().decode().strip()
print("sse:", first, "|", second)
s = ssl.create_default_context().wrap_socket(socket.create_connection(("api.test", 8443)), server_hostname="api.test")
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET /ws HTTP/1.1\r\nHost: api.test:8443\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(1)
print("ws status:", head.split(b"\r\n")[0].decode())
for msg in (b"hello", b"again"):
    mask = os.urandom(4)
    s.sendall(bytes([0x81, 0x80 | len(msg)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(msg)))
    h = s.recv(2)
    print("ws:", s.recv(h[1] & 127).decode())
' "$sid"
	expect_eq status "$RC" 0
	expect_match "SSE first event before the ack" "$OUT" "sse: data: first \| data: second acked"
	expect_match "101" "$OUT" "ws status: HTTP/1.1 101"
	expect_match "ws 1" "$OUT" "ws: echo: hello"
	expect_match "ws 2" "$OUT" "ws: echo: again"
}

t_keepalive_chunked_upload_and_expect_continue() {
	head -c 300000 /dev/urandom >"$T_OUT/blob"
	ml run "${IMG[@]}" "${API[@]}" -- sh -c '
		head -c 300000 /dev/zero >/tmp/z; sha256sum /tmp/z | cut -c1-64
		curl -sS -H "Expect: 100-continue" --data-binary @/tmp/z https://api.test:8443/upload; echo
		curl -sS -H "Transfer-Encoding: chunked" --data-binary @/tmp/z https://api.test:8443/upload; echo
		python3 -c "
import http.client, ssl
c = http.client.HTTPSConnection(\"api.test\", 8443, context=ssl.create_default_context())
for i in range(3):
    c.request(\"GET\", \"/echo?i=%d\" % i); r = c.getresponse(); r.read(); print(\"keepalive\", i, r.status)
"'
	expect_eq status "$RC" 0
	local sum
	sum=$(sed -n 1p <<<"$OUT")
	[ "$(grep -c "\"length\": 300000, \"sha256\": \"$sum\"" <<<"$OUT")" = 2 ] || fail "uploads: $OUT"
	# api.test has a secret: a body up to 1 MiB is held whole, so the proxy says 100 Continue
	# itself and the upstream gets the body with its Content-Length and no Expect.
	expect_match "held body re-sent with its length" "$(log)" "Content-Length: 300000"
	[[ $(log) != *"Expect: 100-continue"* ]] || fail "Expect went upstream with a held body"
	expect_match "chunked sent" "$(log)" "Transfer-Encoding: chunked"
	expect_match "keep-alive" "$OUT" "keepalive 2 200"
}

t_malformed_request_400_and_host_mismatch_403() {
	ml run "${IMG[@]}" "${API[@]}" -- python3 -c '
import socket, ssl
def send(raw):
    s = ssl.create_default_context().wrap_socket(socket.create_connection(("api.test", 8443)), server_hostname="api.test")
    s.sendall(raw)
    out = b""
    while True:
        b = s.recv(4096)
        if not b: break
        out += b
    return out.split(b"\r\n")[0].decode()
print("smuggle:", send(b"POST /echo HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"))
print("mismatch:", send(b"GET /echo HTTP/1.1\r\nHost: other.test\r\n\r\n"))
print("huge:", send(b"GET /echo HTTP/1.1\r\nHost: api.test\r\nX: " + b"a" * 20000 + b"\r\n\r\n"))
print("after:", send(b"GET /echo HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n"))
'
	expect_eq status "$RC" 0
	expect_match "ambiguous framing" "$OUT" "smuggle: HTTP/1.1 400"
	expect_match "Host must match SNI" "$OUT" "mismatch: HTTP/1.1 403"
	expect_match "bounded head" "$OUT" "huge: HTTP/1.1 400"
	expect_match "still serving" "$OUT" "after: HTTP/1.1 200"
}

t_untrusted_upstream_is_refused() {
	local before
	before=$(count 8444)
	ml run "${IMG[@]}" "${API[@]}" --allow-host evil.test:8444 --add-host evil.test:127.0.0.1 -- sh -c \
		'curl -sS -w "status=%{http_code}\n" -H "X-Api-Key: $API_KEY" https://evil.test:8444/echo'
	expect_match "502" "$OUT" "status=502"
	expect_match "why" "$OUT" "upstream evil.test is not trusted"
	expect_eq "requests that reached the untrusted server" "$(count 8444)" "$before"
}

t_secret_file_get_redacted_and_nothing_on_disk() {
	printf '%s\n' "$REAL-file" >"$T_OUT/keyfile"
	ml run -d --rootfs "$ROOTFS" --secret-file FILE_KEY="$T_OUT/keyfile"@api.test "${API[@]}" \
		--add-host api.test:127.0.0.1
	expect_eq status "$RC" 0
	local id=$OUT
	ml get "$id"
	expect_match "redacted" "$OUT" '"API_KEY":\{"value":"<redacted>","hosts":\["api.test:8443"\]\}'
	ml exec "$id" -- sh -c 'echo "$FILE_KEY"; wget -qO- --header "X: $FILE_KEY" https://api.test:8443/echo >/dev/null; echo "wget=$?"'
	expect_match "file secret placeholder" "$OUT" "^SANDBOX_SECRET_[0-9a-f]{32}"
	expect_match "request" "$OUT" "wget=0"
	[[ $(log) == *"X: $REAL-file"* ]] || fail "upstream did not get the file secret"
	grep -rF -- "$REAL" "$MATCHLOCK_HOME" && fail "the secret is in a file under MATCHLOCK_HOME"
	grep -qF -- "$REAL" "/proc/$(pgrep -f "run -d --rootfs $ROOTFS --secret-file" | head -1)/cmdline" 2>/dev/null &&
		fail "the secret is in the supervisor's command line"
	pgrep -a qemu-system | grep -qF -- "$REAL" && fail "the secret is in QEMU's command line"
	ml kill "$id"
	grep -rF -- "$REAL" "$MATCHLOCK_HOME" && fail "the secret is in a file under MATCHLOCK_HOME after the run"
	return 0
}

t_secret_flag_errors() {
	ml run --rootfs "$ROOTFS" --secret UNSET_KEY_XYZ@api.test -- true
	expect_one_line_error
	expect_match "unset" "$ERR" 'UNSET_KEY_XYZ is not set'
	ml run --rootfs "$ROOTFS" --secret 'K=v@' -- true
	expect_one_line_error
	ml run --rootfs "$ROOTFS" --upstream-ca /nonexistent.pem -- true
	expect_one_line_error
}

# Bodies: an OAuth client-credentials form (Content-Length: held, re-sent with its new length),
# JSON sent chunked with the placeholder split across chunks, a chunked body whose trailer
# carries it, the same bodies toward another allowed host (refused: secret_leak), and gzip
# request bodies (only inspected: a placeholder in one is refused, a clean one passes as sent;
# a coding the proxy cannot decode is refused).
t_request_bodies_get_the_value_toward_its_host_only() {
	: >"$SRV/requests.log"
	ml run "${IMG[@]}" "${API[@]}" --allow-host other.test:8443 --add-host other.test:127.0.0.1 -- python3 -c '
import gzip, hashlib, http.client, os, socket, ssl
ph = os.environ["API_KEY"]
ctx = ssl.create_default_context()
def post(name, host, path, body, ctype, extra={}):
    c = http.client.HTTPSConnection(host, 8443, context=ctx, timeout=60)
    try:
        h = {"Content-Type": ctype}; h.update(extra)
        c.request("POST", path, body=body, headers=h, encode_chunked=not isinstance(body, bytes))
        r = c.getresponse(); text = r.read().decode()
        print(name, r.status, text.replace("\n", " ")[:300])
    except Exception as e:
        print(name, "error", type(e).__name__)
form = ("grant_type=client_credentials&client_id=app&client_secret=" + ph).encode()
js = ("{\"api_key\": \"" + ph + "\", \"n\": 1}").encode()
post("form", "api.test", "/body/form", form, "application/x-www-form-urlencoded")
post("json-chunked", "api.test", "/body/json", iter([js[:20], js[20:30], js[30:]]), "application/json")
s = ctx.wrap_socket(socket.create_connection(("api.test", 8443)), server_hostname="api.test")
s.sendall(b"POST /body/trailer HTTP/1.1\r\nHost: api.test:8443\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
p = ("a=" + ph).encode()
s.sendall(b"%x\r\n%s\r\n" % (12, p[:12]) + b"%x\r\n%s\r\n" % (len(p) - 12, p[12:]))
s.sendall(b"0\r\nX-Sig: " + ph.encode() + b"\r\n\r\n")
out = b""
while True:
    b = s.recv(4096)
    if not b: break
    out += b
print("trailer", out.split(b"\r\n")[0].decode())
post("other-form", "other.test", "/body/leak", form, "application/x-www-form-urlencoded")
post("other-chunked", "other.test", "/body/leak2", iter([js[:25], js[25:]]), "application/json")
z = gzip.compress(js)
post("gzip-placeholder", "api.test", "/body/gz", z, "application/json", {"Content-Encoding": "gzip"})
post("gzip-other", "other.test", "/body/gz2", z, "application/json", {"Content-Encoding": "gzip"})
clean = gzip.compress(b"{\"n\": 2}" * 1000)
print("clean-sha", hashlib.sha256(clean).hexdigest())
post("gzip-clean", "api.test", "/upload", clean, "application/json", {"Content-Encoding": "gzip"})
post("compress", "api.test", "/body/compress", b"xx", "application/json", {"Content-Encoding": "compress"})
post("compress-leak", "other.test", "/body/c2", b"xx", "application/json", {"Content-Encoding": "compress", "X-Key": ph})
'
	expect_eq status "$RC" 0
	local l
	l=$(log)
	[[ $l == *"BODY api.test "*": grant_type=client_credentials&client_id=app&client_secret=$REAL"$'\n'* ]] || fail "form: upstream got: $l"
	[[ $l == *"BODY api.test "*": {\"api_key\": \"$REAL\", \"n\": 1}"* ]] || fail "chunked JSON: upstream got: $l"
	[[ $l == *"BODY api.test "*": a=$REAL"$'\n'"TRAILERS: X-Sig: $REAL"* ]] || fail "trailer: upstream got: $l"
	expect_match "form" "$OUT" "form 200"
	expect_match "chunked" "$OUT" "json-chunked 200"
	expect_match "trailer" "$OUT" "trailer HTTP/1.1 200"
	expect_match "other host refused" "$OUT" "other-form 403 matchlock: request to other.test blocked: its body carries the placeholder of secret API_KEY"
	expect_match "other host refused (chunked)" "$OUT" "other-chunked (403|error)"
	expect_match "secret_leak event" "$ERR" "secret_leak blocked POST https://other.test:8443/body/leak"
	[[ $l != *"BODY other.test"* ]] || fail "a body with the placeholder completed toward other.test: $l"
	expect_match "gzip body with a placeholder" "$OUT" "gzip-placeholder 415"
	expect_match "gzip body toward another host" "$OUT" "gzip-other 403"
	local sum
	sum=$(sed -n 's/^clean-sha //p' <<<"$OUT")
	expect_match "clean gzip body passes as sent" "$OUT" "gzip-clean 200 .*\"sha256\": \"$sum\""
	expect_match "undecodable coding refused" "$OUT" "compress 415"
	expect_match "a leak in the head wins over the body's refusal" "$OUT" "compress-leak 403 .*secret_leak"
	[[ $l != *SANDBOX_SECRET_* ]] || fail "a placeholder reached the upstream"
	expect_no_real
}

# 20 MB with the placeholder near the end, toward the secret's host: re-sent chunked with the
# value in, while the supervisor's memory stays flat (sampled from /proc during the upload);
# then toward another allowed host: cut off at the placeholder.
t_large_body_streams_with_bounded_memory() {
	: >"$SRV/requests.log"
	local want
	want=$(V="$REAL" python3 -c 'import hashlib, os; print(hashlib.sha256(b"a" * 20000000 + b" key=" + os.environ["V"].encode() + b" end").hexdigest())')
	"$ML" run "${IMG[@]}" "${API[@]}" --allow-host other.test:8443 --add-host other.test:127.0.0.1 -- sh -c 'python3 -c "
import os, sys
sys.stdout.buffer.write(b\"a\" * 20000000 + b\" key=\" + os.environ[\"API_KEY\"].encode() + b\" end\")" >/tmp/big
		curl -sS --data-binary @/tmp/big -H "Content-Type: application/octet-stream" https://api.test:8443/upload; echo
		curl -sS -w "other=%{http_code}\n" --data-binary @/tmp/big https://other.test:8443/body/big' \
		>"$T_OUT/out" 2>"$T_OUT/err" &
	local pid=$! peak=0 rss
	while kill -0 "$pid" 2>/dev/null; do
		rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
		[ "${rss:-0}" -gt "$peak" ] && peak=$rss
		sleep 0.2
	done
	wait "$pid"
	RC=$?
	OUT=$(cat "$T_OUT/out")
	ERR=$(cat "$T_OUT/err")
	echo "    supervisor peak RSS during a 20 MB upload: $((peak / 1024)) MiB"
	expect_eq status "$RC" 0
	expect_match "upstream got the body with the value" "$OUT" "\"length\": $((20000000 + 5 + ${#REAL} + 4)), \"sha256\": \"$want\""
	[ "$peak" -lt $((96 * 1024)) ] || fail "supervisor RSS peaked at $((peak / 1024)) MiB"
	# Toward another host the body streams until the placeholder: then the upstream is reset
	# (its request never completes) and the guest gets the 403.
	expect_match "other host refused" "$OUT" "other=403"
	expect_match "the upstream's request was cut" "$(log)" "CUT other.test /body/big"
	[[ $(log) != *"BODY other.test"* ]] || fail "the body completed toward other.test"
	expect_no_real
}

# An upstream that compresses whatever the request said: a gzip, deflate, br or zstd body is
# decoded, scrubbed and encoded again (the guest prints what it got, base64; the host decodes br
# and zstd with the libraries); a coding the proxy cannot decode is not passed at all.
t_compressed_responses_are_scrubbed() {
	ml run "${IMG[@]}" "${API[@]}" -- python3 -c '
import base64, gzip, http.client, os, ssl, zlib
ctx = ssl.create_default_context()
for coding in ("gzip", "deflate", "br", "zstd", "compress"):
    c = http.client.HTTPSConnection("api.test", 8443, context=ctx, timeout=60)
    c.request("GET", "/gzip?coding=" + coding, headers={"X-Api-Key": os.environ["API_KEY"], "Accept-Encoding": "gzip"})
    r = c.getresponse(); raw = r.read()
    if r.status != 200:
        print(coding, r.status, raw.decode()); continue
    print(coding, r.status, r.getheader("Content-Encoding"), base64.b64encode(raw).decode())
'
	expect_eq status "$RC" 0
	local decoded
	decoded=$(python3 -c '
import base64, ctypes, gzip, sys, zlib
def unbr(b):
    lib = ctypes.CDLL("libbrotlidec.so.1"); out = ctypes.create_string_buffer(1 << 20); n = ctypes.c_size_t(len(out))
    return out.raw[:n.value] if lib.BrotliDecoderDecompress(ctypes.c_size_t(len(b)), b, ctypes.byref(n), out) == 1 else b"br failed"
def unzstd(b):
    lib = ctypes.CDLL("libzstd.so.1"); lib.ZSTD_decompress.restype = ctypes.c_size_t
    out = ctypes.create_string_buffer(1 << 20); n = lib.ZSTD_decompress(out, ctypes.c_size_t(len(out)), b, ctypes.c_size_t(len(b)))
    return out.raw[:n] if n < len(out) else b"zstd failed"
dec = {"gzip": gzip.decompress, "deflate": zlib.decompress, "br": unbr, "zstd": unzstd}
for line in sys.stdin:
    f = line.split(" ", 3)
    if len(f) == 4 and f[1] == "200":
        print(f[0], f[2], dec[f[0]](base64.b64decode(f[3])).decode())' <<<"$OUT")
	local c
	for c in gzip deflate br zstd; do
		expect_match "$c scrubbed" "$decoded" "$c $c .*\"X-Api-Key\": \"SANDBOX_SECRET_[0-9a-f]{32}\""
	done
	[[ $decoded != *"$REAL"* ]] || fail "a real value reached the guest compressed: $decoded"
	expect_match "an unknown coding refused" "$OUT" "compress 502 .*cannot decode"
	expect_no_real
}

# A keep-alive connection through the proxy that stays idle is closed (the test shortens the
# idle limit through the supervisor's environment; only "it closed" is asserted, never when).
t_idle_intercepted_connection_is_closed() {
	MATCHLOCK_PROXY_IDLE_TIMEOUT=2 ml run "${IMG[@]}" "${API[@]}" -- python3 -c '
import socket, ssl, time
s = ssl.create_default_context().wrap_socket(socket.create_connection(("api.test", 8443)), server_hostname="api.test")
s.sendall(b"GET /echo HTTP/1.1\r\nHost: api.test:8443\r\n\r\n")
got = b""
while b"}" not in got:
    got += s.recv(4096)
print("first:", got.split(b"\r\n")[0].decode())
s.settimeout(5)
end = time.time() + 120
state = "open"
while time.time() < end:
    try:
        if s.recv(4096) == b"":
            state = "closed"; break
    except socket.timeout:
        continue
    except (ConnectionError, ssl.SSLError) as e:
        state = "closed (%s)" % type(e).__name__; break
print("idle connection:", state)
'
	expect_eq status "$RC" 0
	expect_match "served" "$OUT" "first: HTTP/1.1 200"
	expect_match "closed" "$OUT" "idle connection: closed"
}

# A connection kept busy is still ended once it is older than the lifetime limit (the idle limit
# is off here, so only the lifetime can end it; only "it ended" is asserted, never when).
t_busy_intercepted_connection_ends_at_its_lifetime() {
	MATCHLOCK_PROXY_IDLE_TIMEOUT=0 MATCHLOCK_PROXY_MAX_LIFETIME=3 ml run "${IMG[@]}" "${API[@]}" -- python3 -c '
import http.client, ssl, time
c = http.client.HTTPSConnection("api.test", 8443, context=ssl.create_default_context(), timeout=30)
n, end, state = 0, time.time() + 120, "open"
while time.time() < end:
    try:
        c.request("GET", "/echo?n=%d" % n); r = c.getresponse(); r.read(); n += 1
    except (ConnectionError, http.client.HTTPException, ssl.SSLError) as e:
        state = "ended (%s)" % type(e).__name__; break
    time.sleep(0.2)
print("requests:", n, "busy connection:", state)
'
	expect_eq status "$RC" 0
	expect_match "served first" "$OUT" "requests: [1-9]"
	expect_match "ended" "$OUT" "busy connection: ended"
	expect_match "log says why" "$ERR" "connection closed: open for more than 3 s"
}

# `git clone https://x:PLACEHOLDER@host/repo.git` against `git http-backend` behind Basic auth:
# git sends the placeholder in its Basic token after the 401, the proxy swaps the real value in,
# the clone and a push work, and the server saw only the real value.
t_git_clone_and_push_with_a_placeholder_in_the_url() {
	local repos=$T_OUT/repos gs
	git init -q --bare "$repos/repo.git" && git -C "$repos/repo.git" config http.receivepack true
	git -C "$T_OUT" init -q seed && (cd "$T_OUT/seed" && echo hello >README &&
		git add README && git -c user.name=t -c user.email=t@t commit -qm first &&
		git push -q "$repos/repo.git" HEAD:refs/heads/main) || fail "seed repository"
	git -C "$repos/repo.git" symbolic-ref HEAD refs/heads/main
	printf '%s' "$REAL" >"$SRV/git.password"
	: >"$SRV/git.log"
	python3 "$ROOT/tests/integration/git_server.py" "$SRV" 8445 "$repos" &
	gs=$!
	for _ in $(seq 100); do [ -e "$SRV/git.ready" ] && break; sleep 0.1; done
	ml run "${IMG[@]}" --secret API_KEY@api.test:8445 --add-host api.test:127.0.0.1 \
		--upstream-ca "$SRV/ca.pem" -- sh -c 'cd /tmp && git clone -q "https://x:$API_KEY@api.test:8445/repo.git" r &&
		cat r/README && cd r && echo more >>README && git -c user.name=g -c user.email=g@g commit -qam second &&
		git push -q origin HEAD:main && echo pushed; git remote get-url origin'
	kill $gs 2>/dev/null
	wait $gs 2>/dev/null
	expect_eq status "$RC" 0
	expect_match "cloned" "$OUT" "^hello"
	expect_match "pushed" "$OUT" "pushed"
	expect_match "the guest keeps the placeholder" "$OUT" "https://x:SANDBOX_SECRET_[0-9a-f]{32}@api.test:8445/repo.git"
	expect_eq "the push reached the host" "$(git -C "$repos/repo.git" log --format=%s main | head -1)" second
	local basic
	basic=$(printf 'x:%s' "$REAL" | base64 -w0)
	grep -q "Basic $basic" "$SRV/git.log" || fail "the server never got the real value: $(cat "$SRV/git.log")"
	! grep -q SANDBOX_SECRET_ "$SRV/git.log" || fail "a placeholder reached the git server"
	expect_no_real
}

run_tests "$@"
