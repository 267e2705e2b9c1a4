#!/usr/bin/env python3
"""A git smart-HTTP server over TLS for test_secrets.sh: `git http-backend` (CGI) behind Basic
auth, on 127.0.0.1:PORT with DIR/api.pem (the secrets suite's certificate for api.test).

  git_server.py DIR PORT REPOS

The password is read from DIR/git.password at each request (the test writes the real secret
there); every Authorization header received is appended to DIR/git.log, so the test sees what
left the host. A wrong or missing password gets 401 with a Basic challenge, as a git host does.
"""
import base64, http.server, os, socketserver, ssl, subprocess, sys

D, PORT, REPOS = sys.argv[1], int(sys.argv[2]), sys.argv[3]


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _authorized(self):
        got = self.headers.get("Authorization", "")
        with open(os.path.join(D, "git.log"), "a") as f:
            f.write("%s %s %s\n" % (self.command, self.path, got))
        want = open(os.path.join(D, "git.password")).read().strip()
        token = base64.b64encode(("x:" + want).encode()).decode()
        return got == "Basic " + token

    def _backend(self, body):
        if not self._authorized():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        env = {"GIT_PROJECT_ROOT": REPOS, "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path,
               "QUERY_STRING": query, "REQUEST_METHOD": self.command, "REMOTE_USER": "x",
               "CONTENT_TYPE": self.headers.get("Content-Type", ""),
               "CONTENT_LENGTH": str(len(body)), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        out = subprocess.run(["git", "http-backend"], input=body, env=env,
                             capture_output=True, check=False).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.split(b"\r\n"):
            k, _, v = line.decode().partition(":")
            if k.lower() == "status":
                status = int(v.split()[0])
            elif k:
                headers.append((k, v.strip()))
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                n = int(self.rfile.readline().split(b";")[0], 16)
                if n == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(n)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_GET(self):
        self._backend(b"")

    def do_POST(self):
        self._backend(self._read_body())


class TS(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


srv = TS(("127.0.0.1", PORT), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(os.path.join(D, "api.pem"), os.path.join(D, "api.key"))
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
open(os.path.join(D, "git.ready"), "w").write("1")
srv.serve_forever()
