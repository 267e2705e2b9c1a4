#!/usr/bin/env python3
"""HTTPS "API" servers for test_secrets.sh (stdlib only).

    secrets_server.py DIR

Makes a test CA (DIR/ca.pem) with openssl(1), a certificate for api.test and other.test signed
by it, and a self-signed one nobody trusts. Serves on 127.0.0.1:
  8443  api.test / other.test, trusted through --upstream-ca DIR/ca.pem
  8444  the untrusted certificate
Every request's line and headers are appended to DIR/requests.log (so a test can see what the
upstream received) and counted in DIR/<port>.count. Paths:
  /echo      200, JSON of the path and headers received (echoes secrets back: scrubbing test)
  /sse?id=X  text/event-stream: "first", then "second acked" once /ack?id=X came (else timeout)
  8080       the same handler over plain HTTP
  /ws        WebSocket: echoes each text message back
  /upload    reads the body (chunked or content-length), answers its length and sha256
  /body      POST: the body as text into requests.log ("BODY <host> <len>: <text>", at most 4 KiB
             of it, and its trailers), answered like /upload; a body cut short is logged as
             "CUT <host>" and not answered
  /gzip      200, the /echo JSON gzip-encoded whatever Accept-Encoding said (?coding=deflate:
             zlib-wrapped deflate, br, zstd: through the host's libbrotlienc/libzstd; compress:
             a Content-Encoding nobody decodes)
  /reflect   echoes the request back in every encoding a debug endpoint might use: raw and
             decoded query, headers (raw, JSON), each header value and the decoded Basic
             credentials in base64/base64url at three alignments, percent-encoded (both hex
             cases); the Authorization header also comes back as a response header
"""
import base64, gzip, hashlib, http.server, json, os, socketserver, ssl, struct, subprocess, sys, threading, time, zlib
import urllib.parse

D = sys.argv[1]
lock = threading.Lock()


def sh(*a):
    subprocess.run(a, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_certs():
    j = lambda n: os.path.join(D, n)
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", j("ca.key"), "-out", j("ca.pem"), "-days", "2", "-subj", "/CN=matchlock test CA",
       "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    with open(j("ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:api.test,DNS:other.test\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", j("api.key"), "-out", j("api.csr"), "-subj", "/CN=api.test")
    sh("openssl", "x509", "-req", "-in", j("api.csr"), "-CA", j("ca.pem"), "-CAkey", j("ca.key"),
       "-CAcreateserial", "-out", j("api.pem"), "-days", "2", "-extfile", j("ext.cnf"))
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", j("evil.key"), "-out", j("evil.pem"), "-days", "2", "-subj", "/CN=evil.test",
       "-addext", "subjectAltName=DNS:evil.test")


def lib_compress(coding, data):
    """br or zstd through the host's shared libraries (no Python module needed)."""
    import ctypes
    out = ctypes.create_string_buffer(len(data) + 1024)
    if coding == "br":
        lib = ctypes.CDLL("libbrotlienc.so.1")
        n = ctypes.c_size_t(len(out))
        if not lib.BrotliEncoderCompress(5, 22, 0, ctypes.c_size_t(len(data)), data, ctypes.byref(n), out):
            raise RuntimeError("brotli failed")
        return out.raw[:n.value]
    lib = ctypes.CDLL("libzstd.so.1")
    lib.ZSTD_compress.restype = ctypes.c_size_t
    n = lib.ZSTD_compress(out, ctypes.c_size_t(len(out)), data, ctypes.c_size_t(len(data)), 3)
    return out.raw[:n]


def record(port, text):
    with lock:
        with open(os.path.join(D, "requests.log"), "a") as f:
            f.write(text + "\n")
        p = os.path.join(D, "%d.count" % port)
        n = int(open(p).read()) if os.path.exists(p) else 0
        open(p, "w").write(str(n + 1))


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def setup(self):
        super().setup()

    def handle_one_request(self):
        super().handle_one_request()

    def _record(self):
        record(self.server.server_address[1],
               "%s %s\n%s" % (self.command, self.path, "".join("%s: %s\n" % kv for kv in self.headers.items())))

    def _send(self, code, body, ctype="application/json", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        """The body, or None if it was cut short; trailers go to self.trailers."""
        self.trailers = b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = []
            while True:
                line = self.rfile.readline()
                if not line.endswith(b"\n"):
                    return None
                n = int(line.split(b";")[0], 16)
                if n == 0:
                    while True:
                        t = self.rfile.readline()
                        if t in (b"\r\n", b"\n"):
                            return b"".join(data)
                        if not t:
                            return None
                        self.trailers += t
                chunk = self.rfile.read(n)
                if len(chunk) < n:
                    return None
                data.append(chunk)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0"))
        data = self.rfile.read(n)
        return data if len(data) == n else None

    def _reflect(self):
        vals = [self.path, urllib.parse.unquote(self.path)] + list(self.headers.values())
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            vals.append(base64.b64decode(auth[6:]).decode("utf-8", "replace"))
        out = {"path": self.path, "headers": dict(self.headers.items()), "forms": []}
        for v in vals:
            b = v.encode()
            for pre in (b"", b"x", b"xy"):
                out["forms"].append(base64.b64encode(pre + b).decode())
                out["forms"].append(base64.urlsafe_b64encode(pre + b).decode().rstrip("="))
            out["forms"].append(urllib.parse.quote(v, safe=""))
            out["forms"].append(urllib.parse.quote(v, safe="").lower())
        text = "raw: %s\nheaders:\n%s\njson: %s\n" % (vals[1], "".join("%s: %s\n" % kv for kv in self.headers.items()),
                                                    json.dumps(out))
        self._send(200, text.encode(), "text/plain", [("X-Reflect-Auth", auth)])

    def do_GET(self):
        self._record()
        if self.path.startswith("/reflect"):
            return self._reflect()
        if self.path.startswith("/ack"):
            open(os.path.join(D, "ack-" + self.path.split("=")[-1]), "w").write("1")
            return self._send(200, b"{}")
        if self.path.startswith("/sse"):
            # The second event waits for the client's /ack of the first: a proxy that held the
            # stream back would make the client see "timeout" instead of "acked".
            sid = self.path.split("=")[-1]
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"data: first\n\n")
            self.wfile.flush()
            ack = os.path.join(D, "ack-" + sid)
            for _ in range(200):
                if os.path.exists(ack):
                    break
                time.sleep(0.1)
            self.wfile.write(b"data: second " + (b"acked" if os.path.exists(ack) else b"timeout") + b"\n\n")
            self.wfile.flush()
            self.close_connection = True
            return
        if self.path.startswith("/ws"):
            key = self.headers.get("Sec-WebSocket-Key", "")
            acc = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", acc)
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            while True:
                h = self.rfile.read(2)
                if len(h) < 2:
                    return
                op, ln = h[0] & 15, h[1] & 127
                if ln == 126:
                    ln = struct.unpack(">H", self.rfile.read(2))[0]
                elif ln == 127:
                    ln = struct.unpack(">Q", self.rfile.read(8))[0]
                mask = self.rfile.read(4) if h[1] & 128 else b"\0\0\0\0"
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(ln)))
                if op == 8:
                    self.wfile.write(b"\x88\x00")
                    return
                reply = b"echo: " + data
                self.wfile.write(bytes([0x81, len(reply)]) + reply if len(reply) < 126 else
                                 bytes([0x81, 126]) + struct.pack(">H", len(reply)) + reply)
                self.wfile.flush()
        body = json.dumps({"path": self.path, "headers": dict(self.headers.items())}).encode()
        if self.path.startswith("/gzip"):
            coding = self.path.partition("coding=")[2] or "gzip"
            enc = {"gzip": gzip.compress, "deflate": zlib.compress, "br": lambda b: lib_compress("br", b),
                   "zstd": lambda b: lib_compress("zstd", b), "compress": lambda b: b"\x1f\x9d" + b}[coding]
            return self._send(200, enc(body), extra=[("Content-Encoding", coding)])
        self._send(200, body)

    def do_POST(self):
        self._record()
        try:
            data = self._body()
        except (ConnectionError, ValueError):
            data = None
        host = self.headers.get("Host", "").split(":")[0]
        if data is None:
            record(self.server.server_address[1], "CUT %s %s" % (host, self.path))
            self.close_connection = True
            return
        if self.path.startswith("/body"):
            record(self.server.server_address[1], "BODY %s %d: %s\nTRAILERS: %s" % (
                host, len(data), data[:4096].decode("latin-1"), self.trailers.decode("latin-1").strip()))
        body = json.dumps({"length": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                           "headers": dict(self.headers.items())}).encode()
        self._send(200, body)

    do_PUT = do_POST


class TS(socketserver.ThreadingMixIn, http.server.HTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def handle_error(self, request, client_address):
        # The proxy resets connections on purpose (a request refused mid-body): not news.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def serve(port, cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = TS(("127.0.0.1", port), H)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()


make_certs()
serve(8443, os.path.join(D, "api.pem"), os.path.join(D, "api.key"))
serve(8444, os.path.join(D, "evil.pem"), os.path.join(D, "evil.key"))
plain = TS(("127.0.0.1", 8080), H)
threading.Thread(target=plain.serve_forever, daemon=True).start()
open(os.path.join(D, "ready"), "w").write("1")
threading.Event().wait()
