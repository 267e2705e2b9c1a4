#!/bin/bash
# WebSockets through the TLS-intercepting proxy, end to end: python3-websockets in the
# matchlock/clients image against a WebSocket echo server on the private loopback of the
# suite's network namespace (tests/integration/ws_server.py, standard library), which logs what
# it received and answers every message with the real secret value in it, split across two
# fragments. The guest sends the placeholder; the upstream must see the value, the guest never.
. "$(dirname "$0")/netns.sh"
. "$(dirname "$0")/lib.sh"

SRV=$T_OUT/srv
mkdir -p "$SRV"
export API_KEY="sk-ws-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
REAL=$API_KEY
python3 "$ROOT/tests/integration/secrets_server.py" "$SRV" & # makes the certificates
PIDS=$!
trap 'kill $PIDS 2>/dev/null; "$ML" kill --all >/dev/null 2>&1; rm -rf "$MATCHLOCK_HOME" "$T_OUT"' EXIT
for _ in $(seq 100); do [ -e "$SRV/ready" ] && break; sleep 0.1; done
python3 "$ROOT/tests/integration/ws_server.py" "$SRV" 9446 "$REAL" 9447 &
PIDS="$PIDS $!"
for _ in $(seq 100); do [ -e "$SRV/wsready" ] && break; sleep 0.1; done
[ -e "$SRV/ready" ] && [ -e "$SRV/wsready" ] || { echo "servers did not start"; echo "0 passed, 1 failed"; exit 1; }

# The test-client image (python3-websockets): `make test` builds it with the default image.
CLIENTS=(--image matchlock/clients)
ML="$ML" "$ROOT/scripts/default-image.sh" clients >/dev/null 2>&1 || CLIENTS=()
API=(--secret API_KEY@api.test:9446 --add-host api.test:127.0.0.1 --upstream-ca "$SRV/ca.pem"
	--allow-host other.test:9446,api.test:9447 --add-host other.test:127.0.0.1)
wslog() { cat "$SRV/ws.log" 2>/dev/null; }
# logged ERE: the server logged a line matching it ("msg N: ...", see ws_server.py).
logged() { grep -qE "$1" "$SRV/ws.log" 2>/dev/null || fail "the upstream logged no /$1/: $(wslog)"; }
expect_no_real() { [[ $OUT$ERR != *"$REAL"* ]] || fail "the real secret reached the guest or the terminal"; }

# The guest's client: python3 -c "$CLIENT" TEST, see the cases below.
CLIENT='
import asyncio, os, ssl, sys, websockets
key = os.environ["API_KEY"]
ctx = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])

async def echo():
    async with websockets.connect("wss://api.test:9446/echo", ssl=ctx) as ws:
        await ws.send("hello " + key)
        print("text:", await ws.recv())
        await ws.send(iter(["frag " + key[:20], key[20:30], key[30:] + " end"]))
        print("fragmented:", await ws.recv())
        await ws.send(("bin " + key).encode())
        print("binary:", await ws.recv())
        big = "x" * 150000 + key + "y" * 150000
        await ws.send(big)
        r = await ws.recv()
        print("big:", len(r), "placeholder" if "SANDBOX_SECRET_" in r else "none")
        await ws.ping(b"p")
        print("ping: ok")

async def leak():
    async with websockets.connect("wss://other.test:9446/echo", ssl=ctx) as ws:
        await ws.send("fine")
        print("first:", await ws.recv())
        await ws.send("leak " + key)
        try:
            print("answered:", await ws.recv())
        except websockets.ConnectionClosed as e:
            print("closed:", e.code, e.reason)

async def plain():
    async with websockets.connect("ws://api.test:9447/echo") as ws:
        await ws.send("fine")
        print("first:", await ws.recv())
        try:
            await ws.send(iter(["leak " + key[:10], key[10:]]))
            print("answered:", await ws.recv())
        except websockets.ConnectionClosed as e:
            print("closed:", e.code)

async def ext():
    try:
        async with websockets.connect("wss://api.test:9446/ext", ssl=ctx) as ws:
            print("ext: connected")
    except websockets.InvalidStatusCode as e:
        print("ext: refused", e.status_code)

asyncio.run({"echo": echo, "leak": leak, "plain": plain, "ext": ext}[sys.argv[1]]())
'

t_ws_messages_get_the_key_and_echoes_are_scrubbed() {
	[ ${#CLIENTS[@]} -gt 0 ] || skip "no matchlock/clients image (make client-image)"
	: >"$SRV/ws.log"
	ml run "${CLIENTS[@]}" "${API[@]}" -- python3 -c "$CLIENT" echo
	[ "$RC" = 0 ] || fail "exit $RC: $OUT $(tail -5 <<<"$ERR")"
	local ph='SANDBOX_SECRET_[0-9a-f]{32}'
	expect_match "text echoed scrubbed" "$OUT" "text: echo: hello $ph key=$ph"
	expect_match "fragmented message" "$OUT" "fragmented: echo: frag $ph end key=$ph"
	expect_match "binary message" "$OUT" "binary: b'echo: bin $ph key=$ph'"
	expect_match "a 300 kB message" "$OUT" "big: [0-9]+ placeholder"
	expect_match "ping" "$OUT" "ping: ok"
	logged "^msg [0-9]+: hello $REAL\$"
	logged "^msg [0-9]+: frag $REAL end\$"
	logged "^msg [0-9]+: bin $REAL\$"
	logged "^msg [0-9]+: 300[0-9]{3} bytes, real key inside\$"
	[[ $(wslog) != *SANDBOX_SECRET_* ]] || fail "a placeholder reached the upstream: $(wslog)"
	[[ $(wslog) != *"bad "* ]] || fail "a frame reached the upstream unmasked or with RSV bits: $(wslog)"
	# websockets offers permessage-deflate; the proxy takes the offer out.
	[[ $(wslog) == *"Upgrade: websocket"* ]] || fail "no upgrade logged: $(wslog)"
	[[ $(wslog) != *"Sec-WebSocket-Extensions"* ]] || fail "the extension offer reached the upstream: $(wslog)"
	expect_no_real
}

t_ws_placeholder_to_another_host_closes_the_connection() {
	[ ${#CLIENTS[@]} -gt 0 ] || skip "no matchlock/clients image (make client-image)"
	: >"$SRV/ws.log"
	ml run "${CLIENTS[@]}" "${API[@]}" -- python3 -c "$CLIENT" leak
	[ "$RC" = 0 ] || fail "exit $RC: $OUT $(tail -5 <<<"$ERR")"
	expect_match "a clean message passes" "$OUT" "first: echo: fine key=SANDBOX_SECRET_"
	expect_match "closed 1008" "$OUT" "closed: 1008 matchlock: secret API_KEY may not be sent to this host"
	expect_match "secret_leak event" "$ERR" "secret_leak blocked GET https://other.test:9446/echo"
	logged "^msg [0-9]+: fine\$"
	logged "^close [0-9]+: 1008 matchlock: secret API_KEY may not be sent to this host\$"
	[[ $(wslog) != *SANDBOX_SECRET_* ]] || fail "the placeholder reached the other host: $(wslog)"
	expect_no_real
}

t_ws_101_agreeing_to_an_extension_is_refused() {
	[ ${#CLIENTS[@]} -gt 0 ] || skip "no matchlock/clients image (make client-image)"
	ml run "${CLIENTS[@]}" "${API[@]}" -- python3 -c "$CLIENT" ext
	[ "$RC" = 0 ] || fail "exit $RC: $OUT $(tail -5 <<<"$ERR")"
	expect_match "502 instead of the 101" "$OUT" "ext: refused 502"
}

t_ws_plain_http_never_carries_a_placeholder() {
	[ ${#CLIENTS[@]} -gt 0 ] || skip "no matchlock/clients image (make client-image)"
	: >"$SRV/ws.log"
	ml run "${CLIENTS[@]}" "${API[@]}" -- python3 -c "$CLIENT" plain
	[ "$RC" = 0 ] || fail "exit $RC: $OUT $(tail -5 <<<"$ERR")"
	expect_match "a clean message passes" "$OUT" "first: echo: fine"
	expect_match "the connection is reset" "$OUT" "closed: 1006"
	expect_match "secret_leak event" "$ERR" "secret_leak.*WebSocket message carries the placeholder of secret API_KEY over plain HTTP"
	logged "^msg [0-9]+: fine\$"
	logged "^X-Matchlock-Dropped-Exts: permessage-deflate"
	[[ $(wslog) != *SANDBOX_SECRET_* ]] || fail "the placeholder went over plain HTTP: $(wslog)"
	expect_no_real
}

run_tests "$@"
