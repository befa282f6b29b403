#!/bin/sh
# Create users listed in /oem/users ("name:authorized-key") with sudo rights.
set -eu
[ -r /oem/users ] || exit 0
while IFS=: read -r user key; do
  [ -n "$user" ] || continue
  id "$user" >/dev/null 2>&1 || useradd -m -G wheel "$user"
  home=$(getent passwd "$user" | cut -d: -f6)
  mkdir -p "$home/.ssh"
  printf '%s\n' "$key" >> "$home/.ssh/authorized_keys"
  chown -R "$user" "$home/.ssh"
  chmod 0700 "$home/.ssh"
done < /oem/users
