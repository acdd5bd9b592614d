#!/usr/bin/env bash
# Installs Debian's `prometheus-alertmanager` package for its `amtool` (tests/test_alertmanager.py runs
# `amtool check-config` on the rendered Alertmanager configuration). Idempotent: does nothing when amtool is on PATH.
# The package enables a system service; the tests need only the CLI, so the daemon is kept from starting.
set -euo pipefail

if command -v amtool >/dev/null 2>&1; then
  echo "amtool already installed: $(command -v amtool)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# policy-rc.d exit 101 tells Debian maintainer scripts not to start services during the install.
POLICY=/usr/sbin/policy-rc.d
CREATED_POLICY=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod +x "$POLICY"
  CREATED_POLICY=1
fi
trap '[ "$CREATED_POLICY" = 1 ] && $SUDO rm -f "$POLICY"' EXIT

$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends prometheus-alertmanager

if command -v systemctl >/dev/null 2>&1; then
  $SUDO systemctl disable prometheus-alertmanager.service 2>/dev/null || true
fi
if command -v service >/dev/null 2>&1; then
  $SUDO service prometheus-alertmanager stop >/dev/null 2>&1 || true
fi

amtool --version 2>&1 | head -1
