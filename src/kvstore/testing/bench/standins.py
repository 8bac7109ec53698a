"""Stand-ins for what would leave the process when the layers benchmark (layers.py) measures one layer of a
node alone: transports, the far side of an internode call, the disk worker, a peer's heartbeat; and the checks
that each layer did what it is measured doing."""
import asyncio
import time

from kvstore_rpc import ttypes
from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
from thrift.Thrift import TMessageType

from kvstore.net import codec

KEYS = 1000
VALUE = b"v" * 100   # every key's value in the log the storage replays (bench.durability.write_log)


class Transport:
    """Where a connection's answers go: to on_write, if set."""

    def __init__(self):
        self.on_write = None

    def set_write_buffer_limits(self, high):
        pass

    def write(self, data):
        if self.on_write is not None:
            self.on_write(data)

    def is_closing(self):
        return False


class AnsweringReplica:
    """A remote replica that answers a loop turn later from the same cells (the coordinator's far side)."""

    def __init__(self, node_id, storage):
        self.node_id = node_id
        self._storage = storage

    def read_many_async(self, reads, deadline):
        loop = asyncio.get_running_loop()
        for key, callback in reads:
            loop.call_soon(callback, None, self._storage.get(key))

    def write_many_async(self, writes, deadline):
        loop = asyncio.get_running_loop()
        for _, _, callback in writes:
            loop.call_soon(callback, None, 0)   # acknowledged: the write is its newest cell


class DiskStandIn:
    """The disk worker's place in the client put: an append completes a loop turn later (the disk append layer
    measures the real one)."""

    def append(self, commit_log, payloads, done):
        asyncio.get_running_loop().call_soon(done, None)


class Peer:
    """A peer as the failure detector sees it: its heartbeats show a clock, so that stamps are judged against
    three peers' clocks, as in a cluster."""

    def __init__(self, node_id):
        self.node_id = node_id

    async def heartbeat(self, from_node, timeout):
        return ttypes.Heartbeat(self.node_id, 1, int(time.time() * 1_000_000))


class Protocol:
    """A peer connection's protocol as PeerLink sees it: frames written are kept."""

    def __init__(self):
        self.frames = []
        self.last_answer = 0.0

    def write(self, frame):
        self.frames.append(frame)

    def close(self):
        pass


def decoded(payload, result_class):
    """The success of an answer (a message, without its length), or LayerError."""
    _, kind, _, offset = codec.read_header(payload)
    result = result_class()
    result.read(TBinaryProtocolAccelerated(codec.buffer_at(payload, offset)))
    if kind != TMessageType.REPLY or result.success is None:
        raise LayerError(f"a layer answered {result!r}, not a value: it measures the wrong path")
    return result.success


def check_value(cell):
    if cell is None or cell.value != VALUE:
        raise LayerError(f"a layer read {cell!r}, not the value written: it measures the wrong path")


def check_acknowledged(acknowledged, replicas):
    if len(acknowledged or ()) != replicas:
        raise LayerError(f"a layer's write was acknowledged by {acknowledged!r}, not by its {replicas} replicas: "
                         "it measures the wrong path")


class LayerError(Exception):
    """A layer did not do what it is measured doing (it failed, or took another path)."""


