"""The floor: servers built from the same transport, protocol and server as a node, doing no work.

- noop: answers every put and get at once (the cost of one RPC);
- fanout: forwards every put and get to its replicas (noop servers) in parallel
  over pooled connections and answers after 1 (ONE) or 2 (QUORUM) of them, as
  a coordinator with no storage at all would.
Run as a process: python3 src/bench.py --serve noop|fanout --port P [--replicas H:P,H:P,H:P]
"""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from kvstore.core.config import NodeConfig, Settings
from kvstore.core.errors import NodeFailed, NodeUnavailable
from kvstore.net.blocking import Connection
from kvstore.testing.bench.thread_server import ProcessorDoor, RpcServer
from kvstore_rpc import Internode, KVStore, ttypes

_WRITTEN = ttypes.WriteResult(1, [0], [])
RECHECK_AFTER = 0.1   # seconds idle after which a pooled connection is checked before reuse
_READ = ttypes.ReadResult(ttypes.Cell(b"x" * 100, 1), [0], [])


class PeerPool:
    """Idle blocking connections to one node's port, reused across requests, at most `max_idle` kept: the
    floor's own pool (nodes call their peers through kvstore.net.peer_link)."""

    def __init__(self, node, connect_timeout, max_idle=32, peer=True, secret=None, tls=None):
        """secret: the cluster secret each new connection proves; tls: the client-side context for a TLS peer
        port; peer=False: the node's client port and service instead (the benchmark's floor forwards client
        calls)."""
        self.node = node
        self._secret = secret
        self._tls = tls
        self._port, self._service = (node.peer_port, Internode) if peer else (node.port, KVStore)
        self._connect_timeout = connect_timeout
        self._max_idle = max_idle
        self._idle = []
        self._lock = threading.Lock()

    def call(self, method, *args, timeout):
        """Call method on the node; NodeUnavailable if it cannot be reached or does not answer in time."""
        connection = self._take(timeout)
        try:
            return connection.call(method, args, timeout)
        finally:
            if not connection.broken:
                self._give_back(connection)  # IDL exceptions leave the connection usable

    def _take(self, timeout):
        while True:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                break
            # Has the node restarted since this one was pooled? Not within RECHECK_AFTER of its last
            # answer: no node stops and serves again that fast, and the check is a system call.
            if time.monotonic() - connection.last_answer < RECHECK_AFTER or not connection.peer_closed():
                return connection
            connection.close()
        return self.connect(timeout)

    def connect(self, timeout):
        """A new connection of the caller's own (not pooled); ConnectFailed if the node cannot be reached
        within `timeout` (or the pool's connect timeout, if shorter)."""
        return Connection(self.node.host, self._port, min(self._connect_timeout, max(timeout, 0.001)),
                          service=self._service, secret=self._secret, tls=self._tls)

    def _give_back(self, connection):
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append(connection)
                return
        connection.close()

    def close(self):
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


class NoopHandler:
    def put(self, key, value, level, ttl_seconds=None, min_timestamp=None):
        return _WRITTEN

    def get(self, key, level, min_timestamp=None):
        return _READ

    def describe_ring(self):   # what readiness is asked with
        return []


class FanoutHandler(NoopHandler):
    def __init__(self, replicas, timeout=2.0):
        self._pools = [PeerPool(node, connect_timeout=1.0, peer=False) for node in replicas]
        self._executor = ThreadPoolExecutor(max_workers=64)
        self._timeout = timeout

    def _fan_out(self, method, args, needed):
        done = threading.Condition()
        answered = [0, 0]  # ok, failed

        def call(pool):
            try:
                pool.call(method, *args, timeout=self._timeout)
                ok = True
            except (NodeUnavailable, NodeFailed):
                ok = False
            with done:
                answered[0 if ok else 1] += 1
                done.notify_all()
        for pool in self._pools:
            self._executor.submit(call, pool)
        with done:
            done.wait_for(lambda: answered[0] >= needed or sum(answered) == len(self._pools), self._timeout)
            if answered[0] < needed:
                raise ttypes.TimedOut("floor replicas did not answer", answered[0], needed)

    def put(self, key, value, level, ttl_seconds=None, min_timestamp=None):
        self._fan_out("put", (key, value, level), 1 if level == ttypes.ConsistencyLevel.ONE else 2)
        return _WRITTEN

    def get(self, key, level, min_timestamp=None):
        self._fan_out("get", (key, level), 1 if level == ttypes.ConsistencyLevel.ONE else 2)
        return _READ


def serve(kind, host, port, replicas=()):
    handler = NoopHandler() if kind == "noop" else FanoutHandler(
        [NodeConfig(i, h, p, b"") for i, (h, p) in enumerate(replicas)])
    processor = KVStore.Processor(handler)
    server = RpcServer(host, port, lambda who: ProcessorDoor(processor, 3600.0), Settings(), KVStore)
    server.bind()
    server.serve_forever()
