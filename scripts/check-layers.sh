#!/bin/sh
# SPDX-License-Identifier: MIT
# The module layers, checked on the #include lines of src/: common <- proto <- net, oci, fs <- host,
# and the agent on common and proto only. A module may include its own headers and those of
# the modules below it, nothing else. Prints every offending line and fails.
#   scripts/check-layers.sh           check
#   scripts/check-layers.sh --graph   print which module includes which (and how often)
set -eu
cd "$(dirname "$0")/.."

# Every quoted #include as "FILE LINE MODULE TARGET-MODULE TEXT"; "x.h" is the file's own module,
# "../mod/x.h" and "mod/x.h" are mod's.
includes() {
	grep -Hn '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' src/*/*.[ch] |
		awk -F: '{
			file = $1; line = $2; text = substr($0, length(file) + length(line) + 3)
			split(file, parts, "/"); mod = parts[2]
			match(text, /"[^"]*"/); path = substr(text, RSTART + 1, RLENGTH - 2)
			sub(/^(\.\.\/)+/, "", path)
			target = index(path, "/") ? substr(path, 1, index(path, "/") - 1) : mod
			print file, line, mod, target, text
		}'
}

if [ "${1:-}" = --graph ]; then
	includes | awk '$3 != $4 { n[$3 " -> " $4]++ } END { for (k in n) print k " (" n[k] ")" }' |
		sort
	exit 0
fi

includes | awk '
	BEGIN {
		allowed["common"] = " common "
		allowed["proto"] = " common proto "
		allowed["net"] = " common proto net "
		allowed["oci"] = " common proto oci "
		allowed["fs"] = " common proto fs "
		allowed["agent"] = " common proto agent "
		allowed["host"] = " common proto net oci fs host "
	}
	{
		file = $1; line = $2; mod = $3; target = $4
		text = $0; for (i = 1; i <= 4; i++) sub(/^[^ ]* /, "", text)
		if (!(mod in allowed)) {
			printf "%s:%s: %s: src/%s is not a known module (add it to scripts/check-layers.sh)\n", file, line, text, mod
			bad++
		} else if (index(allowed[mod], " " target " ") == 0) {
			list = allowed[mod]; gsub(/^ | $/, "", list); gsub(/ /, ", ", list)
			printf "%s:%s: %s: %s may include only %s\n", file, line, text, mod, list
			bad++
		}
	}
	END {
		if (bad) {
			printf "make check-layers: %d #include line(s) point up the layers " \
			       "(common <- proto <- net, oci, fs <- host; agent: common, proto)\n", bad
			exit 1
		}
	}'
