#!/usr/bin/env python3
"""A gRPC server for test_h2.sh (Debian's python3-grpcio; raw-bytes methods, no protobuf).

    grpc_server.py DIR PORT

TLS with DIR/api.pem (secrets_server.py makes it) on 127.0.0.1:PORT. Service test.Echo:
  Unary   answers "unary got MSG key=K" and trailing metadata x-trailer-key: K
  Stream  answers five messages "msg I key=K"
  Bidi    answers each message M with "echo M key=K"
where K is the call's x-api-key metadata. Each call's method and x-api-key are appended to
DIR/grpc.log, each request message too ("msg: ...").
"""
import os, sys, threading
from concurrent import futures

import grpc

D, PORT = sys.argv[1], int(sys.argv[2])
lock = threading.Lock()


def note(ctx, what, msgs=()):
    key = dict(ctx.invocation_metadata()).get("x-api-key", "-")
    with lock, open(os.path.join(D, "grpc.log"), "a") as f:
        f.write("%s x-api-key: %s\n" % (what, key))
        for m in msgs:
            f.write("msg: %s\n" % m.decode("latin-1"))
    return key.encode()


def unary(req, ctx):
    key = note(ctx, "Unary", [req])
    ctx.set_trailing_metadata((("x-trailer-key", key.decode()),))
    return b"unary got " + req + b" key=" + key


def stream(req, ctx):
    key = note(ctx, "Stream", [req])
    for i in range(5):
        yield b"msg %d key=%s" % (i, key)


def bidi(reqs, ctx):
    key = note(ctx, "Bidi")
    for r in reqs:
        yield b"echo " + r + b" key=" + key


handler = grpc.method_handlers_generic_handler("test.Echo", {
    "Unary": grpc.unary_unary_rpc_method_handler(unary),
    "Stream": grpc.unary_stream_rpc_method_handler(stream),
    "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
server.add_generic_rpc_handlers((handler,))
with open(os.path.join(D, "api.key"), "rb") as k, open(os.path.join(D, "api.pem"), "rb") as c:
    creds = grpc.ssl_server_credentials([(k.read(), c.read())])
server.add_secure_port("127.0.0.1:%d" % PORT, creds)
server.start()
open(os.path.join(D, "grpcready"), "w").close()
server.wait_for_termination()
