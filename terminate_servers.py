"""Stop every node of this cluster, and nothing else: python3 terminate_servers.py [--purge] [--data-dir DIR]

Each node is found as the process holding its data directory's lock (data/nodeID/node.lock),
however it was started, and checked with psutil (it runs src/server.py) before it is
signalled: SIGTERM, then SIGKILL if it has not exited in time.
--purge also deletes the data directory, after naming it.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))
from kvstore.bootstrap import run  # noqa: E402

run("kvstore.tools.teardown")
