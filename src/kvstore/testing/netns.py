"""Test hosts of our own: one Linux network namespace per node, joined by a bridge.

Each node runs in namespace kv<tag>n<i> with address 10.213.<net>.<11+i> on a
veth whose other end is on bridge kvb<tag> (10.213.<net>.1) in the caller's
namespace, so clients there reach every node. A partition installs blackhole
routes inside the namespaces, so packets between the cut-off nodes are dropped
while clients still reach both sides. Needs root and iproute2; everything made
here is removed by close(), and names carry this process's pid so that
concurrent runs do not collide. Traffic stays inside these namespaces.
"""
import logging
import os
import shutil
import subprocess

from kvstore.core.config import PEER_PORT_OFFSET
from kvstore.core.errors import KVStoreError

log = logging.getLogger(__name__)

NODE_PORT = 9000


class NetnsUnavailable(KVStoreError):
    """Network namespaces cannot be made here (not root, no iproute2, or not permitted)."""


def _ip(*args, namespace=None):
    command = (["ip", "netns", "exec", namespace] if namespace else []) + ["ip", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        raise NetnsUnavailable(f"{' '.join(command)}: {result.stderr.strip()}")


class NetnsHosts:
    name = "netns"
    can_partition = True

    def __init__(self):
        if os.geteuid() != 0:
            raise NetnsUnavailable("network namespaces need root")
        if shutil.which("ip") is None:
            raise NetnsUnavailable("the ip command (iproute2) is not installed")
        tag = os.getpid() % 100000
        self._bridge = f"kvb{tag}"
        self._namespace_prefix = f"kv{tag}n"
        self._net = f"10.213.{tag % 250}"
        self._namespaces = []
        self._veths = []
        self._cuts = set()
        try:
            _ip("link", "add", self._bridge, "type", "bridge")
            _ip("addr", "add", f"{self._net}.1/24", "dev", self._bridge)
            _ip("link", "set", self._bridge, "up")
        except NetnsUnavailable:
            self.close()
            raise

    def ip_of(self, i):
        return f"{self._net}.{11 + i}"

    def addresses(self, count):
        try:
            for i in range(count):
                self._add_host(i)
        except NetnsUnavailable:
            self.close()
            raise
        return [(self.ip_of(i), NODE_PORT, NODE_PORT + PEER_PORT_OFFSET) for i in range(count)]

    def add_address(self, i):
        """(host, client port, peer port) for node i, added to a running cluster: a namespace of its own."""
        self._add_host(i)
        return self.ip_of(i), NODE_PORT, NODE_PORT + PEER_PORT_OFFSET

    def _add_host(self, i):
        namespace, outside = f"{self._namespace_prefix}{i}", f"kvv{os.getpid() % 100000}x{i}"
        _ip("netns", "add", namespace)
        self._namespaces.append(namespace)
        self._veths.append(outside)
        _ip("link", "set", "lo", "up", namespace=namespace)
        _ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        _ip("link", "set", outside, "master", self._bridge)
        _ip("link", "set", outside, "up")
        _ip("addr", "add", f"{self.ip_of(i)}/24", "dev", "eth0", namespace=namespace)
        _ip("link", "set", "eth0", "up", namespace=namespace)

    def prefix(self, i):
        return ["ip", "netns", "exec", self._namespaces[i]]

    def partition(self, i, peers):
        """Drop all traffic between node i and each of peers, both ways; clients still reach everyone."""
        for j in peers:
            for a, b in ((i, j), (j, i)):
                if (a, b) not in self._cuts:
                    _ip("route", "add", "blackhole", f"{self.ip_of(b)}/32", namespace=self._namespaces[a])
                    self._cuts.add((a, b))

    def heal(self):
        for a, b in sorted(self._cuts):
            _ip("route", "del", "blackhole", f"{self.ip_of(b)}/32", namespace=self._namespaces[a])
        self._cuts.clear()

    def close(self):
        for veth in self._veths:  # the namespace's end goes with it
            subprocess.run(["ip", "link", "del", veth], capture_output=True, timeout=10)
        for namespace in self._namespaces:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=10)
        self._namespaces, self._veths = [], []
        subprocess.run(["ip", "link", "del", self._bridge], capture_output=True, timeout=10)
