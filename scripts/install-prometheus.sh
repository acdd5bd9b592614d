#!/usr/bin/env bash
# Debian's `prometheus` package for its `promtool` (rule checks and rule unit tests) and the server binary
# (tests/test_prometheus_real.py starts it on 127.0.0.1 with a temp config); the packaged service is kept stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/apt-install-cli.sh promtool prometheus prometheus
promtool --version | head -1
