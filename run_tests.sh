#!/usr/bin/env bash
# Install what the tests need (once), lint, and run them: ./run_tests.sh [pytest options]
set -euo pipefail
root="$(cd "$(dirname "$0")" && pwd)"
bash "$root/scripts/ensure-venv.sh"
bash "$root/scripts/ensure-node-client.sh"
cd "$root"
"$root/.venv/bin/ruff" check --quiet .   # the lint rules in pyproject.toml; a finding fails the run
exec "$root/.venv/bin/python" -m pytest "$@"
