#!/bin/bash
# matchlock rpc under a client or guest that tries to grow its memory (issue 11 items 6 and 7):
# peak RSS of the rpc process stays under a stated bound; the driver is rpc_limits.py.
# Runs in private namespaces (netns.sh): the denied lookups never leave this machine.
. "$(dirname "$0")/netns.sh"
. "$(dirname "$0")/lib.sh"
ip link set lo up
export ML ROOTFS MATCHLOCK_HOME
DRIVER=$(dirname "$0")/rpc_limits.py

# read_file of a 700 MB sparse file with a small length: bounded, the length honoured.
t_read_file_small_length() { timeout 600 python3 "$DRIVER" read_file; }
# exec printing 64 MiB: 16 MiB kept with stdout_truncated; peak memory bounded.
t_exec_output_capped() { timeout 600 python3 "$DRIVER" exec_output; }
# A client not reading while the guest makes denied DNS lookups: events dropped with a count.
t_events_dropped_when_client_does_not_read() { timeout 900 python3 "$DRIVER" events; }

run_tests "$@"
