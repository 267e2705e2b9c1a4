#!/usr/bin/env python3
"""Loopback servers for test_net.sh (stdlib only). Each counts what reaches it in DIR/<name>.count.

  http  127.0.0.1:80 and :8081 (keep-alive, pipelining), :8080 and [::1]:8080 (HTTP/1.0):
        static files from DIR/www; every request's Host and request line go to DIR/requests.log
  echo  127.0.0.1:7007                       TCP echo
  udp   127.0.0.1:5300                       any datagram
  dns   127.0.0.1:53 (udp)                   any DNS query (answered REFUSED)
"""
import http.server, os, socket, socketserver, sys, threading

D = sys.argv[1]
lock = threading.Lock()

def bump(name):
    with lock:
        p = os.path.join(D, name + ".count")
        n = int(open(p).read()) if os.path.exists(p) else 0
        open(p, "w").write(str(n + 1))

class Quiet(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **k):
        super().__init__(*a, directory=os.path.join(D, "www"), **k)
    def log_message(self, *a):
        bump("http")

class KeepAlive(Quiet):
    protocol_version = "HTTP/1.1"
    def parse_request(self):
        ok = super().parse_request()
        if ok:
            with lock:
                with open(os.path.join(D, "requests.log"), "a") as f:
                    f.write("%s %s\n" % (self.headers.get("Host", "-"), self.requestline))
        return ok

class TS(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

class TS6(TS):
    address_family = socket.AF_INET6

class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        bump("echo")
        while True:
            b = self.request.recv(65536)
            if not b:
                break
            self.request.sendall(b)

def serve(srv):
    threading.Thread(target=srv.serve_forever, daemon=True).start()

serve(TS(("127.0.0.1", 80), KeepAlive))
serve(TS(("127.0.0.1", 8081), KeepAlive))
serve(TS(("127.0.0.1", 8080), Quiet))
serve(TS6(("::1", 8080), Quiet))
serve(TS(("127.0.0.1", 7007), Echo))

def udp(port, name, reply):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    def run():
        while True:
            data, addr = s.recvfrom(65536)
            bump(name)
            if reply and len(data) >= 12:
                s.sendto(data[:2] + b"\x81\x05" + data[4:], addr)
    threading.Thread(target=run, daemon=True).start()

udp(5300, "udp", False)
udp(53, "dns", True)
open(os.path.join(D, "ready"), "w").write("1")
threading.Event().wait()
