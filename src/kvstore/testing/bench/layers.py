"""What a QUORUM get and a QUORUM put cost in the node's own Python, layer by layer, beside the loop floor's, in
one process.

The cluster benchmark measures a node's whole CPU per operation, and on a
shared 2-core machine most of it is the kernel's and the loop's (sockets,
wake-ups) and moves by tens of percent from run to run. Here each layer runs
alone on a uvloop loop, with stand-ins only for what would leave the process
(transports, and the far side of each internode call), so what remains is
the interpreter's work: the part of an operation that the store's code decides.

A get:
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

A put, the same layers: client put (the local write applied to the real
Storage, its append completed a loop turn later by a stand-in for the disk
worker), internode write, replica write (each call a newer cell, so each is
applied); and the disk append: one append through a real DiskWorker thread to
a real CommitLog that skips the fdatasync (the hand-off to the worker and
back, and the pwrite). Beside it, the hand-off alone: a queue to a thread
that does nothing and answers on the loop, the least any disk worker pays.
- store put = client put + 2 x (internode write + replica write)
  + 3 x disk append.
- floor put: the loop floor's put over no-op replicas, plus 3 hand-offs:
  what its durable replicas add in Python (each hands its fdatasync to a
  thread and is woken when it is done), without the disk.

Rounds take turns among the layers and the floor. Each figure is the fastest
round's (the least disturbed by the machine), in microseconds of process CPU
per operation; the ratio is the median of the rounds' ratios, each taken
between a store round and the floor round right after it.
"""
import asyncio
import collections
import itertools
import queue
import statistics
import struct
import tempfile
import threading
import time
from pathlib import Path

import uvloop
from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
from thrift.Thrift import TMessageType

from kvstore.net import codec
from kvstore.service.gate import Gate
from kvstore.testing.bench import loopfloor
from kvstore.testing.bench.durability import write_log
from kvstore.testing.bench.load import bench_key
from kvstore.core.cell import Cell, encode_mutation
from kvstore.core.clock import Clock
from kvstore.storage.commitlog import CommitLog
from kvstore.core.config import Settings, make_cluster
from kvstore.cluster.coordinator import Coordinator
from kvstore.storage.diskworker import DiskWorker
from kvstore.cluster.failure import FailureDetector
from kvstore.net.frames import encode_frame
from kvstore.service.client_service import Handler
from kvstore.net.connection import Inbound
from kvstore.service.peer_service import InternodeHandler
from kvstore.net.server import LoopServer, SharedDoor
from kvstore.net.peer_link import PeerLink
from kvstore.cluster.replicas import LocalReplica, RemoteReplica
from kvstore.core.ring import Ring
from kvstore.storage.store import Storage
from kvstore.core.tasks import Background
from kvstore_rpc import Internode, KVStore, ttypes

KEYS = 1000
VALUE = b"v" * 100   # every key's value in the log the storage replays (bench.durability.write_log)
_SEQID = struct.Struct("!i")
_TIMESTAMP = struct.Struct("!q")


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

    def write_many_async(self, writes, deadline):
        loop = asyncio.get_running_loop()
        for _, _, callback in writes:
            loop.call_soon(callback, None, 0)   # acknowledged: the write is its newest cell


class _DiskStandIn:
    """The disk worker's place in the client put: an append completes a loop turn later (the disk append layer
    measures the real one)."""

    def append(self, commit_log, payloads, done):
        asyncio.get_running_loop().call_soon(done, None)


class _Peer:
    """A peer as the failure detector sees it: its heartbeats show a clock, so that stamps are judged against
    three peers' clocks, as in a cluster."""

    def __init__(self, node_id):
        self.node_id = node_id

    async def heartbeat(self, from_node, timeout):
        return ttypes.Heartbeat(self.node_id, 1, int(time.time() * 1_000_000))


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


def _decoded(payload, result_class):
    """The success of an answer (a message, without its length), or LayerError."""
    _, kind, _, offset = codec.read_header(payload)
    result = result_class()
    result.read(TBinaryProtocolAccelerated(codec.buffer_at(payload, offset)))
    if kind != TMessageType.REPLY or result.success is None:
        raise LayerError(f"a layer answered {result!r}, not a value: it measures the wrong path")
    return result.success


def _check_value(cell):
    if cell is None or cell.value != VALUE:
        raise LayerError(f"a layer read {cell!r}, not the value written: it measures the wrong path")


def _check_acknowledged(acknowledged, replicas):
    if len(acknowledged or ()) != replicas:
        raise LayerError(f"a layer's write was acknowledged by {acknowledged!r}, not by its {replicas} replicas: "
                         "it measures the wrong path")


class LayerError(Exception):
    """A layer did not do what it is measured doing (it failed, or took another path)."""


async def _client_connection(storage, method):
    """(a client connection to a node that holds the key bench_key(5), through which `method` is served; its
    transport). The node's local replica is storage; its other replicas are _AnsweringReplica stand-ins."""
    settings, nodes = Settings(), make_cluster(4)
    ring = Ring(nodes)
    me = ring.replicas_for(bench_key(5))[0].node_id   # its own copy is one of the reads and writes
    replicas = {node.node_id: _AnsweringReplica(node.node_id, storage) for node in nodes}
    replicas[me] = LocalReplica(me, storage)
    detector = FailureDetector(me, {n: _Peer(n) for n in replicas if n != me}, 1.0, 1.0)
    await detector.ping_all()   # every peer up, its clock measured
    clock = Clock()
    clock.peers = detector
    coordinator = Coordinator(me, ring, replicas, detector, None, clock, settings.request_timeout, Background())
    ready = asyncio.Event()
    ready.set()
    handler = Handler(me, ring, coordinator, detector, settings, ready)
    server = LoopServer("127.0.0.1", 0, lambda who: Gate({method: getattr(handler, method)}, None, 60, who),
                        settings, KVStore)
    connection, transport = Inbound(server, ("127.0.0.1", 1)), _Transport()
    connection.connection_made(transport)
    return connection, transport


def _calling(connection, transport, request=None):
    """A coroutine function: one request (by default `request`) through the connection, returning its answer's
    bytes."""
    loop = asyncio.get_running_loop()

    async def one(data=request):
        answered = loop.create_future()
        transport.on_write = answered.set_result
        connection.data_received(data)
        return await answered
    return one


async def _client_get(storage):
    request = encode_frame(codec.message("get", TMessageType.CALL, 1,
                                      KVStore.get_args(key=bench_key(5), level=ttypes.ConsistencyLevel.QUORUM)))
    one = _calling(*await _client_connection(storage, "get"), request)
    _check_value(_decoded((await one())[4:], KVStore.get_result).cell)
    return one


async def _client_put(storage):
    request = encode_frame(codec.message("put", TMessageType.CALL, 1, KVStore.put_args(
        key=bench_key(5), value=VALUE, level=ttypes.ConsistencyLevel.QUORUM)))
    one = _calling(*await _client_connection(storage, "put"), request)
    _check_acknowledged(_decoded((await one())[4:], KVStore.put_result).acknowledged, 3)
    return one


def _linked_replica(opened):
    """(a RemoteReplica for node 1, over a PeerLink whose connection is a _Protocol stand-in; that protocol). The
    replica is added to `opened`, for its owner to close."""
    link = PeerLink(make_cluster(4)[1], 1.0)
    protocol = _Protocol()
    link._protocol = protocol   # a connection that has proved itself, as _connect leaves it
    replica = RemoteReplica(1, link)
    opened.append(replica)
    return replica, protocol


def _answer_to(link, protocol, method, result):
    """A function answering the call just written on protocol with result. The replica's answer is encoded once
    (its encoding is the replica's side): only its sequence id changes."""
    answer = codec.message(method, TMessageType.REPLY, 0, result)
    at = 8 + len(method)

    def answer_last():
        _, _, seqid, _ = codec.read_header(protocol.frames.pop())
        link.answered(protocol, answer[:at] + _SEQID.pack(seqid) + answer[at + 4:])
    return answer_last


async def _internode_read(opened):
    replica, protocol = _linked_replica(opened)
    answer_last = _answer_to(replica.link, protocol, "replica_read_batch", Internode.replica_read_batch_result(
        success=[ttypes.ReadResult(ttypes.Cell(VALUE, 1, 0), [1], [])]))
    read = collections.deque(maxlen=1)   # the cell the last call got

    async def one():
        replica.read_many_async([(bench_key(5), lambda error, cell: read.append(cell))], time.monotonic() + 2)
        answer_last()
    await one()
    _check_value(read[0])
    return one


async def _internode_write(opened):
    replica, protocol = _linked_replica(opened)
    answer_last = _answer_to(replica.link, protocol, "replica_write_batch",
                             Internode.replica_write_batch_result(success=[0]))
    written = collections.deque(maxlen=1)   # what the last call's callback got
    cell = Cell(VALUE, int(time.time() * 1_000_000), 0)

    async def one():
        replica.write_many_async([(bench_key(5), cell, lambda error, held: written.append((error, held)))],
                                 time.monotonic() + 2)
        answer_last()
    await one()
    if written[0] != (None, 0):
        raise LayerError(f"an internode write got {written[0]!r}, not an acknowledgement: it measures the wrong path")
    return one


def _peer_connection(storage, method):
    """(a connection to the peer port, through which `method` of the internode service is served; its
    transport)."""
    settings = Settings()
    internode = InternodeHandler(0, 1, storage, None, None, settings, [1, 2, 3], Clock())
    door = SharedDoor({method: getattr(internode, method)}, 60)
    server = LoopServer("127.0.0.1", 0, lambda who: door, settings, Internode)
    connection, transport = Inbound(server, ("127.0.0.1", 1)), _Transport()
    connection.connection_made(transport)
    return connection, transport


async def _replica_read(storage):
    connection, transport = _peer_connection(storage, "replica_read_batch")
    request = encode_frame(codec.message("replica_read_batch", TMessageType.CALL, 1,
                                      Internode.replica_read_batch_args(keys=[bench_key(5)])))

    async def one():
        connection.data_received(request)
    answers = []
    transport.on_write = answers.append
    await one()
    transport.on_write = None
    _check_value(_decoded(answers[0][4:], Internode.replica_read_batch_result)[0].cell)
    return one


async def _replica_write(storage):
    """Each call writes a newer cell of one key (its timestamp patched into the request), so each is applied."""
    sentinel = 0x0123456789ABCDEF
    mutation = ttypes.Mutation(bench_key(6), ttypes.Cell(VALUE, sentinel, 0))
    args = Internode.replica_write_batch_args(mutations=[mutation])
    request = encode_frame(codec.message("replica_write_batch", TMessageType.CALL, 1, args))
    at = request.index(_TIMESTAMP.pack(sentinel))
    before, after = request[:at], request[at + _TIMESTAMP.size:]
    stamps = itertools.count(int(time.time() * 1_000_000))
    one = _calling(*_peer_connection(storage, "replica_write_batch"))

    async def write():
        return await one(before + _TIMESTAMP.pack(next(stamps)) + after)
    answers = [_decoded((await write())[4:], Internode.replica_write_batch_result) for _ in range(2)]
    if answers != [[0], [0]] or storage.get(bench_key(6)).timestamp != next(stamps) - 1:   # each applied
        raise LayerError(f"replica writes answered {answers!r}, or did not apply their cells: it measures the "
                         "wrong path")
    return write


async def _disk_append(directory, owned):
    """One append through a real DiskWorker to a CommitLog that skips the fdatasync; owned: the worker and the
    log go in it, to be stopped and closed."""
    worker = DiskWorker(asyncio.get_running_loop(), name="layers-disk")
    commit_log = CommitLog(Path(directory) / "appended.log", sync=lambda fd: None)
    commit_log.replay()
    worker.start()
    owned += [worker.stop, commit_log.close]
    payloads = [encode_mutation(bench_key(5), Cell(VALUE, 1, 0))]

    async def one():
        await worker.append(commit_log, payloads)
    await one()
    if commit_log.records_written != 1:
        raise LayerError("an append wrote nothing: it measures the wrong path")
    return one


def _handoff(owned):
    """The least a disk worker pays: a future handed to a thread through a queue, completed on the loop."""
    loop, handed = asyncio.get_running_loop(), queue.SimpleQueue()

    def complete():
        for future in iter(handed.get, None):
            loop.call_soon_threadsafe(future.set_result, None)
    thread = threading.Thread(target=complete, name="layers-handoff")
    thread.start()

    def stop():
        handed.put(None)
        thread.join()
    owned.append(stop)

    async def one():
        future = loop.create_future()
        handed.put(future)
        await future
    return one


def _floor(method):
    call = loopfloor.in_process(method)

    async def one():
        call()
    return one


async def _measure(storage, directory, calls, rounds):
    owned = []   # what the layers started, stopped when they are done
    opened = []  # the stand-in remote replicas, closed when they are done
    try:
        runs = {"client_get_us": await _client_get(storage), "internode_read_us": await _internode_read(opened),
                "replica_read_us": await _replica_read(storage), "floor_get_us": _floor("get"),
                "client_put_us": await _client_put(storage), "internode_write_us": await _internode_write(opened),
                "replica_write_us": await _replica_write(storage),
                "disk_append_us": await _disk_append(directory, owned), "handoff_us": _handoff(owned),
                "floor_put_us": _floor("put")}
        return await _rounds(runs, calls, rounds)
    finally:
        for replica in opened:
            await replica.close()
        for stop in owned:
            stop()


def measure_layers(calls=1000, rounds=25):
    """{figure: microseconds of CPU per operation} (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="kvstore-layers-") as tmp:
        write_log(Path(tmp) / "commit.log", KEYS, len(VALUE))
        storage = Storage(CommitLog(Path(tmp) / "commit.log"), _DiskStandIn(), Background())
        storage.load()
        try:
            samples = uvloop.run(_measure(storage, tmp, calls, rounds))
        finally:
            storage.close()
    rounds = [dict(zip(samples, values)) for values in zip(*samples.values())]
    samples["store_get_us"] = [r["client_get_us"] + 2 * (r["internode_read_us"] + r["replica_read_us"])
                               for r in rounds]
    samples["store_put_us"] = [r["client_put_us"] + 2 * (r["internode_write_us"] + r["replica_write_us"])
                               + 3 * r["disk_append_us"] for r in rounds]
    samples["durable_floor_put_us"] = [r["floor_put_us"] + 3 * r["handoff_us"] for r in rounds]
    figures = {name: min(values) for name, values in samples.items()}
    figures["store_over_floor"] = statistics.median(store / floor for store, floor in
                                                    zip(samples["store_get_us"], samples["floor_get_us"]))
    figures["put_store_over_floor"] = statistics.median(store / floor for store, floor in
                                                        zip(samples["store_put_us"], samples["durable_floor_put_us"]))
    return figures


def table(figures):
    return "\n".join([
        "CPU of the node's own Python per get QUORUM, in one process (us, the fastest round's):",
        f"  client get (connection, gate, handler, coordinator, local read)  {figures['client_get_us']:7.1f}",
        f"  internode read, coordinator's side (channel, link), x2           {figures['internode_read_us']:7.1f}",
        f"  replica read, replica's side (connection, handler), x2           {figures['replica_read_us']:7.1f}",
        f"  store get = client get + 2 x (internode + replica)               {figures['store_get_us']:7.1f}",
        f"  loop floor get (coordinator and 3 no-op replicas)                {figures['floor_get_us']:7.1f}",
        f"  store / floor (median of the rounds' ratios)                     {figures['store_over_floor']:7.2f}x",
        "and per put QUORUM:",
        f"  client put (connection, gate, handler, coordinator, local write) {figures['client_put_us']:7.1f}",
        f"  internode write, coordinator's side (channel, link), x2          {figures['internode_write_us']:7.1f}",
        f"  replica write, replica's side (connection, handler, storage), x2 {figures['replica_write_us']:7.1f}",
        f"  disk append (to the disk worker and back, pwrite, no fsync), x3  {figures['disk_append_us']:7.1f}",
        f"  store put = client put + 2 x (internode + replica) + 3 x append  {figures['store_put_us']:7.1f}",
        f"  loop floor put (coordinator and 3 no-op replicas)                {figures['floor_put_us']:7.1f}",
        f"  hand-off to a thread and back (a durable replica's least), x3    {figures['handoff_us']:7.1f}",
        f"  durable floor put = floor put + 3 x hand-off                     {figures['durable_floor_put_us']:7.1f}",
        f"  store / durable floor (median of the rounds' ratios)             {figures['put_store_over_floor']:7.2f}x"])
