#!/usr/bin/env bash
# Builds gVisor's runsc from the pinned module version into a cache directory
# keyed by that version and prints the binary's path. Idempotent: when the
# binary is already cached it only prints the path.
#
#   WRENN_RUNSC_DIR  cache root (default /var/cache/wrenn/runsc); the binary
#                    lands in $WRENN_RUNSC_DIR/<version>/runsc
set -euo pipefail

module=gvisor.dev/gvisor/runsc
version=v0.0.0-20260905035102-160fafc42237
dir="${WRENN_RUNSC_DIR:-/var/cache/wrenn/runsc}/$version"
bin="$dir/runsc"

# is_static succeeds when $1 is an ELF executable without a program
# interpreter, i.e. it runs without a dynamic loader.
is_static() {
  if command -v file >/dev/null 2>&1; then
    file -b "$1" | grep -Eq 'statically linked|static-pie linked'
  elif command -v ldd >/dev/null 2>&1; then
    ! ldd "$1" >/dev/null 2>&1
  else
    echo "install-runsc: neither file nor ldd is installed" >&2
    return 1
  fi
}

if [ ! -x "$bin" ]; then
  mkdir -p "$dir"
  tmp="$(mktemp -d "$dir/.build.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  echo "install-runsc: building $module@$version" >&2
  # Outside any module, so go.mod of the caller's directory does not apply.
  (cd "$tmp" && CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS=-buildvcs=false go install "$module@$version")
  mv "$tmp/runsc" "$bin"
fi

if ! is_static "$bin"; then
  echo "install-runsc: $bin is not statically linked" >&2
  exit 1
fi
echo "$bin"
