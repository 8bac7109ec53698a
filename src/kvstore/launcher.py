"""What ./server.sh does: start a cluster, and crash, stop, restart or show one node.

The data directory (default data/, or $KVSTORE_DATA_DIR, or --data-dir) holds
the cluster file (cluster.txt) and one directory per node (nodeID/: commit log,
hints, node.pid, node.log). Starting reuses whatever data is there.
"""
import argparse
import os
import signal
import sys
from pathlib import Path

from kvstore import processes
from kvstore.config import make_cluster, read_cluster_file, write_cluster_file
from kvstore.errors import ConfigError
from kvstore.peers import ping

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
READY_TIMEOUT = 30.0


def parse_args(argv):
    p = argparse.ArgumentParser(prog="server.sh", description="Run a kvstore cluster on this machine.")
    p.add_argument("--data-dir", default=str(processes.DEFAULT_DATA_DIR),
                   help="where the cluster file and node data live (default: data/, or $KVSTORE_DATA_DIR)")
    p.add_argument("--host", default=os.environ.get("KVSTORE_HOST", "127.0.0.1"),
                   help="address of every node of a new cluster (default 127.0.0.1, or $KVSTORE_HOST)")
    p.add_argument("--base-port", type=int, default=int(os.environ.get("KVSTORE_BASE_PORT", 9000)),
                   help="port of node 0 of a new cluster; node i gets base+i (default 9000, or $KVSTORE_BASE_PORT)")
    sub = p.add_subparsers(dest="command")
    start = sub.add_parser("start", help="start every node that is not running (creating the cluster if new)")
    start.add_argument("nodes", nargs="?", type=int,
                       help="number of nodes of a new cluster (default 4, or $KVSTORE_NODES)")
    for name, text in (("crash", "SIGKILL a node: no clean shutdown"), ("stop", "stop a node gracefully"),
                       ("restart", "start a stopped or crashed node on its data (stopping it first if running)")):
        sub.add_parser(name, help=text).add_argument("id", type=int)
    sub.add_parser("status", help="each node: up or down, pid, address")
    args = p.parse_args(argv)
    args.command = args.command or "start"
    args.nodes = getattr(args, "nodes", None)
    return args


class Cluster:
    def __init__(self, data_dir):
        self.data_dir = Path(data_dir).resolve()
        self.cluster_file = self.data_dir / "cluster.txt"

    def nodes(self):
        return read_cluster_file(self.cluster_file)

    def node(self, node_id):
        for node in self.nodes():
            if node.node_id == node_id:
                return node
        raise ConfigError(f"no node {node_id} in {self.cluster_file}")

    def node_dir(self, node_id):
        return self.data_dir / f"node{node_id}"

    def create(self, count, host, base_port):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        write_cluster_file(self.cluster_file, make_cluster(count, host, base_port))
        print(f"created {self.cluster_file}: {count} nodes on {host}:{base_port}-{base_port + count - 1}")

    def start_node(self, node_id):
        """Spawn the node unless it runs; returns the Popen or None."""
        if processes.find_node(self.node_dir(node_id)) is not None:
            return None
        return processes.spawn_node(self.cluster_file, node_id, self.node_dir(node_id))

    def wait_ready(self, node_id, spawned, timeout=READY_TIMEOUT):
        """True once the node answers a heartbeat; False if it exits or the timeout passes."""
        node = self.node(node_id)
        answered = processes.wait_until(
            lambda: ping(node.host, node.port, 0.5) is not None or (spawned and spawned.poll() is not None),
            timeout)
        return bool(answered) and not (spawned and spawned.poll() is not None)


def cmd_start(cluster, args):
    if not cluster.cluster_file.exists():
        cluster.create(args.nodes or int(os.environ.get("KVSTORE_NODES", 4)), args.host, args.base_port)
    elif args.nodes is not None and len(cluster.nodes()) != args.nodes:
        print(f"{cluster.cluster_file} already describes {len(cluster.nodes())} nodes; "
              "run 'python3 terminate_servers.py --purge' to start afresh with another size", file=sys.stderr)
        return EXIT_USAGE
    spawned = {n.node_id: cluster.start_node(n.node_id) for n in cluster.nodes()}
    failed = [node_id for node_id, proc in spawned.items() if not cluster.wait_ready(node_id, proc)]
    for node_id in failed:
        report_not_up(cluster, node_id)
    cmd_status(cluster, args)
    return EXIT_FAILED if failed else EXIT_OK


def report_not_up(cluster, node_id):
    print(f"node {node_id} did not come up; the end of {cluster.node_dir(node_id) / processes.LOG_FILE}:\n"
          f"{processes.log_tail(cluster.node_dir(node_id))}", file=sys.stderr)


def cmd_crash(cluster, args):
    cluster.node(args.id)  # a clear error for an unknown id
    pid = processes.signal_node(cluster.node_dir(args.id), signal.SIGKILL)
    if pid is None:
        print(f"node {args.id} is not running", file=sys.stderr)
        return EXIT_FAILED
    print(f"crashed node {args.id} (SIGKILL to pid {pid}); './server.sh restart {args.id}' brings it back")
    return EXIT_OK


def cmd_stop(cluster, args):
    cluster.node(args.id)
    pid = processes.stop_node(cluster.node_dir(args.id))
    if pid is None:
        print(f"node {args.id} is not running", file=sys.stderr)
        return EXIT_FAILED
    print(f"stopped node {args.id} (pid {pid})")
    return EXIT_OK


def cmd_restart(cluster, args):
    cluster.node(args.id)  # a clear error for an unknown id
    if processes.stop_node(cluster.node_dir(args.id)) is not None:
        print(f"stopped node {args.id}")
    spawned = cluster.start_node(args.id)
    if not cluster.wait_ready(args.id, spawned):
        report_not_up(cluster, args.id)
        return EXIT_FAILED
    print(f"node {args.id} is up (pid {processes.find_node(cluster.node_dir(args.id)).pid})")
    return EXIT_OK


def cmd_status(cluster, args):
    print(f"{'node':<6}{'address':<22}{'state':<10}{'pid':<9}data")
    for node in cluster.nodes():
        process = processes.find_node(cluster.node_dir(node.node_id))
        if process is None:
            state = "down"
        elif ping(node.host, node.port, 0.5) is not None:
            state = "up"
        else:
            state = "starting"
        pid = str(process.pid) if process else "-"
        print(f"{node.node_id:<6}{node.address:<22}{state:<10}{pid:<9}{cluster.node_dir(node.node_id)}")
    return EXIT_OK


COMMANDS = {"start": cmd_start, "crash": cmd_crash, "stop": cmd_stop, "restart": cmd_restart,
            "status": cmd_status}


def main(argv=None):
    args = parse_args(argv)
    cluster = Cluster(args.data_dir)
    try:
        if args.command != "start" and not cluster.cluster_file.exists():
            raise ConfigError(f"no cluster in {cluster.data_dir}; start one with ./server.sh")
        return COMMANDS[args.command](cluster, args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
