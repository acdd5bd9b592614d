#!/usr/bin/env bash
# Debian's `postgresql` (15 on bookworm) for the usage-ledger tests: gateway_image/tests/pg_server.py runs its own
# initdb + postgres on 127.0.0.1 in a temp dir; the packaged cluster service is kept stopped. Debian puts the server
# binaries in /usr/lib/postgresql/<version>/bin, not on PATH (postgresql-common wraps only the clients), so the
# check for an existing install looks there before apt-install-cli.sh looks for `initdb` on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  echo "postgresql already installed: $(ls -d /usr/lib/postgresql/*/bin | tail -1)"
  exit 0
fi
bash scripts/apt-install-cli.sh initdb postgresql postgresql
ls -d /usr/lib/postgresql/*/bin/initdb
