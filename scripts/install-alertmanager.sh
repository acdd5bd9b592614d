#!/usr/bin/env bash
# Debian's `prometheus-alertmanager` package for its `amtool` (tests/test_alertmanager.py runs `amtool check-config`
# on the rendered Alertmanager configuration); the packaged service is kept stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/apt-install-cli.sh amtool prometheus-alertmanager prometheus-alertmanager
amtool --version 2>&1 | head -1
