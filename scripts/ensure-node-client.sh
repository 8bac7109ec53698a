#!/usr/bin/env bash
# Install the npm thrift package for the Node.js client the tests drive (tests/node_client), once;
# again only when its package-lock.json changes. Without npm it says so: those tests then skip outside CI.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/tests/node_client"
stamp="$dir/node_modules/.lock.sha256"
if ! command -v npm >/dev/null 2>&1; then
  echo "npm not found: the Node.js client test will skip" >&2
  exit 0
fi
want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "installing the npm thrift package into $dir/node_modules ..." >&2
(cd "$dir" && npm ci --no-audit --no-fund --silent)
echo "$want" > "$stamp"
