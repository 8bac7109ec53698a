"""What a QUORUM get costs in the node's own Python, layer by layer, beside the loop floor's, in one process.

The cluster benchmark measures a node's whole CPU per operation, and on a
shared 2-core machine most of it is the kernel's and the loop's (sockets,
wake-ups) and moves by tens of percent from run to run. Here each layer runs
alone on a uvloop loop, with stand-ins only for what would leave the process
(transports, and the far side of each internode call), so what remains is
the interpreter's work: the part of a get that the store's code decides.

- client get: a client's get QUORUM on a node that holds the key, through
  the client port's connection (Inbound), the login gate, the handler and
  the coordinator, the local read from a real Storage replayed from a log;
  the two remote replicas answer a loop turn later through a stand-in.
- internode read: one of those remote reads as the coordinator makes it:
  RemoteReplica, its PeerChannel and PeerLink, the frame encoded, the
  answer decoded and called back.
- replica read: the replica's side of it, a replica_read_batch of one key
  through the peer port's connection and the internode handler.
- store get = client get + 2 x (internode read + replica read).
- floor get: the loop floor's coordinator and its 3 no-op replicas, the same
  get, framing included.

Rounds take turns among the layers and the floor. Each figure is the fastest
round's (the least disturbed by the machine), in microseconds of process CPU
per operation; the ratio is the median of the rounds' ratios, each taken
between a store round and the floor round right after it.
"""
import asyncio
import collections
import statistics
import struct
import tempfile
import time
from pathlib import Path

import uvloop
from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
from thrift.Thrift import TMessageType

from kvstore import dispatch
from kvstore.access import Gate
from kvstore.bench import loopfloor
from kvstore.bench.durability import write_log
from kvstore.bench.load import bench_key
from kvstore.clock import Clock
from kvstore.commitlog import CommitLog
from kvstore.config import Settings, make_cluster
from kvstore.coordinator import Coordinator
from kvstore.failure import FailureDetector
from kvstore.handler import Handler
from kvstore.inbound import Inbound
from kvstore.internode import InternodeHandler
from kvstore.loopserver import LoopServer, SharedDoor
from kvstore.peerlink import PeerLink
from kvstore.replicas import LocalReplica, RemoteReplica
from kvstore.ring import Ring
from kvstore.storage import Storage
from kvstore_rpc import Internode, KVStore, ttypes

KEYS = 1000
VALUE = b"v" * 100   # every key's value in the log the storage replays (bench.durability.write_log)
_LENGTH = struct.Struct("!i")
_SEQID = struct.Struct("!i")


class _Transport:
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


class _AnsweringReplica:
    """A remote replica that answers a loop turn later from the same cells (the coordinator's far side)."""

    def __init__(self, node_id, storage):
        self.node_id = node_id
        self._storage = storage

    def read_many_async(self, reads, deadline):
        loop = asyncio.get_running_loop()
        for key, callback in reads:
            loop.call_soon(callback, None, self._storage.get(key))


class _Protocol:
    """A peer connection's protocol as PeerLink sees it: frames written are kept."""

    def __init__(self):
        self.frames = []
        self.last_answer = 0.0

    def write(self, frame):
        self.frames.append(frame)

    def close(self):
        pass


async def _rounds(runs, calls, rounds):
    """{name: [microseconds of CPU per call of runs[name](), one per round]}. Rounds take turns among the
    runs, so the machine's drift falls on them alike; the loop turns between calls are counted."""
    for run in runs.values():
        for _ in range(max(1, calls // 10)):
            await run()
    samples = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            started = time.process_time()
            for _ in range(calls):
                await run()
            samples[name].append((time.process_time() - started) / calls * 1e6)
    return samples


def _frame(payload):
    return _LENGTH.pack(len(payload)) + payload


def _decoded(payload, result_class):
    """The success of an answer (a message, without its length), or LayerError."""
    _, kind, _, offset = dispatch.read_header(payload)
    result = result_class()
    result.read(TBinaryProtocolAccelerated(dispatch.buffer_at(payload, offset)))
    if kind != TMessageType.REPLY or result.success is None:
        raise LayerError(f"a layer answered {result!r}, not a value: it measures the wrong path")
    return result.success


def _check_value(cell):
    if cell is None or cell.value != VALUE:
        raise LayerError(f"a layer read {cell!r}, not the value written: it measures the wrong path")


class LayerError(Exception):
    """A layer did not do what it is measured doing (it failed, or took another path)."""


async def _client_get(storage):
    settings, nodes = Settings(), make_cluster(4)
    ring = Ring(nodes)
    key = bench_key(5)
    me = ring.replicas_for(key)[0].node_id   # a node that holds the key: its own copy is one of the reads
    replicas = {node.node_id: _AnsweringReplica(node.node_id, storage) for node in nodes}
    replicas[me] = LocalReplica(me, storage)
    detector = FailureDetector(me, {n: None for n in replicas if n != me}, 1.0, 1.0)
    for node_id in replicas:
        detector.mark_up(node_id)
    clock = Clock()
    clock.peers = detector
    coordinator = Coordinator(me, ring, replicas, detector, None, clock, settings.request_timeout, None)
    ready = asyncio.Event()
    ready.set()
    handler = Handler(me, ring, coordinator, detector, settings, ready)
    server = LoopServer("127.0.0.1", 0, lambda who: Gate({"get": handler.get}, None, 60, who), settings, KVStore)
    connection, transport = Inbound(server, ("127.0.0.1", 1)), _Transport()
    connection.connection_made(transport)
    request = _frame(dispatch.message("get", TMessageType.CALL, 1,
                                      KVStore.get_args(key=key, level=ttypes.ConsistencyLevel.QUORUM)))
    loop = asyncio.get_running_loop()

    async def one():
        answered = loop.create_future()
        transport.on_write = lambda data: answered.set_result(data)
        connection.data_received(request)
        return await answered
    _check_value(_decoded((await one())[4:], KVStore.get_result).cell)
    return one


async def _internode_read():
    link = PeerLink(make_cluster(4)[1], 1.0)
    protocol = _Protocol()
    link._protocol = protocol   # a connection that has proved itself, as _connect leaves it
    replica = RemoteReplica(1, link)
    result = Internode.replica_read_batch_result(success=[ttypes.ReadResult(ttypes.Cell(VALUE, 1, 0), [1], [])])
    # The replica's answer, encoded once (its encoding is the replica's side): only its sequence id changes.
    answer = dispatch.message("replica_read_batch", TMessageType.REPLY, 0, result)
    at = 8 + len("replica_read_batch")
    read = collections.deque(maxlen=1)   # the cell the last call got

    async def one():
        replica.read_many_async([(bench_key(5), lambda error, cell: read.append(cell))], time.monotonic() + 2)
        _, _, seqid, _ = dispatch.read_header(protocol.frames.pop())
        link.answered(protocol, answer[:at] + _SEQID.pack(seqid) + answer[at + 4:])
    await one()
    _check_value(read[0])
    return one, replica


async def _replica_read(storage):
    settings = Settings()
    internode = InternodeHandler(0, 1, storage, None, None, settings, [1, 2, 3], Clock())
    door = SharedDoor({"replica_read_batch": internode.replica_read_batch}, 60)
    server = LoopServer("127.0.0.1", 0, lambda who: door, settings, Internode)
    connection, transport = Inbound(server, ("127.0.0.1", 1)), _Transport()
    connection.connection_made(transport)
    request = _frame(dispatch.message("replica_read_batch", TMessageType.CALL, 1,
                                      Internode.replica_read_batch_args(keys=[bench_key(5)])))

    async def one():
        connection.data_received(request)
    answers = []
    transport.on_write = answers.append
    await one()
    transport.on_write = None
    _check_value(_decoded(answers[0][4:], Internode.replica_read_batch_result)[0].cell)
    return one


def _floor_get():
    get = loopfloor.in_process_get()

    async def one():
        get()
    return one


async def _measure(storage, calls, rounds):
    internode_read, remote = await _internode_read()
    try:
        return await _rounds({"client_get_us": await _client_get(storage), "internode_read_us": internode_read,
                              "replica_read_us": await _replica_read(storage), "floor_get_us": _floor_get()},
                             calls, rounds)
    finally:
        await remote.close()


def measure_layers(calls=1000, rounds=25):
    """{figure: microseconds of CPU per operation} (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="kvstore-layers-") as tmp:
        write_log(Path(tmp) / "commit.log", KEYS, len(VALUE))
        storage = Storage(CommitLog(Path(tmp) / "commit.log"), None, None)
        storage.load()
        try:
            samples = uvloop.run(_measure(storage, calls, rounds))
        finally:
            storage.close()
    samples["store_get_us"] = [client + 2 * (internode + replica) for client, internode, replica in
                               zip(samples["client_get_us"], samples["internode_read_us"], samples["replica_read_us"])]
    figures = {name: min(values) for name, values in samples.items()}
    figures["store_over_floor"] = statistics.median(store / floor for store, floor in
                                                    zip(samples["store_get_us"], samples["floor_get_us"]))
    return figures


def table(figures):
    return "\n".join([
        "CPU of the node's own Python per get QUORUM, in one process (us, the fastest round's):",
        f"  client get (connection, gate, handler, coordinator, local read)  {figures['client_get_us']:7.1f}",
        f"  internode read, coordinator's side (channel, link), x2           {figures['internode_read_us']:7.1f}",
        f"  replica read, replica's side (connection, handler), x2           {figures['replica_read_us']:7.1f}",
        f"  store get = client get + 2 x (internode + replica)               {figures['store_get_us']:7.1f}",
        f"  loop floor get (coordinator and 3 no-op replicas)                {figures['floor_get_us']:7.1f}",
        f"  store / floor (median of the rounds' ratios)                     {figures['store_over_floor']:7.2f}x"])
