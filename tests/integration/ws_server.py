#!/usr/bin/env python3
"""A WebSocket echo server for test_ws.sh (standard library only: asyncio and ssl).

    ws_server.py DIR PORT VALUE [PLAIN_PORT]

Serves WebSockets over TLS on 127.0.0.1:PORT with DIR/api.pem (secrets_server.py makes it,
signed by DIR/ca.pem). Each upgrade request's head goes to DIR/ws.log ("conn=N" then its lines),
each message the client sends as "msg N: <text>" (binary as latin-1), fragments as
"frag N: <count>", close frames as "close N: <code> <reason>". Every message is answered with
"echo: <message> key=<VALUE>" (text or binary as the message was) in two fragments cut inside VALUE (the real secret: a reflecting
upstream), pings with pongs. Paths:
  /echo   as above
  /ext    the 101 agrees to permessage-deflate whatever the client offered
On PLAIN_PORT the same without TLS, and the answers leave VALUE out ("echo: <message>").
"""
import asyncio, base64, hashlib, os, ssl, struct, sys

D, PORT, VALUE = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
conns = 0


def log(line):
    with open(os.path.join(D, "ws.log"), "a") as f:
        f.write(line + "\n")


def frame(op, payload, fin=True):
    n = len(payload)
    h = bytes([(0x80 if fin else 0) | op])
    if n < 126:
        h += bytes([n])
    elif n < 65536:
        h += bytes([126]) + struct.pack(">H", n)
    else:
        h += bytes([127]) + struct.pack(">Q", n)
    return h + payload


async def read_frame(r):
    b0, b1 = await r.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", await r.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", await r.readexactly(8))[0]
    key = await r.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
    data = bytearray(await r.readexactly(n))
    for i in range(n):
        data[i] ^= key[i & 3]
    return b0 & 0x80, b0 & 0x70, b0 & 0x0F, bytes(data), bool(b1 & 0x80)


async def conn(r, w, tls=True):
    global conns
    conns += 1
    cid = conns
    try:
        head = (await r.readuntil(b"\r\n\r\n")).decode("latin-1")
        log("conn=%d\n%s" % (cid, head.strip()))
        lines = head.split("\r\n")
        path = lines[0].split(" ")[1]
        hd = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:] if l)}
        accept = base64.b64encode(hashlib.sha1(hd["sec-websocket-key"].encode() + GUID).digest())
        resp = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        resp += b"Sec-WebSocket-Accept: " + accept + b"\r\n"
        if path == "/ext":
            resp += b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
        w.write(resp + b"\r\n")
        await w.drain()
        msg, frags, mop = b"", 0, 1
        while True:
            fin, rsv, op, data, masked = await read_frame(r)
            if rsv or not masked:
                log("bad %d: rsv=%d masked=%s" % (cid, rsv, masked))
            if op == 8:
                code = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else 1005
                log("close %d: %d %s" % (cid, code, data[2:].decode("latin-1")))
                w.write(frame(8, data[:2]))
                await w.drain()
                break
            if op == 9:
                w.write(frame(10, data))
                await w.drain()
                continue
            if op in (1, 2, 0):
                mop = op or mop
                msg += data
                frags += 1
                if not fin:
                    continue
                log("msg %d: %s" % (cid, msg.decode("latin-1") if len(msg) < 4096 else "%d bytes, %s" % (
                    len(msg), "real key inside" if VALUE in msg else "no real key")))
                log("frag %d: %d" % (cid, frags))
                reply = b"echo: " + msg + (b" key=" + VALUE if tls else b"")
                cut = len(reply) - len(VALUE) // 2
                w.write(frame(mop, reply[:cut], fin=False) + frame(0, reply[cut:]))
                await w.drain()
                msg, frags = b"", 0
    except (asyncio.IncompleteReadError, ConnectionError, KeyError, IndexError, ssl.SSLError):
        pass
    finally:
        w.close()


async def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(D, "api.pem"), os.path.join(D, "api.key"))
    srv = await asyncio.start_server(conn, "127.0.0.1", PORT, ssl=ctx, limit=1 << 20)
    if len(sys.argv) > 4:
        await asyncio.start_server(lambda r, w: conn(r, w, False), "127.0.0.1", int(sys.argv[4]),
                                   limit=1 << 20)
    open(os.path.join(D, "wsready"), "w").write("1")
    async with srv:
        await srv.serve_forever()


asyncio.run(main())
