#!/usr/bin/env python3
"""A loopback HTTPS upstream for the SDK hook tests (stdlib + openssl(1)).

    hooks_upstream.py DIR

Makes a test CA (DIR/ca.pem) and a certificate for api.test, serves HTTPS on 127.0.0.1 on a free
port (written to DIR/port once listening), and appends every request it receives to
DIR/requests.log as its request line and headers, so a test sees what actually left the host.
Every path answers 200 with "path=<path>\\n" and the response header X-Upstream: yes. The same
handler serves plain HTTP on another free port, written to DIR/http_port (before DIR/port).
The test sets SSL_CERT_FILE=DIR/ca.pem for `matchlock rpc` (the proxy trusts it) and pins
api.test to 127.0.0.1 with network.add_hosts.
"""
import http.server, os, socketserver, ssl, subprocess, sys, threading

D = sys.argv[1]
lock = threading.Lock()


def sh(*a):
    subprocess.run(a, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def j(n):
    return os.path.join(D, n)


sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
   "-keyout", j("ca.key"), "-out", j("ca.pem"), "-days", "2", "-subj", "/CN=matchlock hooks test CA",
   "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
with open(j("ext.cnf"), "w") as f:
    f.write("subjectAltName=DNS:api.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
   "-keyout", j("api.key"), "-out", j("api.csr"), "-subj", "/CN=api.test")
sh("openssl", "x509", "-req", "-in", j("api.csr"), "-CA", j("ca.pem"), "-CAkey", j("ca.key"),
   "-CAcreateserial", "-out", j("api.pem"), "-days", "2", "-extfile", j("ext.cnf"))


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        with lock, open(j("requests.log"), "a") as f:
            f.write(self.requestline + "\n" + str(self.headers))
        body = ("path=%s\n" % self.path).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Upstream", "yes")
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET


class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


plain = S(("127.0.0.1", 0), H)
threading.Thread(target=plain.serve_forever, daemon=True).start()
with open(j("http_port"), "w") as f:
    f.write(str(plain.server_address[1]))
srv = S(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(j("api.pem"), j("api.key"))
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
with open(j("port.tmp"), "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(j("port.tmp"), j("port"))
srv.serve_forever()
