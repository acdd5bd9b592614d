#!/usr/bin/env bash
# The shared-limits store for the gateway's tests: Debian's `redis-server` (7.x). Valkey is not packaged for this
# Debian release; it is a fork of Redis 7.2 and speaks the same protocol (RESP, EVAL/EVALSHA), so tests against
# redis-server hold for ElastiCache Valkey. The packaged service is kept stopped: the tests start their own
# redis-server on 127.0.0.1 (gateway_image/tests/redis_server.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/apt-install-cli.sh redis-server redis-server redis-server
redis-server --version
# The tests read and change the store with redis-cli (redis-tools, a dependency of redis-server).
redis-cli --version
