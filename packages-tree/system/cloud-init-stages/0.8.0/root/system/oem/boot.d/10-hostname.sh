#!/bin/sh
# Hostname from /oem/hostname (0.8 behaviour: no machine-id fallback).
set -eu
[ -s /oem/hostname ] || exit 0
hostname "$(cat /oem/hostname)"
