"""What terminate_servers.py does: stop this cluster's nodes (found by their data directories' locks),
optionally purge its data."""
import argparse
import shutil
import sys
from pathlib import Path

from kvstore.storage import datadir
from kvstore.tools import processes
from kvstore.core.config import DEFAULT_DATA_DIR

EXIT_OK, EXIT_FAILED = 0, 1


def node_dirs(data_dir):
    """Every node directory a node has run in: each holds the lock file (or, from older nodes, a pid file)."""
    return sorted({p.parent for name in (datadir.LOCK_FILE, datadir.PID_FILE)
                   for p in Path(data_dir).glob(f"node*/{name}")})


def looks_like_ours(data_dir):
    """Only a directory holding a cluster file or node directories is ours to delete."""
    return (data_dir / "cluster.txt").exists() or any(data_dir.glob("node*/commit.log"))


def main(argv=None):
    p = argparse.ArgumentParser(prog="terminate_servers.py", description=__doc__)
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    p.add_argument("--purge", action="store_true", help="also delete the data directory")
    args = p.parse_args(argv)
    data_dir = Path(args.data_dir).resolve()
    stopped = 0
    for node_dir in node_dirs(data_dir):
        pid = processes.stop_node(node_dir)
        if pid is None:
            stale = node_dir / datadir.PID_FILE
            print(f"{node_dir.name}: not running" + (" (stale pid file removed)" if stale.exists() else ""))
            stale.unlink(missing_ok=True)
        else:
            print(f"{node_dir.name}: stopped (pid {pid})")
            stopped += 1
    if stopped == 0:
        print(f"no running nodes in {data_dir}")
    if args.purge and data_dir.exists():
        if not looks_like_ours(data_dir):
            print(f"not deleting {data_dir}: it holds no cluster file or node data", file=sys.stderr)
            return EXIT_FAILED
        print(f"deleting {data_dir}")
        shutil.rmtree(data_dir)
    return EXIT_OK
