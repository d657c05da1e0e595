#!/usr/bin/env bash
# Runs a command while every core spins in a busy loop, to reproduce a slow,
# loaded CI machine; the loops end with the command.
#
#   scripts/busy.sh make test
set -euo pipefail

if [ $# -eq 0 ]; then
	echo "usage: $0 COMMAND [ARG...]" >&2
	exit 2
fi
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
for _ in $(seq "$(nproc)"); do
	sh -c 'while :; do :; done' &
	pids+=($!)
done
"$@"
