#!/usr/bin/env bash
# Installs a Debian package for the command-line tool it ships, keeping the daemon it also ships from running.
# Usage: scripts/apt-install-cli.sh COMMAND PACKAGE SERVICE
# Idempotent: does nothing when COMMAND is already on PATH. Debian packages of servers enable and start their
# service on install; the tests need only the CLI (or start their own server on 127.0.0.1), so the service is kept
# from starting, disabled at boot, and stopped where a service manager runs.
set -euo pipefail
command_name=$1 package=$2 service=$3

if command -v "$command_name" >/dev/null 2>&1; then
  echo "$command_name already installed: $(command -v "$command_name")"
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
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "$package"

# Belt and braces: policy-rc.d kept the daemon from starting, but the package still enables it at boot. `systemctl
# disable` works without a running systemd (it only removes the symlinks); `stop` only where a service manager runs.
if command -v systemctl >/dev/null 2>&1; then
  $SUDO systemctl disable "$service.service" 2>/dev/null || true
  if systemctl is-system-running >/dev/null 2>&1; then
    $SUDO systemctl stop "$service.service" 2>/dev/null || true
  fi
fi
if command -v service >/dev/null 2>&1; then
  $SUDO service "$service" stop >/dev/null 2>&1 || true
fi
