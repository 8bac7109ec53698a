"""A real cluster driven from Python, for the tests and the chaos harness.

Node processes on free ports, each with its own data directory, on loopback or
(with netns.NetnsHosts) each in a network namespace of its own. Verbs say what
survives: crash(i) is SIGKILL (disk state stays, nothing beyond what was
acknowledged is promised), pause(i)/resume(i) are SIGSTOP/SIGCONT, stop(i) is a
graceful SIGTERM, restart(i) starts a node again on its data, wipe(i) deletes
a stopped node's data, replace(i) starts a wiped node as ./server.sh replace
does. Every wait polls against a deadline and raises ClusterError when it
passes; close() kills whatever is left.
"""
import signal
import subprocess
from pathlib import Path

from kvstore.tools import processes, waits
from kvstore.client.client import Client
from kvstore.tools.security import create_admin
from kvstore.core.config import CHECKOUT, NodeConfig, even_tokens, make_cluster, read_cluster_file, write_cluster_file
from kvstore.testing.ports import free_ports
from kvstore.core.errors import KVStoreError
from kvstore.net.peerauth import create_secret, secret_path
from kvstore.net.blocking import Connection, call_once, ping
from kvstore.core.ring import Ring
from kvstore.net.tls import client_context, create_local_ca, tls_dir
from kvstore.storage.datadir import COMMIT_LOG_FILE
from kvstore.testing.fakeclock import clock_preload

FAST_SETTINGS = ("--heartbeat-interval", "0.2", "--request-timeout", "2", "--read-timeout", "2", "--log-level", "DEBUG")
READY_TIMEOUT = 20.0
class ClusterError(KVStoreError, AssertionError):
    """A node did not start, or a wait passed its deadline."""


class Loopback:
    """Every node on 127.0.0.1, on free ports; no partitions."""
    name = "loopback"
    can_partition = False

    def addresses(self, count):
        """[(host, client port, peer port)] for count nodes."""
        ports = free_ports(2 * count)
        return [("127.0.0.1", ports[i], ports[count + i]) for i in range(count)]

    def add_address(self, i):
        """(host, client port, peer port) for node i, added to a running cluster."""
        port, peer_port = free_ports(2)
        return "127.0.0.1", port, peer_port

    def prefix(self, i):
        return []

    def close(self):
        pass


def wait_for(predicate, timeout=10.0, what="condition"):
    value = processes.wait_until(predicate, timeout)
    if not value:
        raise ClusterError(f"timed out after {timeout} s waiting for {what}")
    return value


def prepare_access(cluster_file):
    """(secret, credentials) of a new cluster, as ./server.sh makes them beside its cluster file: the secret
    every node proves to its peers, and an admin user (authentication is on) whose credentials the tools find."""
    return create_secret(secret_path(cluster_file)), create_admin(cluster_file)


class Cluster:
    def __init__(self, directory, size=4, extra_args=FAST_SETTINGS, hosts=None, clocks=False, node_args=None,
                 tokens=None):
        """clocks: give each node a wall clock of its own (libfaketime), set with skew(i, seconds);
        node_args: {node id: options for that node alone, after extra_args}; tokens: the nodes' (default: the first
        byte split evenly, kvstore.core.config.even_tokens: the tests' keys are made for them)."""
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.hosts = hosts or Loopback()
        addresses = self.hosts.addresses(size)
        self.nodes = [NodeConfig(n.node_id, host, port, n.token, peer_port)
                      for n, (host, port, peer_port) in zip(make_cluster(size, tokens=tokens or even_tokens(size)),
                                                              addresses)]
        self.ring = Ring(self.nodes)
        self.left = set()   # ids of nodes that left the ring (decommissioned, removed): kept in nodes, by id
        self.cluster_file = self.directory / "cluster.txt"
        write_cluster_file(self.cluster_file, self.nodes)
        self.secret, self.credentials = prepare_access(self.cluster_file)
        self.extra_args = tuple(extra_args)
        self.node_args = node_args or {}
        # TLS on a port (--tls: clients', --internode-tls: peers'): a local CA, as ./server.sh tls makes one.
        self.tls = self.peer_tls = None
        if "--tls" in self.extra_args or "--internode-tls" in self.extra_args:
            ca, cert, key = create_local_ca(tls_dir(self.cluster_file), sorted({n.host for n in self.nodes}))
            self.tls = client_context(ca) if "--tls" in self.extra_args else None
            self.peer_tls = client_context(ca, cert, key) if "--internode-tls" in self.extra_args else None
        self.procs = {}
        self._connections = []
        self._clocks = clocks
        for node in self.nodes if clocks else ():
            self.skew(node.node_id, 0)

    # ---- lifecycle ----

    def node_dir(self, i):
        return self.directory / f"node{i}"

    def start(self, only=None):
        """Start every node (only: these node ids), wait until each answers and the running ones see each other."""
        ids = [node.node_id for node in self.nodes] if only is None else list(only)
        try:
            for i in ids:
                self._spawn(i)
            for i in ids:
                self.wait_ready(i)
            self.wait_all_see_all()
        except BaseException:   # a fixture that fails here never reaches its close(): leave no node running
            self.close()
            raise
        return self

    def _spawn(self, i, once=()):
        env = None
        if self._clocks:   # the real-time clock only: deadlines and sleeps keep the monotonic one
            env = {"LD_PRELOAD": clock_preload(), "FAKETIME_TIMESTAMP_FILE": str(self._clock_file(i)),
                   "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_CACHE_DURATION": "1"}
        self.procs[i] = processes.spawn_node(self.cluster_file, i, self.node_dir(i),
                                             self.extra_args + tuple(self.node_args.get(i, ())) + tuple(once),
                                             prefix=self.hosts.prefix(i), env=env)

    def _clock_file(self, i):
        return self.directory / f"node{i}.faketime"

    def skew(self, i, seconds):
        """Set node i's wall clock `seconds` off the machine's (it reads the change within a second)."""
        self._clock_file(i).write_text(f"{seconds:+g}s\n")

    def wait_ready(self, i, timeout=READY_TIMEOUT):
        node = self.nodes[i]
        proc = self.procs[i]
        ready = processes.wait_until(
            lambda: proc.poll() is not None or ping(node.host, node.port, 0.5, self.tls) is not None, timeout)
        if not ready or proc.poll() is not None:
            raise ClusterError(f"node {i} did not start:\n{self.log(i)}")

    def crash(self, i):
        """SIGKILL: no clean shutdown."""
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait(10)

    def pause(self, i):
        """SIGSTOP: the node keeps its sockets but answers nothing (a long GC, a stalled disk)."""
        self.procs[i].send_signal(signal.SIGSTOP)

    def resume(self, i):
        self.procs[i].send_signal(signal.SIGCONT)

    def stop(self, i):
        self.procs[i].send_signal(signal.SIGTERM)
        self.procs[i].wait(15)

    def restart(self, i, wait=True):
        if self.procs[i].poll() is None:
            self.stop(i)
        self._spawn(i)
        if wait:
            self.wait_ready(i)
            for other in self.up_nodes():
                self.wait_seen(other, i, up=True)
        return self.procs[i]

    def replace(self, i, wait=True):
        """Start node i, whose data is gone, with --replace: it answers no reads of a range until it has synced it."""
        self._spawn(i, ("--replace",))
        if wait:
            self.wait_ready(i)

    def lost_data(self, i):
        """Whether node i's data directory holds no replica (wiped, and not being replaced yet)."""
        return not (self.node_dir(i) / COMMIT_LOG_FILE).exists()

    def syncing(self, i):
        """How many of its ranges node i has not synced yet (being replaced); None when it does not answer."""
        try:
            return sum(not r.readable for r in self.call(i, "repair_status").ranges)
        except KVStoreError:
            return None

    def wipe(self, i):
        if self.procs[i].poll() is None:
            raise ClusterError("wipe a stopped node only")
        for path in sorted(self.node_dir(i).rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()

    def up_nodes(self):
        return [i for i, proc in self.procs.items() if proc.poll() is None]

    def close(self):
        for connection in self._connections:
            connection.close()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait(10)
        for node_dir in self.directory.glob("node*"):   # one a test started through ./server.sh, by its lock
            process = processes.find_node(node_dir) if node_dir.is_dir() else None
            if process is not None:
                process.kill()
                process.wait(10)
        self.hosts.close()

    # ---- the ring as it changes (kvstore.testing.ringops changes it) ----

    def members(self):
        """The nodes of the ring now (nodes keeps every node ever started, indexed by id)."""
        return [n for n in self.nodes if n.node_id not in self.left]

    def follow_ring(self):
        """Read the cluster file again after a ring change: new nodes, new tokens, nodes that left."""
        listed = {n.node_id: n for n in read_cluster_file(self.cluster_file)}
        for node_id, node in sorted(listed.items()):
            if node_id < len(self.nodes):
                self.nodes[node_id] = node
            else:
                self.nodes.append(node)
        self.left = {n.node_id for n in self.nodes if n.node_id not in listed}
        self.ring = Ring(self.members())

    def join(self, node_id):
        """Start a node a ring change added to the cluster file; it waits until it answers."""
        self.follow_ring()
        self._spawn(node_id)
        self.wait_ready(node_id)

    # ---- talking to it ----

    def connect(self, i):
        """A connection to node i's client port, closed with the cluster."""
        node = self.nodes[i]
        connection = Connection(node.host, node.port, 2.0, credentials=self.credentials, tls=self.tls)
        self._connections.append(connection)
        return connection

    def call(self, i, method, *args, timeout=10.0):
        """method on node i: on its peer port when it is an internode call, else on its client port, logged
        in as the admin."""
        return call_once(self.nodes[i], method, args, timeout, self.secret, connect_timeout=2.0,
                         credentials=self.credentials, tls=self.tls, peer_tls=self.peer_tls)

    def seen_up(self, observer, i):
        """Whether node observer sees node i up; None when observer does not answer."""
        return waits.sees_up(self.nodes[observer], i, {"tls": self.tls})

    def wait_seen(self, observer, i, up, timeout=10.0):
        wait_for(lambda: self.seen_up(observer, i) is up, timeout,
                 f"node {observer} to see node {i} {'up' if up else 'down'}")

    def wait_all_see_all(self):
        for observer in self.up_nodes():
            for i in set(self.up_nodes()) - {observer}:
                self.wait_seen(observer, i, up=True)

    def crash_and_notice(self, i):
        """Crash node i and wait until every other live node sees it down."""
        self.crash(i)
        for other in self.up_nodes():
            self.wait_seen(other, i, up=False)

    def replicas(self, key):
        return [n.node_id for n in self.ring.replicas_for(key)]

    def key_for(self, replicas, prefix=b""):
        """A key whose replica set is exactly `replicas` (in any order)."""
        for first in range(256):
            key = bytes([first]) + prefix + b"key"
            if sorted(self.replicas(key)) == sorted(replicas):
                return key
        raise ClusterError(f"no key has replicas {replicas}")

    def client(self, i=None, **options):
        """A kvstore.client.Client for this cluster, talking to node i first (default: any)."""
        node = self.nodes[i] if i is not None else None
        options = {"credentials": self.credentials, "tls": self.tls, **options}
        return Client([(n.host, n.port) for n in self.members()], preferred=node and (node.host, node.port), **options)

    def dump(self, i, key=None):
        return self.call(i, "dump", key)

    def cells_on(self, i):
        """{key: IDL Cell} of node i's whole replica, page by page."""
        cells, start = {}, b""
        while True:
            page = self.call(i, "dump", b"", start, 0)
            cells.update((m.key, m.cell) for m in page.cells)
            if not page.next_start:
                return cells
            start = page.next_start

    def cell_on(self, i, key):
        cells = self.dump(i, key).cells
        return cells[0].cell if cells else None

    def log(self, i):
        return processes.log_tail(self.node_dir(i), 40)

    def server_sh(self, *argv, wait=True, timeout=300):
        """Run ./server.sh's launcher on this cluster's directory, as a user would: its CompletedProcess, or with
        wait=False its Popen (output merged)."""
        command = ["python3", "src/launcher.py", "--data-dir", str(self.directory), *map(str, argv)]
        if not wait:
            return subprocess.Popen(command, cwd=CHECKOUT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True)
        return subprocess.run(command, cwd=CHECKOUT, capture_output=True, text=True, timeout=timeout)

    def run_tool(self, *argv, stdin=None, timeout=60):
        """Run one of the user-facing scripts against this cluster, as a user would."""
        return subprocess.run(["python3", *map(str, argv)], cwd=CHECKOUT, input=stdin, capture_output=True,
                              text=True, timeout=timeout)
