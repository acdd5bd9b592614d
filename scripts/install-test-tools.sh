#!/usr/bin/env bash
# Heavier tools the full suite needs, each installed by its own idempotent script (quick when already present).
set -euo pipefail
cd "$(dirname "$0")/.."
for script in scripts/install-vllm.sh scripts/install-semantic.sh scripts/install-prometheus.sh scripts/install-checkov.sh \
  scripts/install-crd-validators.sh scripts/install-alertmanager.sh scripts/install-postgres.sh \
  scripts/install-valkey.sh; do
  if [ -f "$script" ]; then
    bash "$script"
  fi
done
