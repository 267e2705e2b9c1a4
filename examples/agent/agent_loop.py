#!/usr/bin/env python3
"""An agent loop on matchlock: ask an LLM for a command, run it in a sandbox, feed the output
back, until the LLM says it is done.

The LLM's API key is given to the sandbox as a secret: commands in the sandbox see only a
placeholder in $LLM_API_KEY, and the proxy puts the real key into requests to the LLM's host
only, so code the LLM writes can call the API but can never read or leak the key.

    LLM_BASE_URL=https://127.0.0.1:PORT LLM_API_KEY=... LLM_CA_FILE=ca.pem \\
        python3 agent_loop.py ROOTFS_OR_IMAGE

examples/agent/fake_llm.py is a scripted stand-in for the LLM (tests/sdk/run_examples runs both).
"""

import json
import os
import ssl
import sys
import urllib.parse
import urllib.request

from matchlock import Client, Secret

MAX_STEPS = 8  # a bound on the conversation
OUTPUT_MAX = 16 << 10  # bytes of a command's output fed back to the LLM

base = os.environ["LLM_BASE_URL"]
key = os.environ["LLM_API_KEY"]
tls = ssl.create_default_context(cafile=os.environ.get("LLM_CA_FILE"))
port = urllib.parse.urlsplit(base).port or 443
image = sys.argv[1] if len(sys.argv) > 1 else "alpine:latest"
if os.path.exists(image):  # a local root filesystem, not a registry reference
    image = os.path.abspath(image)


def ask(messages: list) -> dict:
    req = urllib.request.Request(base + "/v1/chat", data=json.dumps({"messages": messages}).encode(),
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=tls, timeout=60) as r:
        return json.load(r)


# The sandbox reaches the LLM's API as llm.test (here on the host's loopback, hence
# add_hosts and block_private_ips=False; a real API needs neither) and nothing else.
with Client() as client, client.create(
        image, memory_mb=256, timeout_seconds=600,
        secrets=[Secret("LLM_API_KEY", key, (f"llm.test:{port}",))],
        allowed_hosts=[f"llm.test:{port}"], add_hosts={"llm.test": "127.0.0.1"}, block_private_ips=False,
        upstream_ca=[os.environ["LLM_CA_FILE"]] if os.environ.get("LLM_CA_FILE") else []) as sb:
    messages = [{"role": "user", "content": "Check that the sandbox can use the API, then report."}]
    for step in range(MAX_STEPS):
        reply = ask(messages)
        if reply.get("done"):
            print("agent:", reply.get("answer", ""))
            break
        command = reply["command"]
        print(f"step {step + 1}: {command}")
        result = sb.exec(command, timeout=120)
        output = (result.stdout + result.stderr)[:OUTPUT_MAX].decode("utf-8", "replace")
        print(f"  exit {result.exit_code}: {output.strip()[:200]}")
        messages += [{"role": "assistant", "content": command},
                     {"role": "tool", "content": output, "exit_code": result.exit_code}]
    else:
        sys.exit(f"no answer after {MAX_STEPS} steps")
