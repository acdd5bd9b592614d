#!/usr/bin/env bash
# Installs checkov 3.3.x into its own virtualenv `.venv-checkov` at the repository root. Its own venv because checkov
# pins an older `packaging` (and many other libraries) that would downgrade the project's main venv.
# Idempotent: when the venv already holds a working checkov 3.3.x it only prints the version.
# tests/test_security_scan.py runs `.venv-checkov/bin/checkov` (and skips with this script's name when it is absent).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-checkov"
CHECKOV="$VENV/bin/checkov"
SPEC='checkov>=3.3,<3.4'

if [ -x "$CHECKOV" ] && "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(0 if m.version("checkov").startswith("3.3.") else 1)' 2>/dev/null; then
  echo "checkov already installed: $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("checkov"))') in $VENV"
  exit 0
fi

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "$SPEC"
# BC_SKIP_MAPPING and --skip-download keep checkov from calling its vendor's API (no network here, and none needed).
BC_SKIP_MAPPING=TRUE "$CHECKOV" --version
