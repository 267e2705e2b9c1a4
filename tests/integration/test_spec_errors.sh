#!/bin/bash
# One validator for every entry point (issue 12): the same bad resources sent through the CLI
# (`matchlock run`), the Python SDK and the Go SDK are refused with the same error text. Each
# side prints "CASE<TAB>MESSAGE"; the three lists must be identical. No sandbox boots.
. "$(dirname "$0")/lib.sh"
export MATCHLOCK_BIN=$ML MATCHLOCK_TEST_IMAGE=$ROOTFS
CASES=(cpus-0 cpus-1000 memory-10 memory-1e9 disk-size timeout-0 mount-missing mount-relative mount-proc mount-mode)

cli_args() {
	case $1 in
	cpus-0) echo --cpus 0 ;;
	cpus-1000) echo --cpus 1000 ;;
	memory-10) echo --memory 10 ;;
	memory-1e9) echo --memory 1000000000 ;;
	disk-size) echo --disk-size 10 ;;
	timeout-0) echo --timeout 0 ;;
	mount-missing) echo -v /nonexistent-matchlock:/w ;;
	mount-relative) echo -v /tmp:w ;;
	mount-proc) echo -v /tmp:/proc ;;
	mount-mode) echo -v /tmp:/w:rx ;;
	esac
}

# CLI: exit 125 and one line "matchlock: MESSAGE".
cli_messages() {
	local c
	: >"$T_OUT/cli"
	for c in "${CASES[@]}"; do
		# shellcheck disable=SC2046
		ml run $(cli_args "$c") --rootfs "$ROOTFS" -- true
		expect_one_line_error
		printf '%s\t%s\n' "$c" "${ERR#matchlock: }" >>"$T_OUT/cli"
	done
}

go_messages() {
	if ! command -v go >/dev/null 2>&1; then
		fail "go not found: install Debian's golang-go (scripts/deps.sh)"
	fi
	(cd "$ROOT/tests/sdk/spec_errors" &&
		GOFLAGS=-mod=mod GOCACHE=${GOCACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/go-build} \
			go run . "$@") >"$T_OUT/go" || fail "the Go driver failed"
}

t_same_error_text_from_cli_python_and_go() {
	cli_messages
	python3 "$ROOT/tests/sdk/spec_errors.py" "${CASES[@]}" >"$T_OUT/python" || fail "the Python driver failed"
	go_messages "${CASES[@]}"
	cat "$T_OUT/cli"
	# Every case gave a message, and the wording names both spellings of the field.
	expect_eq "cases" "$(cut -f1 "$T_OUT/cli" | tr '\n' ' ')" "${CASES[*]} "
	expect_match "cpus" "$(grep ^cpus-0 "$T_OUT/cli")" $'\tcpus 0: .*0\\.1 to 16 \\(--cpus, resources\\.cpus\\)$'
	expect_match "memory" "$(grep ^memory-1e9 "$T_OUT/cli")" $'\tmemory 1000000000 MB: .*\\(--memory, resources\\.memory_mb\\)$'
	expect_match "disk" "$(grep ^disk-size "$T_OUT/cli")" $'\tdisk size 10 MB: expected 64 to 1048576 MB \\(--disk-size, resources\\.disk_size_mb\\)$'
	expect_match "mount" "$(grep ^mount-relative "$T_OUT/cli")" $'\tguest path w: expected an absolute path like /workspace \\(-v HOST:GUEST, mounts\\[\\]\\.guest\\)$'
	diff -u "$T_OUT/cli" "$T_OUT/python" >&2 || fail "the Python SDK's messages differ from the CLI's"
	diff -u "$T_OUT/cli" "$T_OUT/go" >&2 || fail "the Go SDK's messages differ from the CLI's"
	expect_clean
}

# A field the server does not know at all: refused (never ignored) with the shared wording,
# the same through both SDKs.
t_unknown_field_same_from_both_sdks() {
	python3 "$ROOT/tests/sdk/spec_errors.py" unknown-key >"$T_OUT/python" || fail "the Python driver failed"
	go_messages unknown-key
	expect_eq "python" "$(cat "$T_OUT/python")" $'unknown-key\tno_such_field: not supported by this version of matchlock'
	diff -u "$T_OUT/python" "$T_OUT/go" >&2 || fail "the Go SDK's message differs from the Python SDK's"
	expect_clean
}

run_tests "$@"
