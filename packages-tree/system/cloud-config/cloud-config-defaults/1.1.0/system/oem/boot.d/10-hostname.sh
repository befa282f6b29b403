#!/bin/sh
# Give the machine a stable hostname derived from its machine-id unless /oem sets one.
set -eu
if [ -s /oem/hostname ]; then
  name=$(cat /oem/hostname)
elif [ -s /etc/machine-id ]; then
  name="cos-$(cut -c1-8 /etc/machine-id)"
else
  exit 0
fi
echo "$name" > /run/cos/hostname
hostname "$name" 2>/dev/null || true
