#!/usr/bin/env bash
# Install what the tests need (once) and run them: ./run_tests.sh [pytest options]
set -euo pipefail
root="$(cd "$(dirname "$0")" && pwd)"
bash "$root/scripts/ensure-venv.sh"
bash "$root/scripts/ensure-node-client.sh"
cd "$root"
exec "$root/.venv/bin/python" -m pytest "$@"
