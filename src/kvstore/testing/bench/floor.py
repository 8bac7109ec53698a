"""The floor: servers built from the same transport, protocol and server as a node, doing no work.

- noop: answers every put and get at once (the cost of one RPC);
- fanout: forwards every put and get to its replicas (noop servers) in parallel
  over pooled connections and answers after 1 (ONE) or 2 (QUORUM) of them, as
  a coordinator with no storage at all would.
Run as a process: python3 src/bench.py --serve noop|fanout --port P [--replicas H:P,H:P,H:P]
"""
import threading
from concurrent.futures import ThreadPoolExecutor

from kvstore.core.config import NodeConfig, Settings
from kvstore.core.errors import NodeFailed, NodeUnavailable
from kvstore.net.blocking import PeerPool
from kvstore.testing.bench.thread_server import RpcServer, SharedDoor
from kvstore_rpc import KVStore, ttypes

_WRITTEN = ttypes.WriteResult(1, [0], [])
_READ = ttypes.ReadResult(ttypes.Cell(b"x" * 100, 1), [0], [])


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
    server = RpcServer(host, port, lambda who: SharedDoor(processor, 3600.0), Settings(), KVStore)
    server.bind()
    server.serve_forever()
