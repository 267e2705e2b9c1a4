#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write the seed corpus of a fuzz harness into a directory.

    make_seeds.py HARNESS DIR      HARNESS: fuzz_mux or fuzz_msg; DIR is created if needed

fuzz_mux gets protocol-valid sessions in its input format (see tests/fuzz/fuzz_mux.h): the
options byte, the chunking byte, then the frames a well-behaved peer sends, given the streams the
harness opens itself. fuzz_msg gets OPEN and CTL bodies. Wire constants are read from mux.h,
msg.h and fuzz_mux.h so the seeds follow the C definitions. Exits 0, or 1 with a message.
"""
import json
import os
import re
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEADERS = ["src/proto/mux.h", "src/proto/msg.h", "src/proto/tree.h", "tests/fuzz/fuzz_mux.h", "tests/fuzz/fuzz_fs.h"]


def read_constants():
    """Integer #defines and enum values of HEADERS, by name."""
    c = {}
    for h in HEADERS:
        with open(os.path.join(ROOT, h)) as f:
            text = re.sub(r"/\*.*?\*/|//[^\n]*", "", f.read(), flags=re.S)
        for name, expr in re.findall(r"^#define[ \t]+(\w+)[ \t]+(.+?)[ \t]*$", text, flags=re.M):
            expr = re.sub(r"\b(\d+)[uU]\b", r"\1", expr)
            try:
                c[name] = int(eval(expr, {"__builtins__": {}}, dict(c)))
            except Exception:
                pass  # not an integer constant (include guards, function-like macros)
        for body in re.findall(r"\benum\s+\w+\s*\{(.*?)\}", text, flags=re.S):
            value = 0
            for item in filter(None, (i.strip() for i in body.split(","))):
                name, _, expr = (p.strip() for p in item.partition("="))
                if expr:
                    value = int(eval(expr, {"__builtins__": {}}, dict(c)))
                c[name] = value
                value += 1
    return c


K = read_constants()


def tlv(tag, value):
    return struct.pack("<HI", tag, len(value)) + value


def tlv_str(tag, s):
    return tlv(tag, s.encode())


def tlv_int(tag, fmt, v):
    return tlv(tag, struct.pack("<" + fmt, v))


class Session:
    """The frames a peer sends to the mux under test, as the peer's own mux would encode them."""

    def __init__(self, opts, chunk):
        self.opts = opts
        self.chunk = chunk
        guest = opts & K["FUZZ_MUX_GUEST"]
        self.next_id = 1 if guest else 2  # the peer's ids
        self.ours = [(2 if guest else 1) + 2 * i for i in range(K["FUZZ_MUX_NOPEN"])]
        self.out = bytearray()

    def frame(self, stream, type_, payload=b"", chan=0):
        assert len(payload) <= K["MUX_MAX_PAYLOAD"]
        self.out += struct.pack("<IBBHI", stream, type_, chan, 0, len(payload)) + payload

    def open(self, body, service=None):
        sid = self.next_id
        self.next_id += 2
        svc = K["SVC_EXEC"] if service is None else service
        self.frame(sid, K["MUX_OPEN"], struct.pack("<H", svc) + body)
        return sid

    def open_exec(self, argv0, tty):
        body = b"".join([
            tlv_str(K["T_ARGV"], argv0),
            tlv_str(K["T_ARGV"], "-c"),
            tlv_str(K["T_ARGV"], "echo hi; cat"),
            tlv_str(K["T_ENV"], "PATH=/usr/bin:/bin"),
            tlv_str(K["T_ENV"], "TERM=xterm"),
            tlv_str(K["T_CWD"], "/work"),
            tlv_str(K["T_USER"], "1000:1000"),
            tlv_int(K["T_TTY"], "B", int(tty)),
            tlv_int(K["T_STDIN"], "B", 1),
            tlv_int(K["T_ROWS"], "H", 24),
            tlv_int(K["T_COLS"], "H", 80),
        ])
        return self.open(body)

    def data(self, sid, chan, payload):
        chunk = K["MUX_DATA_CHUNK"]
        for i in range(0, len(payload), chunk):
            self.frame(sid, K["MUX_DATA"], payload[i:i + chunk], chan)

    def eof(self, sid, chan):
        self.frame(sid, K["MUX_EOF"], b"", chan)

    def ctl(self, sid, type_, *tlvs):
        self.frame(sid, K["MUX_CTL"], struct.pack("<H", type_) + b"".join(tlvs))

    def credit(self, sid, n):
        self.frame(sid, K["MUX_CREDIT"], struct.pack("<I", n))

    def close(self, sid, err=0):
        self.frame(sid, K["MUX_CLOSE"], struct.pack("<I", err) if err else b"")

    def bytes(self):
        return bytes([self.opts, self.chunk]) + bytes(self.out)


def seed_hello(opts, chunk):
    """The guest agent's side of a boot: hello, ready, then an error report."""
    s = Session(opts, chunk)
    s.ctl(0, K["CTL_HELLO"], tlv_int(K["T_VERSION"], "I", K["MUX_VERSION"]),
          tlv_int(K["T_BOOT_NS"], "Q", 123456789), tlv_int(K["T_READY_NS"], "Q", 223456789))
    s.ctl(0, K["CTL_READY"])
    s.ctl(0, K["CTL_ERROR"], tlv_str(K["T_MESSAGE"], "disk full"))
    return s


def seed_exec_reply(opts, chunk):
    """The guest's answers on an exec stream the host opened: output, exit, close."""
    s = Session(opts | K["FUZZ_MUX_OPEN2"], chunk)
    sid = s.ours[0]
    s.data(sid, K["MUX_CHAN_OUT"], b"hello\n")
    s.data(sid, K["MUX_CHAN_ERR"], b"warning: something\n")
    s.data(sid, K["MUX_CHAN_OUT"], b"world\n")
    s.eof(sid, K["MUX_CHAN_OUT"])
    s.eof(sid, K["MUX_CHAN_ERR"])
    s.ctl(sid, K["CTL_EXIT"], tlv_int(K["T_EXIT_CODE"], "I", 3))
    s.close(sid)
    return s


def seed_exec_guest(opts, chunk, poweroff):
    """The host's side of an exec as the guest sees it, plus the link's config and a signal."""
    s = Session(opts | K["FUZZ_MUX_GUEST"], chunk)
    s.ctl(0, K["CTL_CONFIG"], tlv_str(K["T_HOSTNAME"], "sandbox-1"))
    s.ctl(0, K["CTL_CONFIG"], tlv_int(K["T_TIME_NS"], "Q", 1700000000000000000))
    a = s.open_exec("/bin/sh", True)
    s.data(a, K["MUX_CHAN_IN"], b"echo hi\n")
    s.ctl(a, K["CTL_RESIZE"], tlv_int(K["T_ROWS"], "H", 50))
    s.ctl(a, K["CTL_RESIZE"], tlv_int(K["T_COLS"], "H", 132))
    s.data(a, K["MUX_CHAN_IN"], b"exit\n")
    s.eof(a, K["MUX_CHAN_IN"])
    b = s.open_exec("/usr/bin/sleep", False)
    s.ctl(b, K["CTL_SIGNAL"], tlv_int(K["T_SIGNAL"], "I", 15))
    s.close(b)
    s.close(a)
    if poweroff:
        s.ctl(0, K["CTL_POWEROFF"])
    return s


def seed_peer_opens(opts, chunk):
    """The peer opens streams of its own, sends on them, closes with and without an errno."""
    s = Session(opts, chunk)
    a = s.open_exec("/bin/true", False)
    b = s.open_exec("/bin/false", True)
    s.data(a, K["MUX_CHAN_IN"], b"input for a")
    s.data(b, K["MUX_CHAN_OUT"], b"output of b")
    s.eof(a, K["MUX_CHAN_IN"])
    s.close(b, 32)  # EPIPE
    s.data(a, K["MUX_CHAN_ERR"], b"late")
    s.close(a)
    return s


def seed_credit(opts, chunk):
    """Enough DATA that the harness's echo earns credit back, returned in one CREDIT."""
    s = Session(opts | K["FUZZ_MUX_ECHO"] | K["FUZZ_MUX_OPEN2"], chunk)
    sid = s.ours[0]
    s.data(sid, K["MUX_CHAN_OUT"], b"x" * 40000)
    s.credit(sid, 40000)
    s.close(sid)
    return s


def seed_credit_small(opts, chunk):
    """Small credits for small echoes: values the fuzzer can easily push over the window."""
    s = Session(opts | K["FUZZ_MUX_ECHO"] | K["FUZZ_MUX_OPEN2"], chunk)
    sid = s.ours[0]
    s.data(sid, K["MUX_CHAN_OUT"], b"hello")
    s.credit(sid, 5)
    s.data(sid, K["MUX_CHAN_OUT"], b"ab")
    s.credit(sid, 1)
    s.credit(sid, 1)
    return s


def seed_window():
    """A whole window to a reader that never consumes, echoed after the "started" reply, so our
    sends run out of credit too. One flipped stream id away: DATA beyond the window (the "x" on
    our second stream) and a frame after the peer's CLOSE (the final EOF)."""
    s = Session(K["FUZZ_MUX_STALL"] | K["FUZZ_MUX_ECHO"] | K["FUZZ_MUX_OPEN2"], 0)
    a = s.open_exec("/bin/cat", False)
    s.data(a, K["MUX_CHAN_OUT"], b"w" * K["MUX_WINDOW"])
    s.data(s.ours[1], K["MUX_CHAN_OUT"], b"x")
    s.close(s.ours[1])
    s.eof(a, K["MUX_CHAN_OUT"])
    return s


def seed_max_streams():
    """One OPEN more than MUX_MAX_STREAMS, then frames on the refused stream and the link."""
    s = Session(0, 0)
    svc = struct.pack("<H", K["SVC_EXEC"])
    n = K["MUX_MAX_STREAMS"]
    for i in range(n + 1):
        s.frame(2 + 2 * i, K["MUX_OPEN"], svc)
    s.frame(2 + 2 * n, K["MUX_DATA"], b"x")
    s.close(2 + 2 * n)
    s.close(2)
    s.frame(2 + 2 * n + 2, K["MUX_OPEN"], svc)
    return s


def mux_seeds():
    host, guest = 0, K["FUZZ_MUX_GUEST"]
    close_now, echo, lazy = K["FUZZ_MUX_CLOSE_NOW"], K["FUZZ_MUX_ECHO"], K["FUZZ_MUX_LAZY"]
    hangup, refuse = K["FUZZ_MUX_HANGUP"], K["FUZZ_MUX_REFUSE"]
    seeds = {
        "hello": seed_hello(host, 0),
        "hello-bytewise": seed_hello(host, 1),
        "exec-reply": seed_exec_reply(host | close_now, 0),
        "exec-reply-lazy": seed_exec_reply(host | lazy, 7),
        "exec-reply-bytewise": seed_exec_reply(host | echo | hangup, 1),
        "exec-guest": seed_exec_guest(hangup, 0, False),
        "exec-guest-chunked": seed_exec_guest(close_now | echo, 13, False),
        "exec-guest-poweroff": seed_exec_guest(lazy, 64, True),
        "peer-opens": seed_peer_opens(host | echo, 0),
        "peer-opens-refused": seed_peer_opens(host | refuse | K["FUZZ_MUX_OPEN2"], 5),
        "peer-opens-lazy": seed_peer_opens(host | lazy | close_now, 255),
        "credit-host": seed_credit(host, 0),
        "credit-guest": seed_credit(guest | lazy, 200),
        "credit-small-host": seed_credit_small(host, 0),
        "credit-small-guest": seed_credit_small(guest | lazy, 3),
        "window": seed_window(),
        "max-streams": seed_max_streams(),
    }
    return {name: s.bytes() for name, s in seeds.items()}


def msg_seeds():
    return {
        "fields": b"".join([
            tlv_str(K["T_ARGV"], "/bin/sh"),
            tlv_str(K["T_ENV"], "A=B"),
            tlv_int(K["T_TTY"], "B", 1),
            tlv_int(K["T_ROWS"], "H", 24),
            tlv_int(K["T_EXIT_CODE"], "I", 1),
            tlv_int(K["T_TIME_NS"], "Q", 1),
        ]),
        "unknown-and-empty": tlv(0x7FFF, b"\0\1") + tlv_str(K["T_MESSAGE"], ""),
    }


def oci_manifest_seeds():
    """Valid manifest, index and config documents for the OCI JSON parsers."""
    d = "sha256:" + "ab" * 32
    return {
        "manifest": json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d, "size": 100},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": 200}],
        }).encode(),
        "index": json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": 300,
                 "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": 300,
                 "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            ],
        }).encode(),
        "config": json.dumps({
            "architecture": "amd64", "os": "linux",
            "config": {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"], "Env": ["PATH=/bin", "A=b"],
                       "User": "1000:1000", "WorkingDir": "/work"},
            "rootfs": {"type": "layers", "diff_ids": [d]},
        }).encode(),
    }


def oci_tarpath_seeds():
    """Tar member names, benign and hostile, for the path sanitiser."""
    names = ["bin/sh", "./etc/passwd", "usr//lib/./x", "../escape", "/abs/path", "a/../../b",
             "dir/.wh..wh..opq", "dir/.wh.file", "a/b/c/" * 20 + "d", "caf\xc3\xa9"]
    return {f"path{i}": n.encode() for i, n in enumerate(names)}


def dns_seeds():
    """DNS queries as a guest's resolver sends them."""
    def q(name, qtype, qid=0x1234, flags=0x0100):
        body = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
        return struct.pack(">HHHHHH", qid, flags, 1, 0, 0, 0) + body + struct.pack(">HH", qtype, 1)
    return {"a": q("api.example.com", 1), "aaaa": q("api.example.com", 28),
            "txt-long": q("x" * 63 + ".tunnel.test", 16), "cname": q("www.example.com", 5),
            "root": q("", 1).replace(b"\0\0", b"\0", 0)}


def http_seeds():
    """fuzz_http: mode byte, split byte, then the bytes (see tests/fuzz/fuzz_http.c)."""
    ph = b"SANDBOX_SECRET_0123456789abcdef0123456789abcdef"
    basic = __import__("base64").b64encode(b"u:" + ph)
    return {
        "req_simple": b"\x00\x00GET /x?k=" + ph + b" HTTP/1.1\r\nHost: api.test\r\nX-Key: " + ph + b"\r\n\r\n",
        "req_basic": b"\x00\x00GET / HTTP/1.1\r\nHost: api.test\r\nAuthorization: Basic " + basic + b"\r\n\r\n",
        "req_name_placeholder": b"\x00\x00GET / HTTP/1.1\r\nHost: api.test\r\nX-" + ph + b": 1\r\n\r\n",
        "req_chunked": b"\x00\x00POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
        "req_ws": b"\x00\x00GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        "resp_len": b"\x01\x00HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
        "resp_chunked": b"\x01\x01HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "body_chunked": b"\x02\x07" + b"5;x=y\r\nhello\r\n0\r\nTrailer: 1\r\n\r\n",
        "scrub": b"\x03\x09" + b"a sk-real-value b sk-real-val",
        "walk_pipelined": b"\x05\x30" + b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n\r\nGET /2 HTTP/1.1\r\nHost: b.test\r\n\r\n",
        "walk_absolute": b"\x05\x00" + b"GET http://a.test:8080/x HTTP/1.1\r\nHost: a.test\r\n\r\nGET https://b.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
        "walk_length_body": b"\x05\x45" + b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 35\r\n\r\nGET / HTTP/1.1\r\nHost: evil.test\r\n\r\nGET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
        "walk_chunked_body": b"\x05\x21" + b"POST /x HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\nHost: evil.test\r\n\r\n",
        "walk_upgrade": b"\x05\x01" + b"GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello",
        "walk_upgrade_refused": b"\x05\x02" + b"GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nGET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
        "scrub_encoded": b"\x03\x11" + b"dXNlcjpzay1yZWFsLXZhbHVl c2stcmVhbC12YWx1ZQ sk-real-value%2F \"sk-real-value\"",
        "hello": b"\x04\x00" + bytes.fromhex("16030100310100002d0303" + "07" * 32 + "000002130101000005000000") ,
    }


def h2_seeds():
    """fuzz_h2: options byte, split byte, the guest's frames, the upstream's (tests/fuzz/fuzz_h2.c).
    Header blocks are HPACK literals without indexing (no Huffman), which any decoder takes."""
    ph = b"SANDBOX_SECRET_0123456789abcdef0123456789abcdef"

    def frame(type_, flags, sid, payload=b""):
        return struct.pack(">I", len(payload))[1:] + bytes([type_, flags]) + struct.pack(">I", sid) + payload

    def block(fields):
        out = b""
        for n, v in fields:
            out += b"\0" + bytes([len(n)]) + n + bytes([len(v)]) + v
        return out

    def req(sid, path=b"/", extra=(), end=True, authority=b"api.test"):
        f = [(b":method", b"GET" if end else b"POST"), (b":scheme", b"https"), (b":path", path),
             (b":authority", authority)] + list(extra)
        return frame(1, 0x4 | (0x1 if end else 0), sid, block(f))

    def grpc(msg):
        return b"\0" + struct.pack(">I", len(msg)) + msg

    settings = frame(4, 0, 0)
    resp = frame(1, 0x4, 1, block([(b":status", b"200"), (b"x-echo", b"sk-real-value")])) + \
        frame(0, 0, 1, b"body sk-real-value") + frame(1, 0x5, 1, block([(b"grpc-status", b"0")]))

    def seed(opts, guest, up=b""):
        split = 255 if not up else max(1, min(254, -(-len(guest) * 255 // (len(guest) + len(up)))))
        return bytes([opts, split]) + guest + up

    return {
        "h2_header": seed(0x20, settings + req(1, b"/x?k=" + ph, [(b"x-api-key", ph)]), settings + resp),
        "h2_leak_header": seed(0x21, settings + req(1, b"/", [(b"x-api-key", ph)], authority=b"other.test")),
        "h2_leak_body_split": seed(0xff, settings + req(1, b"/up", end=False, authority=b"other.test") +
                                   frame(0, 0, 1, b"a=" + ph[:20]) + frame(0, 1, 1, ph[20:])),
        "h2_body": seed(0x40, settings + req(1, b"/up", end=False) + frame(0, 0, 1, b"x" * 100) +
                        frame(0, 1, 1, b"end"), settings + resp),
        "h2_many": seed(0x10, settings + b"".join(req(i, b"/%d" % i) for i in range(1, 40, 2)), settings + resp),
        "h2_grpc": seed(0x30, settings + req(1, b"/svc/M", [(b"content-type", b"application/grpc")], end=False) +
                        frame(0, 0, 1, grpc(b"k=" + ph)[:9]) + frame(0, 1, 1, grpc(b"k=" + ph)[9:]),
                        settings + frame(1, 0x4, 1, block([(b":status", b"200"), (b"content-type", b"application/grpc")])) +
                        frame(0, 0, 1, grpc(b"v=sk-real-value")) + frame(1, 0x5, 1, block([(b"grpc-status", b"0")]))),
        "h2_grpc_empty": seed(0x30, settings + req(1, b"/svc/M", [(b"content-type", b"application/grpc")], end=False) +
                              frame(0, 1, 1, grpc(b"")), settings + frame(1, 0x4, 1, block([(b":status", b"200"),
                              (b"content-type", b"application/grpc")])) + frame(0, 0, 1, grpc(b"")) +
                              frame(1, 0x5, 1, block([(b"grpc-status", b"0")]))),
        "h2_grpc_leak": seed(0x31, settings + req(1, b"/svc/M", [(b"content-type", b"application/grpc+proto")], end=False,
                                                  authority=b"other.test") + frame(0, 1, 1, grpc(ph))),
        # The placeholder laid across a message's length prefix ('S' is its last byte) and
        # the message: each message alone holds no placeholder, the stream does.
        "h2_grpc_leak_across_prefix": seed(0x31, settings + req(1, b"/svc/M", [(b"content-type", b"application/grpc+proto")],
                                                                end=False, authority=b"other.test") +
                                           frame(0, 1, 1, b"\0" * 10 + b"\0\0\0\0" + ph[:1] + ph[1:] + b"x" * (ord("S") - len(ph) + 1))),
        "h2_rst_goaway": seed(0x08, settings + req(1) + frame(3, 0, 1, b"\0\0\0\x08") +
                              frame(7, 0, 0, b"\0\0\0\0\0\0\0\0"), settings + frame(7, 0, 0, b"\0\0\0\1\0\0\0\0")),
    }


def h2x_seeds():
    """fuzz_h2x: options byte (bit 7: HTTP/1.1 guest over h2), split byte, the guest's bytes, the
    upstream's (tests/fuzz/fuzz_h2x.c). h2 frames as in h2_seeds."""
    ph = b"SANDBOX_SECRET_0123456789abcdef0123456789abcdef"

    def frame(type_, flags, sid, payload=b""):
        return struct.pack(">I", len(payload))[1:] + bytes([type_, flags]) + struct.pack(">I", sid) + payload

    def block(fields):
        return b"".join(b"\0" + bytes([len(n)]) + n + bytes([len(v)]) + v for n, v in fields)

    def req(sid, path=b"/", extra=(), end=True, authority=b"api.test"):
        f = [(b":method", b"GET" if end else b"POST"), (b":scheme", b"https"), (b":path", path),
             (b":authority", authority)] + list(extra)
        return frame(1, 0x4 | (0x1 if end else 0), sid, block(f))

    def seed(opts, guest, up=b""):
        split = 255 if not up else max(1, min(254, -(-len(guest) * 255 // (len(guest) + len(up)))))
        return bytes([opts, split]) + guest + up

    settings = frame(4, 0, 0)
    h1resp = b"HTTP/1.1 200 OK\r\nX-Echo: sk-real-value\r\nTransfer-Encoding: chunked\r\n\r\n" \
        b"5\r\nsk-re\r\n8\r\nal-value\r\n0\r\nX-Trailer: sk-real-value\r\n\r\n"
    h2resp = frame(1, 0x4, 1, block([(b":status", b"200"), (b"x-echo", b"sk-real-value")])) + \
        frame(0, 0, 1, b"body sk-re") + frame(0, 0x1, 1, b"al-value")
    h1req = b"GET /x?k=" + ph + b" HTTP/1.1\r\nHost: api.test\r\nX-Api-Key: " + ph + b"\r\n\r\n"
    h1post = b"POST /up HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n" \
        b"10\r\nk=SANDBOX_SECRET\r\n20\r\n_0123456789abcdef0123456789abcdef\r\n0\r\n\r\n"
    return {
        "h2x_h2_guest_header": seed(0x20, settings + req(1, b"/x?k=" + ph, [(b"x-api-key", ph), (b"cookie", b"a=1"),
                                                                           (b"cookie", b"b=2")]), h1resp),
        "h2x_h2_guest_body_split": seed(0x40, settings + req(1, b"/up", end=False) + frame(0, 0, 1, ph[:20]) +
                                        frame(0, 1, 1, ph[20:]), h1resp),
        "h2x_h2_guest_leak": seed(0x21, settings + req(1, b"/", end=False, authority=b"other.test") +
                                  frame(0, 0, 1, b"k=" + ph[:30]) + frame(0, 1, 1, ph[30:])),
        "h2x_h2_guest_two_streams": seed(0x10, settings + req(1, b"/a") + req(3, b"/b"), h1resp + h1resp),
        "h2x_h1_guest_header": seed(0xa0, h1req, settings + h2resp),
        "h2x_h1_guest_body_split": seed(0x90, h1post % b"api.test", settings + h2resp),
        "h2x_h1_guest_leak": seed(0x91, h1post % b"other.test", settings + h2resp),
        "h2x_h1_guest_pipelined": seed(0x88, h1req + h1req, settings + h2resp + h2resp.replace(b"\0\0\0\1", b"\0\0\0\3")),
    }


def subst_seeds():
    """fuzz_subst: 4 cut bytes, the encoding byte, then the stream (tokens 0xF0-0xF3, see
    tests/fuzz/fuzz_subst.c)."""
    return {
        "form": b"\x10\x40\x80\xc0\x01" + b"grant_type=client_credentials&client_secret=\xf0&x=1",
        "json_split": b"\x05\x06\x07\xfe\x02" + b'{"key": "\xf0", "p": "\xf2zz", "v": "\xf3"}',
        "leak": b"\x00\x30\x31\x90\x00" + b"a=\xf0&b=\xf1",
        "partial_end": b"\xf0\xf8\xfc\xff\x00" + b"tail SANDBOX_SECRET_01234",
    }


def ws_seeds():
    """fuzz_ws: 4 cut bytes, the options byte (bit 0: the guest's masked frames, bit 1: raw
    bytes), then frame records (first byte, length byte, payload; tokens 0xF0-0xF3), see
    tests/fuzz/fuzz_ws.c."""
    def rec(b0, payload):
        return bytes([b0, len(payload)]) + payload
    return {
        "up_text": b"\x20\x60\xa0\xe0\x01" + rec(0x81, b'{"key":"\xf0"}') + rec(0x82, b"\xf0\xf0"),
        "up_fragmented": b"\x08\x09\x30\x31\x01" + rec(0x01, b"a=SANDBOX_SEC") + rec(0x89, b"ping \xf0") +
                         rec(0x00, b"RET_0123456789abcdef") + rec(0x80, b"0123456789abcdef&b=\xf0") +
                         rec(0x88, b"\x03\xe8bye"),
        "up_leak": b"\x10\x11\x12\x13\x01" + rec(0x81, b"ok") + rec(0x01, b"x\xf1"[:1]) + rec(0x80, b"\xf1"),
        "up_unmasked_raw": b"\x00\x01\x02\x03\x03" + b"\x81\x05hello",
        "down_scrub": b"\x40\x41\x42\xf0\x00" + rec(0x81, b"echo \xf3 \xf0") + rec(0x02, b"\xf3"[:0] + b"sk-real/") +
                      rec(0x8a, b"\xf3") + rec(0x80, b"value+1 done"),
        "down_bad": b"\x00\x00\x00\x00\x00" + rec(0xc1, b"rsv") + rec(0x83, b"op") + rec(0x09, b"frag ping"),
    }


def codec_seeds():
    """fuzz_codec: the coding byte (0 gzip, 1 deflate, 2 br, 3 zstd; +4 raw deflate when
    encoding), the split byte, then the bytes."""
    import gzip, zlib
    text = b'{"token": "sk-live-0123456789", "n": 1}' * 4
    return {
        "gzip": b"\x00\x10" + gzip.compress(text),
        "gzip_members": b"\x00\x20" + gzip.compress(b"one ") + gzip.compress(b"two"),
        "deflate": b"\x01\x05" + zlib.compress(text),
        "deflate_raw": b"\x05\x05" + zlib.compress(text)[2:-4],
        "br_plain": b"\x02\x03" + text,
        "zstd_plain": b"\x03\x03" + text,
    }


def sigv4_seeds():
    """fuzz_sigv4: mode byte, then an Authorization value or presigned target (0), a request
    for the canonical form (1), or a request head signed with the harness's fixed placeholder
    secret key toward its AWS host (2), so fuzzing starts from requests the proxy re-signs."""
    import hashlib, hmac
    ph_id = "SANDBOX_SECRET_000000000000000000000000000000a1"
    ph_key = "SANDBOX_SECRET_000000000000000000000000000000b2"
    ph_token = "SANDBOX_SECRET_000000000000000000000000000000c3"
    date, scope = "20261201T120000Z", "20261201/us-east-1/s3/aws4_request"
    empty = hashlib.sha256(b"").hexdigest()

    def sign(creq):
        sts = "\n".join(["AWS4-HMAC-SHA256", date, scope, hashlib.sha256(creq.encode()).hexdigest()])
        k = ("AWS4" + ph_key).encode()
        for part in scope.split("/"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        return hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()

    host = "bucket.s3.amazonaws.com"
    signed = "host;x-amz-content-sha256;x-amz-date;x-amz-security-token"
    creq = "GET\n/key\n\nhost:%s\nx-amz-content-sha256:%s\nx-amz-date:%s\nx-amz-security-token:%s\n\n%s\n%s" % (
        host, empty, date, ph_token, signed, empty)
    head = ("GET /key HTTP/1.1\r\nHost: %s\r\nx-amz-content-sha256: %s\r\nx-amz-date: %s\r\n"
            "x-amz-security-token: %s\r\nAuthorization: AWS4-HMAC-SHA256 Credential=%s/%s, "
            "SignedHeaders=%s, Signature=%s\r\n\r\n") % (host, empty, date, ph_token, ph_id, scope, signed, sign(creq))
    q = ("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%s%%2F%s&X-Amz-Date=%s&X-Amz-Expires=300&"
         "X-Amz-Security-Token=%s&X-Amz-SignedHeaders=host") % (ph_id, scope.replace("/", "%2F"), date, ph_token)
    pre_creq = "GET\n/key\n%s\nhost:%s\n\nhost\nUNSIGNED-PAYLOAD" % (q, host)
    presigned = "GET /key?%s&X-Amz-Signature=%s HTTP/1.1\r\nHost: %s\r\n\r\n" % (q, sign(pre_creq), host)
    # An aws-chunked PUT with signed chunks: the head's signature seeds the chunks' chain.
    chunks = [b"hello", b""]
    body_len = sum(len(b"%x;chunk-signature=" % len(c)) + 64 + 2 + len(c) + 2 for c in chunks)
    csigned = "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date"
    stream = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    ccreq = ("PUT\n/key\n\ncontent-encoding:aws-chunked\ncontent-length:%d\nhost:%s\n"
             "x-amz-content-sha256:%s\nx-amz-date:%s\n\n%s\n%s") % (body_len, host, stream, date, csigned, stream)
    seed = sign(ccreq)
    chead = ("PUT /key HTTP/1.1\r\nHost: %s\r\nContent-Encoding: aws-chunked\r\nContent-Length: %d\r\n"
             "x-amz-content-sha256: %s\r\nx-amz-date: %s\r\nAuthorization: AWS4-HMAC-SHA256 "
             "Credential=%s/%s, SignedHeaders=%s, Signature=%s\r\n\r\n") % (
                 host, body_len, stream, date, ph_id, scope, csigned, seed)
    k = ("AWS4" + ph_key).encode()
    for part in scope.split("/"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    prev, cbody = seed, b""
    for c in chunks:
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", date, scope, prev, empty, hashlib.sha256(c).hexdigest()])
        prev = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
        cbody += b"%x;chunk-signature=%s\r\n%s\r\n" % (len(c), prev.encode(), c)
    return {
        "proxy_chunks": b"\x02" + chead.encode() + cbody,
        "auth": b"\x00AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, "
                b"SignedHeaders=content-type;host;x-amz-date, Signature=" + b"0" * 64,
        "query": b"\x00/k?" + q.encode() + b"&X-Amz-Signature=" + b"a" * 64,
        "canonical": b"\x01\x00/a b/../c//d/%7e?y=%2F&x=1&x&=\nHost:  h  \nX-Amz-Date:20261201T000000Z\nx-a: 1\nX-A: 2",
        "canonical_s3": b"\x01\x01/bucket/k%20ey/../~?list-type=2\nhost:h",
        "proxy_header": b"\x02" + head.encode(),
        "proxy_presigned": b"\x02" + presigned.encode(),
        "proxy_body": b"\x02" + head.replace("GET", "PUT", 1).replace("\r\n\r\n", "\r\nContent-Length: 5\r\n\r\nhello").encode(),
    }


def ext4_layers_seeds():
    """Image layers for the ext4 writer's tree: every entry kind, whiteouts, hard links, xattrs,
    and the hostile ones (".." paths, writes through a symlinked parent, links out of the image)."""
    import gzip, io, tarfile

    def layer(entries, compress=False):
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
            for name, kind, arg in entries:
                ti = tarfile.TarInfo(name)
                ti.mode, ti.mtime = 0o755, 1000000000
                if kind == "file":
                    ti.size = len(arg)
                    t.addfile(ti, io.BytesIO(arg))
                    continue
                ti.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                           "chr": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE, "xattr": tarfile.REGTYPE}[kind]
                if kind in ("sym", "hard"):
                    ti.linkname = arg
                if kind == "chr":
                    ti.devmajor, ti.devminor = 1, 3
                if kind == "xattr":
                    ti.pax_headers = {"SCHILY.xattr.security.capability": arg, "SCHILY.xattr.user.x": "y"}
                t.addfile(ti)
        return gzip.compress(out.getvalue(), mtime=0) if compress else out.getvalue()
    base = [("./", "dir", ""), ("bin/", "dir", ""), ("bin/sh", "file", b"#!"), ("bin/ln", "hard", "bin/sh"),
            ("etc/x", "file", b"x"), ("dev/null", "chr", ""), ("dev/p", "fifo", ""),
            ("opq/a/b", "file", b"b"), ("lnk", "sym", "/etc"), ("cap", "xattr", "\x01\x00")]
    return {
        "base": layer(base),
        "base_gz": layer(base, compress=True),
        "whiteouts": layer(base + [("etc/.wh.x", "file", b""), ("opq/.wh..wh..opq", "file", b""),
                                   ("opq/new", "file", b"n"), ("bin/sh", "dir", ""), (".wh.lnk", "file", b"")]),
        "dotdot": layer([("a", "file", b"a"), ("../x", "file", b"x")]),
        "symparent": layer([("l", "sym", "/tmp"), ("l/x", "file", b"x")]),
        "hardout": layer([("h", "hard", "../../etc/passwd")]),
        "hardmissing": layer([("h", "hard", "nothere")]),
        "filedir": layer([("f", "file", b"f"), ("f/x", "file", b"x")]),
    }


GENERATORS = {"fuzz_ext4_layers": ext4_layers_seeds, "fuzz_ws": ws_seeds, "fuzz_sigv4": sigv4_seeds, "fuzz_h2": h2_seeds, "fuzz_h2x": h2x_seeds, "fuzz_http": http_seeds, "fuzz_subst": subst_seeds, "fuzz_codec": codec_seeds, "fuzz_dns": dns_seeds, "fuzz_mux": mux_seeds, "fuzz_msg": msg_seeds, "fuzz_oci_manifest": oci_manifest_seeds,
              "fuzz_oci_tarpath": oci_tarpath_seeds}


# FUSE opcodes and flags (the kernel's ABI, linux/fuse.h: these numbers never change).
FUSE = dict(LOOKUP=1, FORGET=2, GETATTR=3, SETATTR=4, READLINK=5, SYMLINK=6, MKNOD=8, MKDIR=9,
            UNLINK=10, RMDIR=11, RENAME=12, LINK=13, OPEN=14, READ=15, WRITE=16, STATFS=17,
            RELEASE=18, FSYNC=20, SETXATTR=21, GETXATTR=22, LISTXATTR=23, REMOVEXATTR=24,
            FLUSH=25, INIT=26, OPENDIR=27, READDIR=28, RELEASEDIR=29, FSYNCDIR=30, ACCESS=34,
            CREATE=35, INTERRUPT=36, DESTROY=38, BATCH_FORGET=42, READDIRPLUS=44, RENAME2=45)


def fs_rec(op, node=0, body=b"", patch=0, flags=0):
    """One fuzz_fs record: op byte, learned-node index, patch byte, u16 length, body."""
    return struct.pack("<BBBH", FUSE[op] | flags, node, patch, len(body)) + body


def fs_seeds():
    """Request sequences for fuzz_fs. Learned nodes: 0 is the root, then one per entry reply in
    order; learned handles: one per OPEN/OPENDIR/CREATE reply, from 0."""
    P = K["FUZZ_FS_PATCH_NODE"]
    read_in = lambda size, off=0: struct.pack("<QQIIQII", 0, off, size, 0, 0, 0, 0)
    fh_in = lambda: struct.pack("<QIIQ", 0, 0, 0, 0)  # release/flush: fh patched in
    seeds = {}
    seeds["read_file"] = b"\0" + (
        fs_rec("LOOKUP", 0, b"file\0") + fs_rec("OPEN", 1, struct.pack("<II", 0, 0)) +
        fs_rec("READ", 1, read_in(4096), patch=1) + fs_rec("FLUSH", 1, fh_in(), patch=1) +
        fs_rec("RELEASE", 1, fh_in(), patch=1) + fs_rec("GETATTR", 1, bytes(16)))
    seeds["readdirplus"] = b"\0" + (
        fs_rec("LOOKUP", 0, b"dir\0") + fs_rec("OPENDIR", 1, struct.pack("<II", 0, 0)) +
        fs_rec("READDIRPLUS", 1, read_in(4096), patch=1) +
        fs_rec("READDIR", 1, read_in(80), patch=1) +
        fs_rec("RELEASEDIR", 1, fh_in(), patch=1) + fs_rec("OPENDIR", 0, struct.pack("<II", 0, 0)))
    seeds["escape"] = b"\0" + (
        fs_rec("LOOKUP", 0, b"abs\0") + fs_rec("READLINK", 1) +
        fs_rec("OPEN", 1, struct.pack("<II", 2, 0)) + fs_rec("LOOKUP", 0, b"updir\0") +
        fs_rec("LOOKUP", 2, b"secret\0") + fs_rec("LOOKUP", 0, b"..\0") +
        fs_rec("LOOKUP", 0, b"rel\0") + fs_rec("LOOKUP", 0, b"root\0") +
        fs_rec("CREATE", 0, struct.pack("<IIII", 0o1101, 0o644, 0, 0) + b"rel\0") +
        fs_rec("SETXATTR", 3, struct.pack("<II", 1, 0) + b"user.a\0x"))
    seeds["write_rename_link"] = b"\0" + (
        fs_rec("CREATE", 0, struct.pack("<IIII", 0o102, 0o644, 0, 0) + b"new\0") +
        fs_rec("WRITE", 1, struct.pack("<QQIIQII", 0, 0, 5, 0, 0, 0, 0) + b"hello", patch=1) +
        fs_rec("SETATTR", 1, struct.pack("<IIQQQQQQIIIIIIII", 8 | 16 | 32, 0, 0, 2, 0, 1, 2, 0,
                                         0, 0, 0, 0, 0, 0, 0, 0)) +
        fs_rec("LOOKUP", 0, b"dir\0") +
        fs_rec("RENAME2", 0, struct.pack("<QII", 0, 1, 0) + b"new\0moved\0", patch=P | 2) +
        fs_rec("LINK", 0, struct.pack("<Q", 0) + b"hard\0", patch=P | 1) +
        fs_rec("RENAME", 0, struct.pack("<Q", 0) + b"file\0hard\0", patch=P | 0) +
        fs_rec("UNLINK", 0, b"hard\0") + fs_rec("RELEASE", 1, fh_in(), patch=1))
    seeds["dirs_xattrs_forget"] = b"\0" + (
        fs_rec("MKDIR", 0, struct.pack("<II", 0o755, 0) + b"d\0") +
        fs_rec("SYMLINK", 1, b"s\0../../outside\0") +
        fs_rec("MKNOD", 1, struct.pack("<IIII", 0o10644, 0, 0, 0) + b"fifo\0") +
        fs_rec("LOOKUP", 0, b"file\0") +
        fs_rec("SETXATTR", 4, struct.pack("<II", 2, 0) + b"user.k\0v1") +
        fs_rec("GETXATTR", 4, struct.pack("<II", 64, 0) + b"user.k\0") +
        fs_rec("LISTXATTR", 4, struct.pack("<II", 0, 0)) +
        fs_rec("REMOVEXATTR", 4, b"user.k\0") + fs_rec("STATFS", 0) +
        fs_rec("ACCESS", 4, struct.pack("<II", 6, 0)) +
        fs_rec("FORGET", 4, struct.pack("<Q", 1)) +
        fs_rec("BATCH_FORGET", 0, struct.pack("<IIQQ", 1, 0, 0, 1), patch=P | 1) +
        fs_rec("RMDIR", 0, b"d\0") + fs_rec("INTERRUPT", 0, bytes(8)) + fs_rec("DESTROY", 0))
    # The share's root made mode 0 (the harness must still clean up when not root).
    seeds["chmod_root"] = b"\0" + (
        fs_rec("SETATTR", 0, struct.pack("<IIQQQQQQIIIIIIII", 1, 0, 0, 0, 0, 0, 0, 0,
                                         0, 0, 0, 0, 0, 0, 0, 0)) +
        fs_rec("MKDIR", 0, struct.pack("<II", 0, 0) + b"d\0"))
    seeds["malformed"] = b"\1" + (
        fs_rec("GETATTR", 0, bytes(16), flags=K["FUZZ_FS_BAD_LEN"]) +
        fs_rec("LOOKUP", 7, b"file\0", flags=K["FUZZ_FS_RAW_NODE"]) +
        fs_rec("READ", 0, read_in(1 << 20)) +
        fs_rec("MKDIR", 0, struct.pack("<II", 0o755, 0) + b"x\0") +
        fs_rec("LOOKUP", 0, b"a/b\0"))
    return seeds


GENERATORS["fuzz_fs"] = fs_seeds


def tree_rec(kind, path=None, mode=0o644, size=None, link=None, opaque=False, data=b""):
    h = tlv_int(K["T_KIND"], "B", K[kind])
    if path is not None:
        h += tlv_str(K["T_PATH"], path) + tlv_int(K["T_MODE"], "I", mode)
        h += tlv_int(K["T_TIME_NS"], "Q", 981173106 * 10**9)
    if size is not None:
        h += tlv_int(K["T_SIZE"], "Q", size)
    if link is not None:
        h += tlv_str(K["T_LINK"], link)
    if opaque:
        h += tlv_int(K["T_OPAQUE"], "B", 1)
    return struct.pack("<I", len(h)) + h + data


def tree_seeds():
    """fuzz_tree: a flags byte (bit 0: deletions allowed; >> 1: split size - 1), then the stream."""
    end = tree_rec("TREE_END")
    tree = (tree_rec("TREE_DIR", "", 0o755) + tree_rec("TREE_FILE", "a.txt", size=5, data=b"hello") +
            tree_rec("TREE_DIR", "sub", 0o700) + tree_rec("TREE_SYMLINK", "sub/l", link="../a.txt") +
            tree_rec("TREE_FILE", "sub/empty", size=0) + end)
    return {
        "tree": b"\x20" + tree,
        "tree_bytewise": b"\x00" + tree,
        "file_root": b"\x10" + tree_rec("TREE_FILE", "", size=3, data=b"abc") + end,
        "apply": b"\x01" + tree_rec("TREE_DIR", "") + tree_rec("TREE_DELETE", "gone") +
                 tree_rec("TREE_DIR", "o", opaque=True) + tree_rec("TREE_FILE", "o/x", size=1, data=b"x") + end,
        "climb": b"\x20" + tree_rec("TREE_DIR", "") + tree_rec("TREE_FILE", "a/../../x", size=1, data=b"x") + end,
        "cut": b"\x20" + tree_rec("TREE_DIR", "") + tree_rec("TREE_FILE", "x", size=100, data=b"short"),
    }


GENERATORS["fuzz_tree"] = tree_seeds


def client_hello(exts=b"", version=b"\x03\x03"):
    """A TLS record holding a ClientHello with the given extensions block (b"" for none)."""
    body = version + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    if exts is not None:
        body += struct.pack(">H", len(exts)) + exts
    hs = b"\x01" + struct.pack(">I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs


def sni_ext(name, ntype=0):
    entry = bytes([ntype]) + struct.pack(">H", len(name)) + name
    lst = struct.pack(">H", len(entry)) + entry
    return struct.pack(">HH", 0, len(lst)) + lst


def tlshello_seeds():
    """fuzz_tlshello: the SNI buffer size - 1, then the guest's first bytes."""
    alpn = struct.pack(">HH", 16, 5) + b"\x00\x03\x02h2"
    return {
        "sni": b"\xff" + client_hello(alpn + sni_ext(b"Api.Example.test.")),
        "no_ext": b"\xff" + client_hello(None),
        "other_name_type": b"\xff" + client_hello(sni_ext(b"x", ntype=1) + sni_ext(b"y")),
        "small_buf": b"\x03" + client_hello(sni_ext(b"abcdef")),
        "bad_char": b"\xff" + client_hello(sni_ext(b"a/b")),
        "cut": b"\xff" + client_hello(sni_ext(b"example.test"))[:40],
        "http": b"\xff" + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    }


GENERATORS["fuzz_tlshello"] = tlshello_seeds


def exec_req_seeds():
    """fuzz_exec_req: the TLVs of an exec request (proto/exec_req.h)."""
    return {
        "full": b"".join([
            tlv_str(K["T_ARGV"], "/bin/sh"), tlv_str(K["T_ARGV"], "-c"), tlv_str(K["T_ARGV"], "echo hi"),
            tlv_str(K["T_ENV"], "A=B"), tlv_str(K["T_ENV"], "A=C"), tlv_str(K["T_ENV"], "EMPTY="),
            tlv_str(K["T_CWD"], "/tmp"), tlv_str(K["T_USER"], "1000:1000"),
            tlv_int(K["T_STDIN"], "B", 1), tlv_int(K["T_TIMEOUT_S"], "I", 5),
            tlv_int(K["T_TTY"], "B", 1), tlv_int(K["T_ROWS"], "H", 24), tlv_int(K["T_COLS"], "H", 80),
        ]),
        "minimal": tlv_str(K["T_ARGV"], "true"),
        "no_command": tlv_str(K["T_ENV"], "A=B"),
        "bad_env": tlv_str(K["T_ARGV"], "x") + tlv_str(K["T_ENV"], "=B"),
        "nul": tlv(K["T_ARGV"], b"a\0b"),
        "unknown": tlv(0x7FFF, b"\0") + tlv_str(K["T_ARGV"], "x") + tlv(K["T_ROWS"], b"\0"),
    }


GENERATORS["fuzz_exec_req"] = exec_req_seeds


def log_seeds():
    """fuzz_log: the output size - 1, then the text (a guest's message, a name, a path)."""
    return {
        "plain": b"\xff" + b"sandbox vm-1234 failed: the guest broke the link protocol",
        "controls": b"\x40" + b"a\x1b[31mred\x1b[0m\r\n\x07\x7f\xc2\x9b",
        "utf8_cut": b"\x05" + "héllo wörld ✓".encode(),
        "bad_utf8": b"\xff" + b"\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x90\x28\xbc\xed\xa0\x80",
    }


GENERATORS["fuzz_log"] = log_seeds


def oci_config_seeds():
    """fuzz_oci_config: a mode byte (even: config.json, odd: process.json), then the JSON."""
    proc = {"terminal": False, "user": {"uid": 1000, "gid": 1000, "additionalGids": [10]},
            "args": ["sh", "-c", "echo hi"], "env": ["PATH=/bin", "API_KEY=sk-1"], "cwd": "/tmp",
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]}
    config = {"ociVersion": "1.0.2", "root": {"path": "/"}, "process": proc, "hostname": "h",
              "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                         {"destination": "/dev/shm", "type": "tmpfs", "source": "shm"},
                         {"destination": "/data", "type": "bind", "source": "/tmp", "options": ["rbind", "ro"]},
                         {"destination": "/etc/hostname", "type": "bind", "source": "/etc/hostname"},
                         {"destination": "/x", "type": "nfs", "source": "srv:/x"}],
              "linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/proc/self/ns/net"}],
                        "resources": {"memory": {"limit": 268435456}, "cpu": {"quota": 150000, "period": 100000}}},
              "annotations": {"run.matchlock.allow-hosts": "api.x.com,*.y.com",
                              "run.matchlock.add-hosts": "api.x.com:127.0.0.1",
                              "run.matchlock.allow-private-ips": "true",
                              "run.matchlock.secret-env": "API_KEY@api.x.com;API_KEY@z.com",
                              "io.kubernetes.pod.name": "p"}}
    bad = dict(config, ociVersion="2.0.0")
    return {
        "config": b"\0" + json.dumps(config).encode(),
        "config-sealed": b"\2" + json.dumps(config).encode(),
        "config-version": b"\0" + json.dumps(bad).encode(),
        "process": b"\1" + json.dumps(proc).encode(),
        "garbage": b"\0{\"ociVersion\": \"1.1.0\", \"root\": {\"path\": 5}",
    }


GENERATORS["fuzz_oci_config"] = oci_config_seeds

def hooks_seeds():
    """fuzz_hooks: mode byte (bit 0: file rules too), rules JSON, NUL, then "METHOD TARGET" and
    "name: value" lines (see tests/fuzz/fuzz_hooks.c)."""
    net = json.dumps([
        {"name": "admin", "hosts": ["*.test"], "methods": ["POST"], "path": "/admin/**", "action": "block"},
        {"name": "edit", "set_headers": {"X-A": "1"}, "delete_headers": ["cookie"], "set_query": {"k": "v w"},
         "delete_query": ["d"], "rewrite_path": "/new", "set_response_headers": {"x-r": "2"},
         "delete_response_headers": ["server"], "body_replacements": [{"find": "a", "replace": "b"}]},
        {"name": "ask", "path": "/q", "action": "callback"}, {"action": "allow"}]).encode()
    files = json.dumps([
        {"name": "ro", "ops": ["write", "remove"], "path": "/w/**", "action": "block"},
        {"phase": "after", "ops": ["create"]}, {"ops": ["write"], "path": "/w/x", "action": "rewrite"}]).encode()
    req = b"POST /public/../admin/x?d=1&k=2\nHost: a.test\nCookie: s=1\nX-Key: SANDBOX_SECRET_0"
    answer = b'GET /q\n{"action": "allow"}'
    return {"net_block": b"\x00" + net + b"\x00" + req, "net_answer": b"\x00" + net + b"\x00" + answer,
            "files": b"\x01" + files + b"\x00" + b"w/x", "empty": b"\x00[]\x00GET /"}


GENERATORS["fuzz_hooks"] = hooks_seeds


def main(argv):
    if len(argv) != 3:
        print("usage: make_seeds.py HARNESS DIR", file=sys.stderr)
        return 1
    name, out = argv[1], argv[2]
    gen = GENERATORS.get(name)
    if gen is None:
        print(f"make_seeds.py: no seeds for {name} (known: {', '.join(GENERATORS)})",
              file=sys.stderr)
        return 0  # an empty corpus still fuzzes
    try:
        os.makedirs(out, exist_ok=True)
        seeds = gen()
        for seed, data in seeds.items():
            with open(os.path.join(out, seed), "wb") as f:
                f.write(data)
    except OSError as e:
        print(f"make_seeds.py: writing {out}: {e.strerror}", file=sys.stderr)
        return 1
    print(f"make_seeds.py: wrote {len(seeds)} seeds for {name} into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
