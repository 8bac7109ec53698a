"""Stop every node of this cluster, and nothing else: python3 terminate_servers.py [--purge] [--data-dir DIR]

Nodes are found through the pid files in the data directory (data/nodeID/node.pid)
and each pid is checked with psutil (creation time, command line, data directory)
before it is signalled: SIGTERM, then SIGKILL if it has not exited in time.
--purge also deletes the data directory, after naming it.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))
from kvstore.bootstrap import setup  # noqa: E402

setup()
from kvstore.teardown import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
