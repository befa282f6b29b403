#!/usr/bin/env bash
# The system tools cpm's test suite and demo use, on a fresh Debian or Ubuntu machine (apt-get;
# sudo when not root). Used by the README's test line and by .ci/run — one list, kept here.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PACKAGES=(binutils docker-registry squashfs-tools-ng squashfs-tools zstd bubblewrap skopeo umoci libsolv-tools lz4 mmdebstrap apache2-utils ca-certificates attr zsh fish)
if ! command -v apt-get >/dev/null 2>&1; then
  # not Debian: the tools may be there already (an image built for CI); say what is expected
  echo "setup-debian.sh: no apt-get here; the suite expects the equivalents of: ${PACKAGES[*]}" >&2
  exit 0
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
