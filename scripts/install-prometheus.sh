#!/usr/bin/env bash
# Installs Debian's `prometheus` package for its `promtool` (rule checks and rule unit tests) and the server binary
# (tests/test_prometheus_real.py starts it on 127.0.0.1 with a temp config). Idempotent: does nothing when promtool
# is already on PATH. The package enables a system service; tests start their own server, so that one is stopped.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
  echo "promtool already installed: $(command -v promtool)"
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
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends prometheus

# Belt and braces: policy-rc.d kept the daemon from starting, but the package still enables it at boot. `systemctl
# disable` works without a running systemd (it only removes the symlinks); `stop` only where a service manager runs.
if command -v systemctl >/dev/null 2>&1; then
  $SUDO systemctl disable prometheus.service 2>/dev/null || true
  if systemctl is-system-running >/dev/null 2>&1; then
    $SUDO systemctl stop prometheus.service 2>/dev/null || true
  fi
fi
if command -v service >/dev/null 2>&1; then
  $SUDO service prometheus stop >/dev/null 2>&1 || true
fi

promtool --version | head -1
