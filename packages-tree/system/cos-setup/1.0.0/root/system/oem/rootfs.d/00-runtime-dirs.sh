#!/bin/sh
# Create the writable runtime locations cos-setup and the stages expect.
set -eu
mkdir -p /run/cos /usr/local/cloud-config /oem
chmod 0700 /oem
