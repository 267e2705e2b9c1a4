#!/usr/bin/env python3
"""A fake LLM API for examples/agent/agent_loop.py: HTTPS on 127.0.0.1 with its own test CA,
scripted answers, and a check of every API key it receives. Standard library and openssl(1).

    python3 fake_llm.py DIR API_KEY

writes DIR/ca.pem (the CA to trust), DIR/port (once it listens) and, when the agent says it is
done, DIR/verdict: "ok" or what went wrong. Endpoints (both need "Authorization: Bearer KEY"):

    POST /v1/chat   {messages: [{role, content}]} -> {command} or {done: true, answer}
    GET  /v1/whoami -> {"account": "demo"}   (the tool the sandbox calls with the secret)

The script: (1) ask the sandbox to call /v1/whoami with $LLM_API_KEY, (2) ask it to print
$LLM_API_KEY, (3) done. The key must arrive real from the agent and from the sandbox's request
(the proxy swapped it in), and must never appear in what the sandbox printed.
"""

import http.server
import json
import os
import socketserver
import ssl
import subprocess
import sys
import threading

DIR, KEY = sys.argv[1], sys.argv[2]
problems = []
whoami_calls = 0


def sh(*a: str) -> None:
    subprocess.run(a, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_certs() -> None:
    j = lambda n: os.path.join(DIR, n)  # noqa: E731
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", j("ca.key"), "-out", j("ca.pem"), "-days", "2", "-subj", "/CN=fake LLM test CA",
       "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    with open(j("ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:llm.test,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", j("llm.key"), "-out", j("llm.csr"), "-subj", "/CN=llm.test")
    sh("openssl", "x509", "-req", "-in", j("llm.csr"), "-CA", j("ca.pem"), "-CAkey", j("ca.key"),
       "-CAcreateserial", "-out", j("llm.pem"), "-days", "2", "-extfile", j("ext.cnf"))


def script(messages: list, port: int) -> dict:
    tool_outputs = [m["content"] for m in messages if m.get("role") == "tool"]
    step = len(tool_outputs)
    if step == 0:
        return {"command": f'wget -qO- --header "Authorization: Bearer $LLM_API_KEY" https://llm.test:{port}/v1/whoami'}
    if step == 1:
        if '"account": "demo"' not in tool_outputs[0]:
            problems.append(f"the sandbox's API call failed: {tool_outputs[0]!r}")
        return {"command": 'echo "my key is $LLM_API_KEY"'}
    if KEY in tool_outputs[1]:
        problems.append("the real key reached the sandbox")
    if "SANDBOX_SECRET_" not in tool_outputs[1]:
        problems.append(f"no placeholder in the sandbox: {tool_outputs[1]!r}")
    return {"done": True, "answer": "the sandbox can use the API without ever holding the key"}


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a) -> None:  # quiet
        pass

    def reply(self, code: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def authorized(self) -> bool:
        got = self.headers.get("Authorization", "")
        if got != f"Bearer {KEY}":
            problems.append(f"{self.command} {self.path}: key {got[:40]!r} is not the real one")
            self.reply(401, {"error": "bad key"})
            return False
        return True

    def do_GET(self) -> None:
        global whoami_calls
        if self.path != "/v1/whoami":
            return self.reply(404, {"error": "no such endpoint"})
        if self.authorized():
            whoami_calls += 1
            self.reply(200, {"account": "demo"})

    def do_POST(self) -> None:
        if self.path != "/v1/chat":
            return self.reply(404, {"error": "no such endpoint"})
        n = int(self.headers.get("Content-Length", "0"))
        if n > 1 << 20:
            return self.reply(413, {"error": "too large"})
        req = json.loads(self.rfile.read(n) or b"{}")
        if not self.authorized():
            return
        answer = script(req.get("messages", []), self.server.server_address[1])
        if answer.get("done"):
            if whoami_calls != 1:
                problems.append(f"/v1/whoami was called {whoami_calls} times, want 1")
            with open(os.path.join(DIR, "verdict.tmp"), "w") as f:
                f.write("ok\n" if not problems else "\n".join(problems) + "\n")
            os.rename(os.path.join(DIR, "verdict.tmp"), os.path.join(DIR, "verdict"))
        self.reply(200, answer)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


make_certs()
srv = Server(("127.0.0.1", 0), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(os.path.join(DIR, "llm.pem"), os.path.join(DIR, "llm.key"))
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
with open(os.path.join(DIR, "port.tmp"), "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(os.path.join(DIR, "port.tmp"), os.path.join(DIR, "port"))
threading.Thread(target=srv.serve_forever, daemon=True).start()
try:
    threading.Event().wait()
except KeyboardInterrupt:
    pass
