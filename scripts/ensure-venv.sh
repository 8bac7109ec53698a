#!/usr/bin/env bash
# Create .venv, install the pinned requirements.txt into it and the project itself (editable: the checkout's
# src/ and gen-py/, with the console entry points), once; again only when requirements.txt or pyproject.toml
# change.
# Sourced or run by server.sh and run_tests.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.requirements.sha256"
want="$(cat "$root/requirements.txt" "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "installing requirements.txt into $venv ..." >&2
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/requirements.txt"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e "$root"
"$venv/bin/python" -c "from thrift.protocol import fastbinary" 2>/dev/null \
  || echo "warning: the Thrift C accelerator did not build (is gcc and python3-dev installed?); nodes will run slowly" >&2
echo "$want" > "$stamp"
