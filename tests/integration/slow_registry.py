#!/usr/bin/env python3
"""A registry on loopback that is slow on purpose, for test_rpc_async.sh.

  slow_registry.py DIR ROOTFS [--chunk BYTES] [--interval SECONDS] [--hold SECONDS]

Serves the Docker registry v2 API (GET/HEAD only, no auth) for one image, slow/img:1, made of
ROOTFS (a directory) plus /etc/slow-registry-nonce, a fresh nonce (also written to DIR/nonce), so
every run has a layer no cache holds.
The manifest and config come at once; the layer blob trickles out CHUNK bytes every INTERVAL
seconds, and its last chunk waits until the file DIR/release exists (or HOLD seconds pass, so
nothing waits forever): a test decides when the pull may finish instead of guessing how long it
takes. Writes DIR/port when it listens, and one line per event to DIR/events:
"blob-start", "blob-done", or "blob-abort" (the client went away mid-blob).
"""
import argparse
import http.server
import io
import os
import runpy
import sys
import tarfile
import threading
import time
import types

TOOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "oci_image.py")
REPO, TAG = "slow/img", "1"


def layer_tar(rootfs: str) -> str:
    """ROOTFS plus /etc/slow-registry-nonce, as a tar file next to the events (returns its path)."""
    path = os.path.join(ARGS.dir, "layer.tar")
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        t.add(rootfs, arcname=".", filter=lambda ti: (setattr(ti, "uid", 0), setattr(ti, "gid", 0), ti)[-1])
        nonce = os.urandom(16).hex().encode() + b"\n"
        with open(os.path.join(ARGS.dir, "nonce"), "wb") as f:
            f.write(nonce)
        ti = tarfile.TarInfo("etc/slow-registry-nonce")
        ti.size = len(nonce)
        t.addfile(ti, io.BytesIO(nonce))
    return path


def event(what: str) -> None:
    with LOCK, open(os.path.join(ARGS.dir, "events"), "a") as f:
        f.write(what + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a) -> None:  # quiet: the test reads DIR/events
        pass

    def reply(self, code: int, body: bytes, ctype: str, digest: str = "", head: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if digest:
            self.send_header("Docker-Content-Digest", digest)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def serve(self, head: bool) -> None:
        path = self.path.split("?")[0]
        if path in ("/v2/", "/v2"):
            return self.reply(200, b"{}", "application/json", head=head)
        if path in (f"/v2/{REPO}/manifests/{TAG}", f"/v2/{REPO}/manifests/{DIGEST}"):
            return self.reply(200, MANIFEST, OCI.OCI_MANIFEST, DIGEST, head)
        if path == f"/v2/{REPO}/blobs/{OCI.sha(CONFIG)}":
            return self.reply(200, CONFIG, "application/octet-stream", OCI.sha(CONFIG), head)
        if path == f"/v2/{REPO}/blobs/{OCI.sha(LAYER)}":
            if head:
                return self.reply(200, LAYER, "application/octet-stream", OCI.sha(LAYER), True)
            return self.trickle()
        self.reply(404, b'{"errors":[{"code":"NOT_FOUND"}]}', "application/json", head=head)

    def trickle(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(LAYER)))
        self.send_header("Docker-Content-Digest", OCI.sha(LAYER))
        self.end_headers()
        event("blob-start")
        release = os.path.join(ARGS.dir, "release")
        try:
            last = len(LAYER) - 1  # the final byte waits for DIR/release
            for off in range(0, last, ARGS.chunk):
                self.wfile.write(LAYER[off:min(off + ARGS.chunk, last)])
                self.wfile.flush()
                time.sleep(ARGS.interval)
            deadline = time.monotonic() + ARGS.hold
            while not os.path.exists(release) and time.monotonic() < deadline:
                # Probe the connection while holding: a client that left is noticed.
                self.wfile.write(b"")
                self.wfile.flush()
                if self.connection_gone():
                    raise ConnectionResetError("client gone")
                time.sleep(ARGS.interval)
            self.wfile.write(LAYER[last:])
            self.wfile.flush()
            event("blob-done")
        except (BrokenPipeError, ConnectionResetError):
            event("blob-abort")
            self.close_connection = True

    def connection_gone(self) -> bool:
        """The peer closed (EOF readable) or reset the connection."""
        import select
        r, _, _ = select.select([self.connection], [], [], 0)
        if not r:
            return False
        try:
            return self.connection.recv(1, 0x40) == b""  # MSG_DONTWAIT
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    def do_GET(self) -> None:
        self.serve(False)

    def do_HEAD(self) -> None:
        self.serve(True)


def main() -> None:
    global ARGS, OCI, MANIFEST, CONFIG, LAYER, DIGEST, LOCK
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("rootfs")
    p.add_argument("--chunk", type=int, default=8192)
    p.add_argument("--interval", type=float, default=0.05)
    p.add_argument("--hold", type=float, default=300)
    ARGS = p.parse_args()
    LOCK = threading.Lock()
    OCI = types.SimpleNamespace(**runpy.run_path(TOOL))
    a = types.SimpleNamespace(layers=[("tar", layer_tar(ARGS.rootfs))], compress="gzip", env=[], entrypoint=[],
                              cmd=[], user=None, workdir=None, arch="amd64")
    MANIFEST, CONFIG, layers = OCI.build(a)
    LAYER = layers[0][0]
    DIGEST = OCI.sha(MANIFEST)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    with open(os.path.join(ARGS.dir, "port.tmp"), "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(os.path.join(ARGS.dir, "port.tmp"), os.path.join(ARGS.dir, "port"))
    print(f"slow registry: layer {len(LAYER)} bytes, {ARGS.chunk} every {ARGS.interval}s", file=sys.stderr)
    srv.serve_forever()


if __name__ == "__main__":
    main()
