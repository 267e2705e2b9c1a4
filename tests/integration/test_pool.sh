#!/bin/bash
# Pools (matchlock pool): standbys are claimed at most once, even by ten concurrent runs; a crashed
# standby is skipped and cleaned; every claim gets its own identity, as template clones do; a
# shape that does not match starts without the pool; set/ls/rm, image rm and bad input; pool rm
# leaves nothing behind. Runs as any user (everything lives under $MATCHLOCK_HOME).
. "$(dirname "$0")/lib.sh"

IMG=local/pool-test:1
TOOL="python3 $ROOT/scripts/oci_image.py"
tar -C "$ROOTFS" --owner=0 --group=0 -cf "$T_OUT/base.tar" . &&
	$TOOL docker-save "$T_OUT/save.tar" --layer "$T_OUT/base.tar" --env PATH=/bin:/usr/bin --cmd sh &&
	"$ML" image import "$IMG" <"$T_OUT/save.tar" >/dev/null || { echo "cannot build the test image"; exit 1; }

pools_dir() { echo "$MATCHLOCK_HOME/state/pools"; }
# The IDs of a pool's ready standbys (one pool at a time in these tests).
ready_ids() { ls "$(pools_dir)"/*/ready 2>/dev/null | grep '^vm-' | sort; }
# pool_wait N: until N standbys are ready (bounded).
pool_wait() {
	local i
	for i in $(seq 1 600); do
		[ "$(ready_ids | wc -l)" -ge "$1" ] && return 0
		sleep 0.2
	done
	fail "the pool did not fill to $1 within 120 s: $("$ML" pool ls) $(cat "$(pools_dir)"/*/error 2>/dev/null)"
}
# Standby and holder processes of this suite (others may run other suites meanwhile).
ours() {
	local p
	for p in $(pgrep -f "matchlock pool __"); do
		{ tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -qxF "MATCHLOCK_HOME=$MATCHLOCK_HOME" && echo "$p"
	done
}
# Nothing of a pool left: no pool directory, no standby process, no sandbox, no QEMU.
pool_gone() {
	local i
	for i in $(seq 1 100); do
		[ -z "$(ours)" ] && break
		sleep 0.2
	done
	[ -z "$(ours)" ] || fail "a standby or holder process is still running: $(ours)"
	[ -z "$(ls -A "$(pools_dir)" 2>/dev/null)" ] || fail "left in pools: $(ls -R "$(pools_dir)")"
	expect_clean
}
pool_set() { "$ML" pool set --image "$IMG" "$@" >"$T_OUT/key" || fail "pool set $*"; }
pool_rm_all() { "$ML" pool rm --all >/dev/null; }

t_set_ls_rm_leaves_nothing() {
	ml pool set --image "$IMG" --size 2
	expect_eq status "$RC" 0
	expect_match key "$OUT" '^[0-9a-f]{32}$'
	local key=$OUT
	pool_wait 2
	ml pool ls
	expect_match "pool ls" "$OUT" "${key:0:12} +$IMG +1 +512 MB +2 +2 +0"
	[ "$("$ML" ls | grep -c running)" = 2 ] || fail "ls shows the standbys: $("$ML" ls)"
	ml pool rm "${key:0:8}"
	expect_eq "rm status" "$RC" 0
	expect_eq "rm prints the key" "$OUT" "$key"
	ml pool ls
	[ "$(grep -c . <<<"$OUT")" = 1 ] || fail "pool ls after rm: $OUT"
	pool_gone
	[ -z "$("$ML" ls | grep vm-)" ] || fail "records left: $("$ML" ls)"
}

t_claim_runs_the_command_and_refills() {
	pool_set --size 1
	pool_wait 1
	local before after
	before=$(ready_ids)
	ml run --image "$IMG" -- sh -c 'hostname; echo out; echo err >&2; exit 3'
	expect_eq status "$RC" 3
	expect_eq "the claimed standby's ID is the sandbox's" "$(sed -n 1p <<<"$OUT")" "$before"
	expect_eq stdout "$(sed -n 2p <<<"$OUT")" out
	expect_eq stderr "$ERR" err
	# --rm: the claimed sandbox is gone with its command.
	[ -d "$MATCHLOCK_HOME/state/sandboxes/$before" ] && fail "the claimed sandbox's directory stayed"
	pool_wait 1
	after=$(ready_ids)
	[ "$after" != "$before" ] || fail "no replacement was started"
	# Interactive stdin through a claimed standby.
	pool_wait 1
	local got
	got=$(printf 'b\na\n' | "$ML" run -i --image "$IMG" -- sort)
	expect_eq "stdin" "$got" "$(printf 'a\nb')"
	# --no-pool never takes one.
	pool_wait 1
	before=$(ready_ids)
	ml run --no-pool --image "$IMG" -- hostname
	[ "$OUT" != "$before" ] || fail "--no-pool took the standby"
	expect_eq "standby untouched" "$(ready_ids)" "$before"
	pool_rm_all
	pool_gone
}

t_ten_parallel_runs_never_share_a_sandbox() {
	pool_set --size 3
	pool_wait 3
	local before i
	before=$(ready_ids)
	for i in $(seq 1 10); do
		# A marker on the sandbox's own disk: it exists before only if the disk was used before.
		"$ML" run --image "$IMG" -- sh -c \
			'test -e /root/marker && echo SHARED; echo x > /root/marker; hostname; head -c 16 /dev/urandom | od -An -tx1 | tr -d " \n"; echo' \
			>"$T_OUT/par.$i" 2>"$T_OUT/par.$i.err" &
	done
	wait
	for i in $(seq 1 10); do
		[ "$(wc -l <"$T_OUT/par.$i")" = 2 ] || fail "run $i: $(cat "$T_OUT/par.$i" "$T_OUT/par.$i.err")"
	done
	cat "$T_OUT"/par.? "$T_OUT"/par.10 >"$T_OUT/all"
	grep -q SHARED "$T_OUT/all" && fail "a sandbox was handed out twice (marker found)"
	[ "$(sed -n 1~2p "$T_OUT/all" | sort -u | wc -l)" = 10 ] || fail "hostnames not distinct: $(cat "$T_OUT/all")"
	[ "$(sed -n 2~2p "$T_OUT/all" | sort -u | wc -l)" = 10 ] || fail "random bytes repeated"
	local claimed
	claimed=$(sed -n 1~2p "$T_OUT/all" | grep -cxF -f <(echo "$before"))
	[ "$claimed" -ge 1 ] || fail "no run took a standby of the pool (ready: $before)"
	pool_rm_all
	pool_gone
}

t_crashed_standby_is_skipped_and_cleaned() {
	pool_set --size 2
	pool_wait 2
	local a b qpid spid
	a=$(ready_ids | sed -n 1p)
	b=$(ready_ids | sed -n 2p)
	# a: its QEMU dies; b: its supervisor dies (and QEMU with it).
	# QEMU is its supervisor's child (the standby's process, named by its entry).
	qpid=$(pgrep -P "$(cut -d' ' -f1 "$(pools_dir)"/*/ready/"$a")" -f qemu-system) || fail "no QEMU for $a"
	spid=$(cut -d' ' -f1 "$(pools_dir)"/*/ready/"$b")
	local bq i
	bq=$(pgrep -P "$spid" -f qemu-system) || fail "no QEMU for $b"
	kill -9 "$qpid" "$spid"
	for i in $(seq 1 100); do
		kill -0 "$qpid" 2>/dev/null || kill -0 "$bq" 2>/dev/null || break
		sleep 0.1
	done
	MATCHLOCK_DEBUG=1 ml run --image "$IMG" -- hostname
	DBG=$ERR
	expect_eq status "$RC" 0
	[ "$OUT" != "$a" ] && [ "$OUT" != "$b" ] || fail "a crashed standby was handed out: $OUT"
	pool_wait 2
	ready_ids | grep -qx -e "$a" -e "$b" && fail "a crashed standby is listed as ready"
	for i in $(seq 1 100); do
		[ -d "$MATCHLOCK_HOME/state/sandboxes/$a" ] || [ -d "$MATCHLOCK_HOME/state/sandboxes/$b" ] || break
		sleep 0.2
	done
	[ -d "$MATCHLOCK_HOME/state/sandboxes/$a" ] && { ls -la "$MATCHLOCK_HOME/state/sandboxes/$a"; tail -5 "$MATCHLOCK_HOME/state/sandboxes/$a/log"; "$ML" ls; pgrep -af matchlock; fail "$a (QEMU killed): directory was not cleaned"; }
	[ -d "$MATCHLOCK_HOME/state/sandboxes/$b" ] && { ls -la "$MATCHLOCK_HOME/state/sandboxes/$b" "$(pools_dir)"/*/*; "$ML" ls; echo "$DBG" | grep -i pool; fail "$b (supervisor killed): directory was not cleaned"; }
	"$ML" ls | grep -q -e "$a" -e "$b" && fail "a crashed standby's record stayed: $("$ML" ls)"
	pool_rm_all
	pool_gone
}

t_abandoned_claim_returns_the_standby() {
	pool_set --size 1
	pool_wait 1
	local id key
	id=$(ready_ids)
	key=$(cat "$T_OUT/key")
	# A claimer that died after taking the entry and before taking the VM (pid 999999 is not
	# running): the standby goes back to ready, and is then claimed as usual.
	mv "$(pools_dir)/$key/ready/$id" "$(pools_dir)/$key/claimed/$id.999999"
	ml pool ls
	expect_match "pool ls" "$OUT" " 1 +1 +0$"
	expect_eq "back in ready" "$(ready_ids)" "$id"
	ml run --image "$IMG" -- hostname
	expect_eq "claimed after all" "$OUT" "$id"
	pool_rm_all
	pool_gone
}

t_identity_differs_per_claim() {
	pool_set --size 2
	pool_wait 2
	local before a b ta tb now t
	before=$(ready_ids)
	a=$("$ML" run -d --secret TOKEN=same-value@api.test --image "$IMG") || fail "run -d a"
	b=$("$ML" run -d --secret TOKEN=same-value@api.test --image "$IMG") || fail "run -d b"
	grep -qx "$a" <<<"$before" || fail "a ($a) did not come from the pool ($before)"
	grep -qx "$b" <<<"$before" || fail "b ($b) did not come from the pool ($before)"
	local probe='hostname; head -c 16 /dev/urandom | od -An -tx1 | tr -d " \n"; echo; date +%s; grep -c BEGIN /etc/ssl/certs/ca-certificates.crt; echo $TOKEN'
	ta=$("$ML" exec "$a" -- sh -c "$probe; echo secret-a > /tmp/mine")
	tb=$("$ML" exec "$b" -- sh -c "$probe; cat /tmp/mine 2>&1")
	now=$(date +%s)
	expect_eq "hostname a" "$(sed -n 1p <<<"$ta")" "$a"
	expect_eq "hostname b" "$(sed -n 1p <<<"$tb")" "$b"
	[ "$(sed -n 2p <<<"$ta")" != "$(sed -n 2p <<<"$tb")" ] || fail "two claims drew the same random bytes"
	for t in "$ta" "$tb"; do
		local d=$((now - $(sed -n 3p <<<"$t")))
		[ "${d#-}" -le 5 ] || fail "guest clock off by $d s"
	done
	# The standby's own CA was replaced, not joined, by the claim's.
	expect_eq "one CA trusted in a" "$(sed -n 4p <<<"$ta")" 1
	expect_eq "one CA trusted in b" "$(sed -n 4p <<<"$tb")" 1
	expect_match "placeholder a" "$(sed -n 5p <<<"$ta")" '^SANDBOX_SECRET_[0-9a-f]{32}$'
	expect_match "placeholder b" "$(sed -n 5p <<<"$tb")" '^SANDBOX_SECRET_[0-9a-f]{32}$'
	[ "$(sed -n 5p <<<"$ta")" != "$(sed -n 5p <<<"$tb")" ] || fail "two claims got the same placeholder"
	expect_match "b cannot see a's file" "$(sed -n 6p <<<"$tb")" "No such file"
	"$ML" get "$a" | grep -q "same-value" && fail "the secret value is in the record"
	"$ML" get "$a" | grep -q '"status": *"running"' || "$ML" ls | grep -q "$a *running" || fail "a is not running: $("$ML" ls)"
	"$ML" kill "$a" >/dev/null
	"$ML" kill "$b" >/dev/null
	"$ML" rm "$a" "$b" >/dev/null
	pool_rm_all
	pool_gone
}

t_rpc_create_claims_a_standby() {
	pool_set --size 1
	pool_wait 1
	local before got
	before=$(ready_ids)
	# create, exec, close over the raw protocol, each after the answer before it.
	got=$(ML=$ML IMG=$IMG timeout 120 python3 - <<'PY'
import base64, json, os, subprocess
p = subprocess.Popen([os.environ["ML"], "rpc"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                     stderr=subprocess.DEVNULL, text=True)
def call(i, method, params):
    p.stdin.write(json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params}) + "\n")
    p.stdin.flush()
    return json.loads(p.stdout.readline())
sid = call(1, "create", {"image": os.environ["IMG"]})["result"]["id"]
r = call(2, "exec", {"command": "hostname"})["result"]
call(3, "close", {})
print(sid, base64.b64decode(r["stdout"]).decode().strip(), r["exit_code"])
PY
)
	expect_eq "create answered with the standby's ID; its hostname; exec's status" "$got" "$before $before 0"
	pool_rm_all
	"$ML" rm "$before" >/dev/null
	pool_gone
}

t_other_shape_starts_without_the_pool() {
	pool_set --size 1
	pool_wait 1
	local before
	before=$(ready_ids)
	ml run --memory 256 --image "$IMG" -- hostname
	expect_eq status "$RC" 0
	[ "$OUT" != "$before" ] || fail "a 256 MB run took a 512 MB standby"
	# Same template (whole CPUs), but a CPU quota the standby would not have.
	ml run --cpus 0.5 --image "$IMG" -- hostname
	expect_eq status "$RC" 0
	[ "$OUT" != "$before" ] || fail "a 0.5-CPU run took a 1-CPU standby"
	ml run -v "$T_OUT:/w" --image "$IMG" -- hostname
	expect_eq status "$RC" 0
	[ "$OUT" != "$before" ] || fail "a run with a host folder took a standby"
	expect_eq "the standby is still there" "$(ready_ids)" "$before"
	pool_rm_all
	pool_gone
}

t_image_rm_and_gc_handle_pools() {
	"$ML" image import local/pool-rm:1 <"$T_OUT/save.tar" >/dev/null || fail "import"
	"$ML" pool set --image local/pool-rm:1 --size 1 >/dev/null || fail "pool set"
	pool_wait 1
	ml image rm local/pool-rm:1
	expect_eq status "$RC" 0
	expect_match "says so" "$OUT" "removed 1 pool"
	pool_gone
	# A pool rm that died half-way (its conf gone): gc finishes it.
	pool_set --size 1
	pool_wait 1
	local key
	key=$(cat "$T_OUT/key")
	"$ML" kill --all >/dev/null
	mv "$(pools_dir)/$key/conf" "$(pools_dir)/$key/conf.gone"
	ml gc
	expect_eq status "$RC" 0
	pool_gone
}

t_bad_input_is_one_line() {
	local size
	for size in 0 -1 33 1000000000000 abc; do
		ml pool set --image "$IMG" --size "$size"
		expect_one_line_error
		expect_match "names the flag" "$ERR" "--size"
	done
	ml pool set --image "$IMG"
	expect_one_line_error
	ml pool set --image "$IMG" --size 1 --memory 10
	expect_one_line_error
	expect_match "the validator's words" "$ERR" "memory 10 MB: expected"
	ml pool set --image local/no-such-image:1 --size 1
	expect_one_line_error
	ml pool rm 0123456789abcdef
	expect_one_line_error
	ml pool frobnicate
	expect_one_line_error
	[ -z "$(ls -A "$(pools_dir)" 2>/dev/null)" ] || fail "a refused pool left something: $(ls -R "$(pools_dir)")"
}

run_tests "$@"
