"""Ring changes on a test cluster, as ./server.sh makes them (kvstore.tools.ring_change), with every node the
change starts started by the cluster itself (so crash, pause, restart and the network namespaces reach it)."""
import io

from kvstore.testing.localcluster import ClusterError
from kvstore.tools import balance, launcher, ring_change


class RingOps:
    def __init__(self, cluster):
        self._cluster = cluster
        self.output = ""   # what the last change printed

    def run(self, command, *argv):
        """Run `./server.sh command argv...` in this process; its exit status (the output: self.output)."""
        c = self._cluster
        args = launcher.parse_args(["--data-dir", str(c.directory), command, *map(str, argv)])
        directory, out = launcher.ClusterDirectory(c.directory), io.StringIO()
        try:
            if command == "add":
                code = ring_change.cmd_add(directory, args, self._start, out)
            elif command == "ring":
                code = ring_change.cmd_ring(directory, args, self._start, out)
            elif command == "balance":
                code = balance.cmd_balance(directory, args, out)
            else:
                code = getattr(ring_change, f"cmd_{command}")(directory, args, out)
        finally:
            self.output = out.getvalue()
            c.follow_ring()
        return code

    def add(self, token=None):
        """Add a node (at a new address of the cluster's hosts); its id."""
        node_id = len(self._cluster.nodes)
        host, port, peer_port = self._cluster.hosts.add_address(node_id)
        extra = ["--token", token.hex()] if token else []
        self.must("add", "--host", host, "--port", port, "--peer-port", peer_port, *extra)
        return node_id

    def must(self, command, *argv):
        if self.run(command, *argv) != 0:
            raise ClusterError(f"./server.sh {command} {' '.join(map(str, argv))} failed:\n{self.output}")
        return self.output

    def _start(self, directory, node_id):
        self._cluster.join(node_id)
        return True
