#!/usr/bin/env python3
"""An HTTP/2-only HTTPS "API" for test_h2.sh (python3-h2 and asyncio).

    h2_server.py DIR PORT

Serves TLS with ALPN h2 only (a client that does not offer h2 fails the handshake) on
127.0.0.1:PORT with DIR/api.pem (secrets_server.py makes it, signed by DIR/ca.pem). Every request's
headers are appended to DIR/h2requests.log as "conn=N id=S" then "name: value" lines (and
"body: ..." but for /upload). Paths:
  /echo        200, JSON of the request headers and body; x-echo-key: the request's x-api-key
  /upload      reads the body, answers {"length": N, "sha256": H}
  /big?n=N     N bytes of 'x', sent as the flow-control windows allow
  /trailers    a body, then trailers grpc-status: 0 and x-trailer-key: the request's x-api-key
  /gzip        the /echo answer gzip-encoded whatever the request's accept-encoding
  /reset       resets the stream (RST_STREAM, CANCEL) without answering
  /goaway      answers, then sends GOAWAY and closes the connection
"""
import asyncio, gzip, hashlib, json, os, ssl, sys, urllib.parse

import h2.config, h2.connection, h2.events, h2.errors

D, PORT = sys.argv[1], int(sys.argv[2])
conns = 0


class Conn:
    def __init__(self, reader, writer):
        global conns
        conns += 1
        self.id = conns
        self.r, self.w = reader, writer
        self.h = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.streams = {}  # id -> (headers, bytearray body)
        self.window = asyncio.Event()

    async def flush(self):
        self.w.write(self.h.data_to_send())
        await self.w.drain()

    async def send_body(self, sid, data, end=True):
        while data:
            while self.h.local_flow_control_window(sid) < 1:
                self.window.clear()
                await self.window.wait()
            n = min(len(data), self.h.local_flow_control_window(sid), self.h.max_outbound_frame_size)
            self.h.send_data(sid, data[:n])
            data = data[n:]
            await self.flush()
        if end:
            self.h.end_stream(sid)
            await self.flush()

    async def answer(self, sid):
        hdrs, body = self.streams.pop(sid)
        hd = dict(hdrs)
        with open(os.path.join(D, "h2requests.log"), "a") as f:
            f.write("conn=%d id=%d\n%s" % (self.id, sid, "".join("%s: %s\n" % kv for kv in hdrs)))
            if body and hd.get(":path") != "/upload":
                f.write("body: %s\n" % body.decode("latin-1"))
        u = urllib.parse.urlsplit(hd.get(":path", "/"))
        q = dict(urllib.parse.parse_qsl(u.query))
        if u.path == "/reset":
            self.h.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
            await self.flush()
            return
        if u.path == "/big":
            self.h.send_headers(sid, [(":status", "200"), ("content-type", "application/octet-stream")])
            await self.send_body(sid, b"x" * int(q.get("n", "0")))
            return
        if u.path == "/upload":
            out = json.dumps({"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}).encode()
        else:
            out = json.dumps({"path": hd.get(":path"), "headers": hdrs, "body": body.decode("latin-1")}).encode()
        extra = [("x-echo-key", hd.get("x-api-key", "-"))]
        if u.path == "/gzip":
            out = gzip.compress(out)
            extra.append(("content-encoding", "gzip"))
        self.h.send_headers(sid, [(":status", "200"), ("content-type", "application/json"),
                                  ("content-length", str(len(out)))] + extra)
        if u.path == "/trailers":
            await self.send_body(sid, out, end=False)
            self.h.send_headers(sid, [("grpc-status", "0"), ("x-trailer-key", hd.get("x-api-key", "-"))],
                                end_stream=True)
            await self.flush()
            return
        await self.send_body(sid, out)
        if u.path == "/goaway":
            self.h.close_connection()
            await self.flush()
            self.w.close()

    async def run(self):
        self.h.initiate_connection()
        await self.flush()
        while True:
            data = await self.r.read(65536)
            if not data:
                break
            try:
                events = self.h.receive_data(data)
            except Exception:
                break
            for ev in events:
                if isinstance(ev, h2.events.RequestReceived):
                    self.streams[ev.stream_id] = (list(ev.headers), bytearray())
                elif isinstance(ev, h2.events.DataReceived):
                    if ev.stream_id in self.streams:
                        self.streams[ev.stream_id][1].extend(ev.data)
                    self.h.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    if ev.stream_id in self.streams:
                        asyncio.ensure_future(self.answer(ev.stream_id))
                elif isinstance(ev, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
                    self.window.set()
                elif isinstance(ev, h2.events.StreamReset):
                    self.streams.pop(ev.stream_id, None)
            await self.flush()
        self.w.close()


async def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(D, "api.pem"), os.path.join(D, "api.key"))
    ctx.set_alpn_protocols(["h2"])
    srv = await asyncio.start_server(lambda r, w: Conn(r, w).run(), "127.0.0.1", PORT, ssl=ctx)
    open(os.path.join(D, "h2ready"), "w").close()
    async with srv:
        await srv.serve_forever()


asyncio.run(main())
