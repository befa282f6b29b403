#!/bin/sh
# Bind persistent state over the read-only root for the paths listed in /etc/cos/persistent.
set -eu
list=/etc/cos/persistent
[ -r "$list" ] || exit 0
state=${COS_PERSISTENT_DIR:-/usr/local/.state}
while read -r path; do
  case "$path" in ""|\#*) continue ;; esac
  mkdir -p "$state$path" "$path"
  mountpoint -q "$path" || mount --bind "$state$path" "$path"
done < "$list"
