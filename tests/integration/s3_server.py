#!/usr/bin/env python3
"""A fake S3 and STS for test_sigv4.sh that verify AWS SigV4 with the REAL key (stdlib only).

    s3_server.py DIR PORT

The credential comes from the environment: S3_ID, S3_KEY, S3_TOKEN. Makes its own CA
(DIR/s3ca.pem) and a certificate for s3.aws.test and sts.aws.test, and serves HTTPS on
127.0.0.1:PORT. Each request's signature (Authorization header or presigned query) is checked
independently of the proxy's code, with S3's URI rules for service s3 and the other services'
(normalised, encoded twice) otherwise; the payload hash is x-amz-content-sha256 (checked
against the body when it is a hash), UNSIGNED-PAYLOAD for presigned S3, else the body's SHA-256;
an aws-chunked body with signed chunks (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) has each chunk's
signature checked in the chain from the head's, with the real key, and is stored decoded.
A request with another key id, another session token or a wrong signature gets 403
SignatureDoesNotMatch. Each request is logged to DIR/s3.log as "METHOD PATH -> STATUS" and its
headers. S3: PUT /BUCKET/KEY stores, GET /BUCKET/KEY returns, GET /BUCKET?list-type=2 lists
(XML); GET /BUCKET/real-key returns a body that contains the real secret key (the scrubbing
check). STS: POST / with Action=GetCallerIdentity answers an XML identity.
"""
import hashlib, hmac, http.server, os, re, socketserver, ssl, subprocess, sys, urllib.parse

D, PORT = sys.argv[1], int(sys.argv[2])
ID, KEY, TOKEN = os.environ["S3_ID"], os.environ["S3_KEY"], os.environ.get("S3_TOKEN", "")
objects = {}


def make_certs():
    j = lambda n: os.path.join(D, n)
    q = dict(check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", j("s3ca.key"), "-out", j("s3ca.pem"), "-days", "2", "-subj", "/CN=fake S3 CA"], **q)
    with open(j("s3ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:s3.aws.test,DNS:sts.aws.test\nbasicConstraints=CA:FALSE\n")
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", j("s3.key"), "-out", j("s3.csr"), "-subj", "/CN=s3.aws.test"], **q)
    subprocess.run(["openssl", "x509", "-req", "-in", j("s3.csr"), "-CA", j("s3ca.pem"), "-CAkey", j("s3ca.key"),
                    "-CAcreateserial", "-out", j("s3.pem"), "-days", "2", "-extfile", j("s3ext.cnf")], **q)


def enc(s, safe):
    return urllib.parse.quote(s, safe=safe)


def canonical_uri(path, service):
    if service.startswith("s3"):
        return enc(urllib.parse.unquote(path), "/~") or "/"
    out = []
    for seg in path.split("/"):
        if seg == "..":
            out and out.pop()
        elif seg not in ("", "."):
            out.append(seg)
    p = "/" + "/".join(out) + ("/" if out and path.endswith("/") else "")
    return enc(p, "/~")


def canonical_query(query, presigned):
    pairs = []
    for item in query.split("&"):
        if not item:
            continue
        k, _, v = item.partition("=")
        if presigned and k == "X-Amz-Signature":
            continue
        pairs.append((enc(urllib.parse.unquote(k), "~"), enc(urllib.parse.unquote(v), "~")))
    return "&".join("%s=%s" % kv for kv in sorted(pairs))


def check(handler, method, body):
    """None when the request is signed with the real credential, else why not."""
    u = urllib.parse.urlsplit(handler.path)
    q = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
    auth = handler.headers.get("Authorization", "")
    if auth.startswith("AWS4-HMAC-SHA256 "):
        parts = dict(p.strip().split("=", 1) for p in auth[17:].split(","))
        cred, signed, sig = parts["Credential"], parts["SignedHeaders"], parts["Signature"]
        amz_date, presigned = handler.headers.get("X-Amz-Date", ""), False
        token = handler.headers.get("X-Amz-Security-Token", "")
    elif q.get("X-Amz-Algorithm") == "AWS4-HMAC-SHA256":
        cred, signed, sig = q["X-Amz-Credential"], q["X-Amz-SignedHeaders"], q["X-Amz-Signature"]
        amz_date, presigned = q["X-Amz-Date"], True
        token = q.get("X-Amz-Security-Token", "")
    else:
        return "not signed"
    key_id, date, region, service, term = cred.split("/")
    if key_id != ID:
        return "key id %s is not the real one" % key_id
    if token != TOKEN:
        return "session token is not the real one"
    payload = handler.headers.get("x-amz-content-sha256")
    if payload and re.fullmatch("[0-9a-f]{64}", payload) and payload != hashlib.sha256(body).hexdigest():
        return "x-amz-content-sha256 does not match the body"
    if not payload:
        payload = "UNSIGNED-PAYLOAD" if presigned and service == "s3" else hashlib.sha256(body).hexdigest()
    headers = ""
    for name in signed.split(";"):
        vals = handler.headers.get_all(name) or []
        headers += "%s:%s\n" % (name, ",".join(" ".join(v.split()) for v in vals))
    creq = "\n".join([method, canonical_uri(u.path, service), canonical_query(u.query, presigned), headers,
                      signed, payload])
    scope = "%s/%s/%s/%s" % (date, region, service, term)
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    k = ("AWS4" + KEY).encode()
    for part in (date, region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    want = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, sig):
        return "signature does not verify with the real key"
    handler.chain = (k, amz_date, scope, sig)  # the seed of signed chunks
    return None


def decode_signed_chunks(body, chain):
    """The data of an aws-chunked body whose chunks are signed in a chain from the head's
    signature under the real key, or a string saying why not."""
    k, amz_date, scope, prev = chain
    data, i, empty = b"", 0, hashlib.sha256(b"").hexdigest()
    while True:
        eol = body.find(b"\r\n", i)
        if eol < 0:
            return "a chunk line without its end"
        size_hex, _, sig = body[i:eol].decode().partition(";chunk-signature=")
        size = int(size_hex, 16)
        chunk = body[eol + 2:eol + 2 + size]
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, empty, hashlib.sha256(chunk).hexdigest()])
        prev = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(prev, sig):
            return "chunk signature does not verify with the real key"
        data += chunk
        i = eol + 2 + size + 2
        if size == 0:
            return data if i == len(body) else "bytes after the final chunk"


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, status, body, ctype="application/xml"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_one(self, method):
        n = int(self.headers.get("Content-Length", 0) or 0)
        body = self.rfile.read(n) if n else b""
        why = check(self, method, body)
        if not why and self.headers.get("x-amz-content-sha256") == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD":
            body = decode_signed_chunks(body, self.chain)
            if isinstance(body, str):
                why = body
            else:
                why = None if len(body) == int(self.headers.get("x-amz-decoded-content-length", -1)) \
                    else "x-amz-decoded-content-length does not match"
        u = urllib.parse.urlsplit(self.path)
        status = 403 if why else 200
        with open(os.path.join(D, "s3.log"), "a") as f:
            f.write("%s %s -> %d %s\n%s" % (method, self.path, status, why or "", self.headers))
        if why:
            return self.reply(403, ("<Error><Code>SignatureDoesNotMatch</Code><Message>%s</Message>"
                                    "<AWSAccessKeyId>%s</AWSAccessKeyId></Error>" % (why, ID)).encode())
        if self.headers.get("Host", "").startswith("sts."):
            return self.reply(200, b"<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>arn:aws:iam::"
                              b"123456789012:user/test</Arn></GetCallerIdentityResult></GetCallerIdentityResponse>")
        parts = u.path.lstrip("/").split("/", 1)
        bucket, key = parts[0], urllib.parse.unquote(parts[1]) if len(parts) > 1 else ""
        if method == "PUT" and key:
            objects[(bucket, key)] = body
            with open(os.path.join(D, "s3.log"), "a") as f:
                f.write("stored %s/%s %d bytes sha256 %s\n" % (bucket, key, len(body), hashlib.sha256(body).hexdigest()))
            return self.reply(200, b"")
        if method == "GET" and key == "real-key":
            return self.reply(200, ("the key is %s" % KEY).encode(), "text/plain")
        if method == "GET" and key:
            if (bucket, key) not in objects:
                return self.reply(404, b"<Error><Code>NoSuchKey</Code></Error>")
            return self.reply(200, objects[(bucket, key)], "application/octet-stream")
        if method == "GET":
            keys = sorted(k for b, k in objects if b == bucket)
            xml = "<ListBucketResult><Name>%s</Name><KeyCount>%d</KeyCount>%s</ListBucketResult>" % (
                bucket, len(keys), "".join("<Contents><Key>%s</Key><Size>%d</Size></Contents>" %
                                           (k, len(objects[(bucket, k)])) for k in keys))
            return self.reply(200, xml.encode())
        self.reply(400, b"<Error><Code>BadRequest</Code></Error>")

    def do_GET(self):
        self.handle_one("GET")

    def do_PUT(self):
        self.handle_one("PUT")

    def do_POST(self):
        self.handle_one("POST")


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a connection the proxy reset (a refused body) is no error of the server's


make_certs()
srv = Server(("127.0.0.1", PORT), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(os.path.join(D, "s3.pem"), os.path.join(D, "s3.key"))
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
open(os.path.join(D, "s3ready"), "w").close()
srv.serve_forever()
