"""What ./server.sh does: start a cluster, and crash, stop, restart one node; show them (kvstore.tools.status);
repair and replace (kvstore.tools.heal).

The data directory (default data/, or $KVSTORE_DATA_DIR, or --data-dir) holds
the cluster file (cluster.txt), the node options (node.options) and one
directory per node (nodeID/: commit log, hints, node.lock, node.pid, node.log).
Starting reuses whatever data is there.

Node options: `./server.sh start -- OPTION ...` (or `restart ID -- OPTION ...`)
passes options to the nodes it starts (--commitlog-sync-period 10, ...) and
saves them in node.options, one option a line, so every later start and
restart uses them too; the file may be edited by hand. They are checked by the
node's own parser before anything starts.
"""
import argparse
import contextlib
import io
import os
import shlex
import signal
import sys
from pathlib import Path


from kvstore.core.config import DEFAULT_DATA_DIR, make_cluster, read_cluster_file, write_cluster_file
from kvstore.core.errors import ConfigError
from kvstore.net.blocking import ping
from kvstore.node.options import parse_args as parse_node_args   # the node's own parser judges its options
from kvstore.tools import balance, processes, heal, ring_change, security, waits
from kvstore.tools.status import cmd_status

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
READY_TIMEOUT = 30.0
SETTLE_TIMEOUT = 15.0   # seconds to wait for peers to see a change (a node down, up, its hints delivered)
OPTIONS_FILE = "node.options"
SET_BY_SERVER_SH = ("--id", "--cluster", "--data-dir")   # each node's own: never a cluster-wide option


def parse_args(argv):
    argv = list(sys.argv[1:] if argv is None else argv)
    node_options = None
    if "--" in argv:   # everything after it is for the nodes
        node_options, argv = argv[argv.index("--") + 1:], argv[:argv.index("--")]
    p = argparse.ArgumentParser(prog="server.sh", description="Run a kvstore cluster on this machine.",
                                epilog="Options for the nodes go after --, e.g. './server.sh start -- "
                                       "--commitlog-sync-period 10'; they are saved in DATA_DIR/node.options.")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
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
    sub.add_parser("status", help="each node: up or down, pid, address; the ring as nodetool status shows it; the "
                                  "ranges each holds and their repairs").add_argument("--json", action="store_true")
    heal.add_parsers(sub)
    ring_change.add_parsers(sub)
    balance.add_parsers(sub)
    security.add_parsers(sub)
    args = p.parse_args(argv)
    args.command = args.command or "start"
    args.nodes = getattr(args, "nodes", None)
    if node_options is not None and args.command not in ("start", "restart"):
        p.error("options for the nodes (after --) go with start or restart")
    args.node_options = node_options
    return args


class ClusterDirectory:
    """A cluster's data directory, as ./server.sh keeps it: the cluster file, the node options, a directory a node."""

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

    def ensure_access(self):
        """A cluster gets what it lacks of its secret, its users and the operator's credentials."""
        security.ensure(self.cluster_file)

    @property
    def access(self):
        """{credentials, tls}: how this tool logs in to the nodes and reaches their client ports."""
        return security.access(self.cluster_file, self.node_options())

    @property
    def options_file(self):
        return self.data_dir / OPTIONS_FILE

    def node_options(self):
        """The saved options every node is started with ([] when there are none)."""
        try:
            text = self.options_file.read_text()
        except FileNotFoundError:
            return []
        return [word for line in text.splitlines() for word in shlex.split(line, comments=True)]

    def save_node_options(self, options):
        """Check options with the node's own parser, then keep them for every later start and restart."""
        check_node_options(options)
        lines, i = [], 0
        while i < len(options):   # an option and its value on one line, for whoever edits the file
            takes_value = i + 1 < len(options) and not options[i + 1].startswith("--")
            lines.append(shlex.join(options[i:i + 1 + takes_value]))
            i += 1 + takes_value
        self.options_file.write_text("# options for every node of this cluster, one a line (./server.sh start -- ...)\n"
                                     + "".join(line + "\n" for line in lines))

    def create(self, count, host, base_port):
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        nodes = make_cluster(count, host, base_port)
        write_cluster_file(self.cluster_file, nodes)
        print(f"created {self.cluster_file}: {count} nodes on {host}:{base_port}-{base_port + count - 1} "
              f"(other nodes call them on ports {nodes[0].peer_port}-{nodes[-1].peer_port})")

    def start_node(self, node_id, once=()):
        """Spawn the node unless it runs (once: options for this start alone); returns the Popen or None."""
        if processes.find_node(self.node_dir(node_id)) is not None:
            return None
        return processes.spawn_node(self.cluster_file, node_id, self.node_dir(node_id),
                                    self.node_options() + list(once))

    def wait_ready(self, node_id, spawned, timeout=READY_TIMEOUT):
        """True once the node answers a heartbeat; False if it exits or the timeout passes."""
        node = self.node(node_id)
        tls = self.access["tls"]
        answered = processes.wait_until(
            lambda: ping(node.host, node.port, 0.5, tls) is not None or (spawned and spawned.poll() is not None),
            timeout)
        return bool(answered) and not (spawned and spawned.poll() is not None)


def check_node_options(options):
    """ConfigError naming the problem when the nodes would refuse these options."""
    for option in options:
        if option.split("=", 1)[0] in SET_BY_SERVER_SH:
            raise ConfigError(f"{option}: server.sh sets --id, --cluster and --data-dir for each node itself")
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            parse_node_args(["--id", "0", *options])   # the node's own parser is the judge
    except SystemExit:
        why = said.getvalue().strip().splitlines()[-1].removeprefix("server.py: ")
        raise ConfigError(f"the nodes would refuse these options ({shlex.join(options)}): {why}") from None


def use_node_options(cluster, args):
    if args.node_options is not None:
        if not cluster.data_dir.exists():
            cluster.data_dir.mkdir(mode=0o700, parents=True)
        cluster.save_node_options(args.node_options)
        running = cluster.cluster_file.exists() and any(
            processes.find_node(cluster.node_dir(n.node_id)) for n in cluster.nodes())
        print(f"node options saved in {cluster.options_file}: {shlex.join(args.node_options) or '(none)'}"
              + ("; running nodes keep theirs until './server.sh restart ID'" if running else ""))


def cmd_start(cluster, args):
    if args.nodes is not None and cluster.cluster_file.exists() and len(cluster.nodes()) != args.nodes:
        print(f"{cluster.cluster_file} already describes {len(cluster.nodes())} nodes; "
              "run 'python3 terminate_servers.py --purge' to start afresh with another size", file=sys.stderr)
        return EXIT_USAGE
    use_node_options(cluster, args)
    if not cluster.cluster_file.exists():
        cluster.create(args.nodes or int(os.environ.get("KVSTORE_NODES", 4)), args.host, args.base_port)
    cluster.ensure_access()
    spawned = {n.node_id: cluster.start_node(n.node_id) for n in cluster.nodes()}
    failed = [node_id for node_id, proc in spawned.items() if not cluster.wait_ready(node_id, proc)]
    for node_id in failed:
        report_not_up(cluster, node_id)
    for node_id, proc in spawned.items():
        if proc is not None and node_id not in failed:
            wait_for_peers(cluster, node_id)
    cmd_status(cluster, args, ranges=False)
    return EXIT_FAILED if failed else EXIT_OK


def running_peers(cluster, node_id):
    """The other nodes of the cluster whose processes run. A crash or stop returns once these see the node
    down, so that the next write through any of them hints it rather than finding out."""
    return [n for n in cluster.nodes() if n.node_id != node_id and processes.find_node(cluster.node_dir(n.node_id))]


def wait_for_peers(cluster, node_id):
    """Wait (bounded) until the running peers of a node just started see it up and have handed it their
    hints, so that what a person reads next is current; say so when they have not."""
    peers, access = running_peers(cluster, node_id), cluster.access
    late = waits.wait_seen(peers, node_id, up=True, timeout=SETTLE_TIMEOUT, access=access)
    if late:
        print(f"note: node {node_id} is up, but nodes {', '.join(str(n.node_id) for n in late)} do not see it yet")
        return
    held = waits.wait_handed_off(peers, node_id, SETTLE_TIMEOUT, access)
    if held:
        print(f"note: hints for node {node_id} still being delivered: "
              + ", ".join(f"{count} on node {holder}" for holder, count in sorted(held.items())))


def report_not_up(cluster, node_id):
    print(f"node {node_id} did not come up; the end of {cluster.node_dir(node_id) / processes.LOG_FILE}:\n"
          f"{processes.log_tail(cluster.node_dir(node_id))}", file=sys.stderr)


def cmd_crash(cluster, args):
    pid = take_down(cluster, args.id, lambda data_dir: processes.signal_node(data_dir, signal.SIGKILL))
    if pid is not None:
        print(f"crashed node {args.id} (SIGKILL to pid {pid}); './server.sh restart {args.id}' brings it back")
    return EXIT_FAILED if pid is None else EXIT_OK


def cmd_stop(cluster, args):
    pid = take_down(cluster, args.id, processes.stop_node)
    if pid is not None:
        print(f"stopped node {args.id} (pid {pid})")
    return EXIT_FAILED if pid is None else EXIT_OK


def take_down(cluster, node_id, end):
    """end(data_dir) -> the pid it ended, or None; then wait (bounded) until the running peers see the node down,
    so that the next write through any of them hints it. None (said) when the node was not running."""
    cluster.node(node_id)  # a clear error for an unknown id
    pid = end(cluster.node_dir(node_id))
    if pid is None:
        print(f"node {node_id} is not running", file=sys.stderr)
        return None
    waits.wait_seen(running_peers(cluster, node_id), node_id, up=False, timeout=SETTLE_TIMEOUT,
                    access=cluster.access)
    return pid


def cmd_restart(cluster, args):
    cluster.node(args.id)  # a clear error for an unknown id
    use_node_options(cluster, args)
    cluster.ensure_access()
    if processes.stop_node(cluster.node_dir(args.id)) is not None:
        print(f"stopped node {args.id}")
    spawned = cluster.start_node(args.id)
    if not cluster.wait_ready(args.id, spawned):
        report_not_up(cluster, args.id)
        return EXIT_FAILED
    wait_for_peers(cluster, args.id)
    process = processes.find_node(cluster.node_dir(args.id))
    if process is None:   # it answered, then stopped
        report_not_up(cluster, args.id)
        return EXIT_FAILED
    print(f"node {args.id} is up (pid {process.pid})")
    return EXIT_OK


COMMANDS = {"start": cmd_start, "crash": cmd_crash, "stop": cmd_stop, "restart": cmd_restart,
            "status": cmd_status, "user": security.cmd_user, "tls": security.cmd_tls, "repair": heal.cmd_repair,
            "replace": lambda cluster, args: heal.cmd_replace(cluster, args, wait_for_peers, report_not_up),
            "add": lambda cluster, args: ring_change.cmd_add(cluster, args, start_joining),
            "decommission": ring_change.cmd_decommission, "removenode": ring_change.cmd_removenode,
            "move": ring_change.cmd_move, "balance": balance.cmd_balance,
            "ring": lambda cluster, args: ring_change.cmd_ring(cluster, args, start_joining)}


def start_joining(cluster, node_id):
    """Start a node just added to the cluster file; True once it serves and its peers see it."""
    cluster.ensure_access()
    spawned = cluster.start_node(node_id)
    if not cluster.wait_ready(node_id, spawned):
        report_not_up(cluster, node_id)
        return False
    wait_for_peers(cluster, node_id)
    return True


def main(argv=None):
    args = parse_args(argv)
    os.umask(0o077)   # the cluster's files (its options, keys, certificates) are the operator's alone
    cluster = ClusterDirectory(args.data_dir)
    try:
        if args.command != "start" and not cluster.cluster_file.exists():
            raise ConfigError(f"no cluster in {cluster.data_dir}; start one with ./server.sh")
        return COMMANDS[args.command](cluster, args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
