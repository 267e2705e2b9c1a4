#!/bin/bash
# AWS SigV4 re-signing, end to end: boto3 (Debian's python3-boto3, in the matchlock/clients
# image; a stdlib signer for aws-chunked bodies with signed chunks) in the guest holds
# placeholder AWS credentials (--secret aws@HOSTS) and signs as usual;
# a fake S3/STS on the suite's private loopback (tests/integration/s3_server.py) verifies every
# signature with the REAL key, independently of the proxy's code. Runs in private mount and
# network namespaces (unshare -mn) like test_secrets.sh.
. "$(dirname "$0")/netns.sh"
. "$(dirname "$0")/lib.sh"

SRV=$T_OUT/srv
mkdir -p "$SRV"
export AWS_ACCESS_KEY_ID="AKIDREAL$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F)"
export AWS_SECRET_ACCESS_KEY="real/$(head -c 15 /dev/urandom | base64 | tr -d '\n')+key"
export AWS_SESSION_TOKEN="token/$(head -c 24 /dev/urandom | base64 | tr -d '\n')="
S3_ID=$AWS_ACCESS_KEY_ID S3_KEY=$AWS_SECRET_ACCESS_KEY S3_TOKEN=$AWS_SESSION_TOKEN \
	python3 "$ROOT/tests/integration/s3_server.py" "$SRV" 9446 &
SRV_PID=$!
trap 'kill $SRV_PID 2>/dev/null; "$ML" kill --all >/dev/null 2>&1; rm -rf "$MATCHLOCK_HOME" "$T_OUT"' EXIT
for _ in $(seq 100); do [ -e "$SRV/s3ready" ] && break; sleep 0.1; done
[ -e "$SRV/s3ready" ] || { echo "the fake S3 did not start"; echo "0 passed, 1 failed"; exit 1; }

ML="$ML" "$ROOT/scripts/default-image.sh" >/dev/null 2>&1 || { echo "no default image (make default-image)"; echo "0 passed, 1 failed"; exit 1; }
IMG=(--image matchlock/default)
CLIENTS=(--image matchlock/clients)
ML="$ML" "$ROOT/scripts/default-image.sh" clients >/dev/null 2>&1 || CLIENTS=()

AWS=(--secret "aws@s3.aws.test:9446,sts.aws.test:9446" --add-host s3.aws.test:127.0.0.1
	--add-host sts.aws.test:127.0.0.1 --upstream-ca "$SRV/s3ca.pem")
s3log() { cat "$SRV/s3.log" 2>/dev/null; }
# Nothing the guest printed, nor matchlock's own output, may carry the real key or token.
expect_no_real() {
	[[ $OUT$ERR != *"$AWS_SECRET_ACCESS_KEY"* ]] || fail "the real secret key reached the guest or the terminal"
	[[ $OUT$ERR != *"$AWS_SESSION_TOKEN"* ]] || fail "the real session token reached the guest or the terminal"
	[[ $OUT$ERR != *"$AWS_ACCESS_KEY_ID"* ]] || fail "the real key id reached the guest or the terminal"
}

# The guest's boto3 clients: path-style S3 and STS at the fake endpoints.
PRELUDE='
import os, ssl, sys, urllib.request
import boto3
from botocore.config import Config
CA = os.environ["SSL_CERT_FILE"]
def s3(**kw):
    return boto3.client("s3", endpoint_url="https://s3.aws.test:9446", region_name="us-east-1",
                        verify=CA, config=Config(signature_version="s3v4", s3=dict(addressing_style="path", **kw)))
'

t_boto3_calls_are_signed_again_with_the_real_key() {
	[ ${#CLIENTS[@]} -gt 0 ] || skip "no matchlock/clients image (make client-image)"
	: >"$SRV/s3.log"
	ml run "${CLIENTS[@]}" "${AWS[@]}" -- python3 -c "$PRELUDE"'
for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
    print("env", k, os.environ[k])
c = s3()
c.put_object(Bucket="bk", Key="dir/hello world.txt", Body=b"unsigned payload")
s3(payload_signing_enabled=True).put_object(Bucket="bk", Key="signed.txt", Body=b"signed payload")
print("list", sorted(o["Key"] for o in c.list_objects_v2(Bucket="bk")["Contents"]))
print("get", c.get_object(Bucket="bk", Key="dir/hello world.txt")["Body"].read().decode())
url = c.generate_presigned_url("get_object", Params={"Bucket": "bk", "Key": "signed.txt"}, ExpiresIn=300)
print("presigned", urllib.request.urlopen(url, context=ssl.create_default_context(cafile=CA)).read().decode())
print("echo", c.get_object(Bucket="bk", Key="real-key")["Body"].read().decode())
sts = boto3.client("sts", endpoint_url="https://sts.aws.test:9446", region_name="us-east-1", verify=CA)
print("sts", sts.get_caller_identity()["Arn"])
'
	expect_eq "status ($ERR)" "$RC" 0
	expect_match "placeholder credentials in the guest" "$OUT" "env AWS_SECRET_ACCESS_KEY SANDBOX_SECRET_[0-9a-f]{32}"
	expect_match "session token placeholder" "$OUT" "env AWS_SESSION_TOKEN SANDBOX_SECRET_[0-9a-f]{32}"
	expect_match "list" "$OUT" "list \['dir/hello world.txt', 'signed.txt'\]"
	expect_match "get" "$OUT" "get unsigned payload"
	expect_match "presigned URL" "$OUT" "presigned signed payload"
	expect_match "the echoed key is scrubbed" "$OUT" "echo the key is SANDBOX_SECRET_[0-9a-f]{32}"
	expect_match "sts (payload hash of a held body)" "$OUT" "sts arn:aws:iam::123456789012:user/test"
	[ "$(s3log | grep -c -- '-> 200')" = 7 ] || fail "the fake S3 did not verify 7 requests: $(s3log | grep -- '->')"
	[[ $(s3log) != *SANDBOX_SECRET_* ]] || fail "a placeholder reached the fake S3"
	[[ $(s3log) == *"X-Amz-Content-SHA256: UNSIGNED-PAYLOAD"* ]] || fail "no UNSIGNED-PAYLOAD upload: $(s3log)"
	expect_no_real
}

# A PUT whose aws-chunked body is signed chunk by chunk (STREAMING-AWS4-HMAC-SHA256-PAYLOAD), as
# some SDKs send it, signed in the guest with stdlib hmac (boto3 does not sign chunks).
CHUNKED_PUT='
import datetime, hashlib, hmac, http.client, os, ssl, sys
def put(name, chunk_key):
    kid, tok = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SESSION_TOKEN"]
    date = datetime.datetime.utcnow().strftime("%Y%m%dT%H%M%SZ")
    scope = date[:8] + "/us-east-1/s3/aws4_request"
    def signing_key(key):
        k = ("AWS4" + key).encode()
        for part in scope.split("/"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        return k
    chunks = [b"a" * 70000, b"b" * 1000, b""]
    length = sum(len(b"%x;chunk-signature=" % len(c)) + 64 + 4 + len(c) for c in chunks)
    h = {"content-encoding": "aws-chunked", "content-length": str(length), "host": "s3.aws.test:9446",
         "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "x-amz-date": date,
         "x-amz-decoded-content-length": "71000", "x-amz-security-token": tok}
    signed = ";".join(sorted(h))
    creq = "\n".join(["PUT", "/chunks/" + name, "", "".join("%s:%s\n" % (k, h[k]) for k in sorted(h)), signed,
                      "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"])
    sts = "\n".join(["AWS4-HMAC-SHA256", date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    prev = seed = hmac.new(signing_key(os.environ["AWS_SECRET_ACCESS_KEY"]), sts.encode(), hashlib.sha256).hexdigest()
    body = b""
    for c in chunks:
        s = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", date, scope, prev, hashlib.sha256(b"").hexdigest(),
                       hashlib.sha256(c).hexdigest()])
        prev = hmac.new(signing_key(chunk_key), s.encode(), hashlib.sha256).hexdigest()
        body += b"%x;chunk-signature=%s\r\n%s\r\n" % (len(c), prev.encode(), c)
    h["authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (kid, scope, signed, seed)
    del h["host"]
    c = http.client.HTTPSConnection("s3.aws.test", 9446, context=ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"]))
    try:
        c.request("PUT", "/chunks/" + name, body=body, headers=h)
        print(name, c.getresponse().status)
    except (ConnectionError, http.client.HTTPException) as e:
        print(name, "cut", type(e).__name__)
put("streamed.txt", os.environ["AWS_SECRET_ACCESS_KEY"])
put("forged.txt", "a-key-the-guest-made-up")
'

t_signed_chunks_are_signed_again_chunk_by_chunk() {
	: >"$SRV/s3.log"
	ml run "${IMG[@]}" "${AWS[@]}" -- python3 -c "$CHUNKED_PUT"
	expect_eq "status ($ERR)" "$RC" 0
	expect_match "the streamed upload passed" "$OUT" "streamed.txt 200"
	local want
	want=$(python3 -c 'import hashlib; print(hashlib.sha256(b"a" * 70000 + b"b" * 1000).hexdigest())')
	[[ $(s3log) == *"stored chunks/streamed.txt 71000 bytes sha256 $want"* ]] || fail "the fake S3 did not store the decoded body: $(s3log | grep -v '^[A-Z][a-z-]*:')"
	expect_match "chunks signed with another key are refused" "$OUT" "forged.txt (403|cut)"
	[[ $(s3log) != *"forged.txt -> 200"* && $(s3log) != *"stored chunks/forged.txt"* ]] || fail "the forged chunks were stored"
	expect_match "secret_leak event" "$ERR" "a chunk of its aws-chunked body was not signed"
	expect_no_real
}

t_a_call_signed_with_another_key_is_refused() {
	[ ${#CLIENTS[@]} -gt 0 ] || skip "no matchlock/clients image (make client-image)"
	: >"$SRV/s3.log"
	ml run "${CLIENTS[@]}" "${AWS[@]}" -- python3 -c "$PRELUDE"'
os.environ["AWS_SECRET_ACCESS_KEY"] = "a-key-the-guest-made-up"
try:
    s3().list_objects_v2(Bucket="bk")
    print("forged call passed")
except Exception as e:
    print("refused", e.response["ResponseMetadata"]["HTTPStatusCode"])
'
	expect_eq "status ($ERR)" "$RC" 0
	expect_match "refused by the proxy" "$OUT" "refused 403"
	expect_match "secret_leak event" "$ERR" "secret_leak blocked GET https://s3.aws.test:9446/bk"
	expect_match "the reason" "$ERR" "not made with the sandbox's placeholder secret key"
	[ -z "$(s3log)" ] || fail "the forged request reached the fake S3: $(s3log)"
	expect_no_real
}

t_the_secret_key_placeholder_never_leaves() {
	: >"$SRV/s3.log"
	ml run "${IMG[@]}" "${AWS[@]}" -- sh -c '
		curl -sS -o /dev/null -w "header=%{http_code}\n" -H "X-Leak: $AWS_SECRET_ACCESS_KEY" https://s3.aws.test:9446/bk
		curl -sS -o /dev/null -w "body=%{http_code}\n" -X PUT --data-binary "k=$AWS_SECRET_ACCESS_KEY" https://s3.aws.test:9446/bk/x'
	expect_eq "status ($ERR)" "$RC" 0
	expect_match "in a header" "$OUT" "header=403"
	expect_match "in a body" "$OUT" "body=403"
	expect_match "why" "$ERR" "the AWS secret access key, which is never sent anywhere"
	[ -z "$(s3log)" ] || fail "a request carrying the secret key's placeholder reached the fake S3: $(s3log)"
	expect_no_real
}

t_aws_secret_needs_the_credential() {
	( unset AWS_SECRET_ACCESS_KEY; ml run "${IMG[@]}" --secret aws@s3.aws.test -- true
	  expect_one_line_error
	  expect_match "names the variable" "$ERR" "AWS_SECRET_ACCESS_KEY is not set" )
}

t_rpc_create_takes_an_aws_credential() {
	ML="$ML" python3 - >"$T_OUT/out" 2>"$T_OUT/err" <<'PY'
import json, os, subprocess
p = subprocess.Popen([os.environ["ML"], "rpc"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
n = 0
def call(method, params):
    global n
    n += 1
    p.stdin.write((json.dumps({"jsonrpc": "2.0", "id": n, "method": method, "params": params}) + "\n").encode())
    p.stdin.flush()
    while True:
        msg = json.loads(p.stdout.readline())
        if msg.get("id") == n and "method" not in msg:
            return msg
cred = {k: os.environ[v] for k, v in (("access_key_id", "AWS_ACCESS_KEY_ID"),
        ("secret_access_key", "AWS_SECRET_ACCESS_KEY"), ("session_token", "AWS_SESSION_TOKEN"))}
bad = call("create", {"image": "matchlock/default", "network": {"secrets": {"aws": {"access_key_id": "AKID", "hosts": ["s3.aws.test"]}}}})
print("bad:", bad.get("error", {}).get("message"))
r = call("create", {"image": "matchlock/default", "network": {"secrets": {"aws": dict(cred, hosts=["s3.aws.test"])}}})
print("create:", "error" not in r)
r = call("exec", {"command": "env | grep ^AWS_ | sort"})
import base64
out = r["result"]["stdout"]
print(base64.b64decode(out).decode() if not out.startswith("AWS") else out)
call("close", {})
p.stdin.close()
p.wait(timeout=60)
PY
	OUT=$(cat "$T_OUT/out")
	ERR=$(cat "$T_OUT/err")
	expect_match "a credential without its secret key is refused" "$OUT" "bad: .*needs access_key_id, secret_access_key and at least one host"
	expect_match "created" "$OUT" "create: True"
	expect_match "key id placeholder" "$OUT" "AWS_ACCESS_KEY_ID=SANDBOX_SECRET_[0-9a-f]{32}"
	expect_match "secret key placeholder" "$OUT" "AWS_SECRET_ACCESS_KEY=SANDBOX_SECRET_[0-9a-f]{32}"
	expect_match "token placeholder" "$OUT" "AWS_SESSION_TOKEN=SANDBOX_SECRET_[0-9a-f]{32}"
	expect_no_real
}

run_tests "$@"
