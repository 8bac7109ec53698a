#!/usr/bin/env bash
# Start the kvstore cluster, or crash / stop / restart / show one node.
#   ./server.sh                 start a 4-node cluster on 127.0.0.1:9000-9003 (data in data/)
#   ./server.sh start [N]       the same, N nodes for a new cluster
#   ./server.sh crash ID        SIGKILL node ID (no clean shutdown)
#   ./server.sh stop ID         stop node ID gracefully
#   ./server.sh restart ID      start node ID again on its data
#   ./server.sh status          each node: up/down, pid, address; its ranges and their repairs
#   ./server.sh repair [ID]     repair every range (or those node ID holds) between its replicas
#   ./server.sh replace ID      start node ID, which lost its data, on an empty data directory
# Environment: KVSTORE_NODES, KVSTORE_BASE_PORT, KVSTORE_HOST, KVSTORE_DATA_DIR.
set -euo pipefail
root="$(cd "$(dirname "$0")" && pwd)"
bash "$root/scripts/ensure-venv.sh"
exec "$root/.venv/bin/python" "$root/src/launcher.py" "$@"
