#!/bin/sh
# Keep ssh host keys on persistent storage so they survive upgrades of the read-only root.
set -eu
keys=${COS_PERSISTENT_DIR:-/usr/local/.state}/ssh
[ -x /usr/bin/ssh-keygen ] || exit 0
mkdir -p "$keys"
[ -e "$keys/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$keys/ssh_host_ed25519_key"
