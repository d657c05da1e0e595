#!/usr/bin/env bash
# Installs the OS packages Wrenn's build and tests need, from Debian's/Ubuntu's
# package archive, when they are missing. Idempotent; needs root to install.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
pkgs=(iproute2 passwd python3 util-linux procps make git ca-certificates busybox-static debootstrap curl nftables file postgresql chromium)
command -v node >/dev/null 2>&1 || pkgs+=(nodejs npm)

need=()
for pkg in "${pkgs[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
((${#need[@]})) || exit 0

if [ "$(id -u)" != 0 ]; then
  echo "missing packages: ${need[*]} (run as root to install them)" >&2
  exit 1
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}"
