"""Each layer of a get and of a put, built to run alone (see layers.py): a coroutine function that makes one
call through that layer, checked once to take the path it is measured on."""
import asyncio
import collections
import itertools
import queue
import struct
import threading
import time
from pathlib import Path

from kvstore_rpc import Internode, KVStore, ttypes
from thrift.Thrift import TMessageType

from kvstore.cluster.coordinator import Coordinator
from kvstore.cluster.failure import FailureDetector
from kvstore.cluster.replicas import LocalReplica, RemoteReplica
from kvstore.core.cell import Cell, encode_mutation
from kvstore.core.clock import Clock
from kvstore.core.config import Settings, even_tokens, make_cluster
from kvstore.cluster.membership import Membership
from kvstore.core.ring_state import RingState
from kvstore.core.tasks import Background
from kvstore.net import codec
from kvstore.net.codec import encode_frame
from kvstore.net.connection import Inbound
from kvstore.net.peer_link import PeerLink
from kvstore.net.server import LoopServer, SharedDoor
from kvstore.service.client_service import Handler
from kvstore.service.gate import Gate
from kvstore.service.peer_service import InternodeHandler
from kvstore.storage.commitlog import CommitLog
from kvstore.storage.diskworker import DiskWorker
from kvstore.testing.bench import loopfloor
from kvstore.testing.bench.load import bench_key
from kvstore.testing.bench.standins import (VALUE, AnsweringReplica, LayerError, Peer, Protocol, Transport,
                                            check_acknowledged, check_value, decoded)

_SEQID = struct.Struct("!i")
_TIMESTAMP = struct.Struct("!q")


async def client_connection(storage, method):
    """(a client connection to a node that holds the key bench_key(5), through which `method` is served; its
    transport). The node's local replica is storage; its other replicas are AnsweringReplica stand-ins."""
    settings, nodes = Settings(), make_cluster(4, tokens=even_tokens(4))
    membership = Membership(0, RingState(1, tuple(nodes)), None, None, settings.request_timeout, Background())
    ring = membership.placement
    me = ring.replicas_for(bench_key(5))[0].node_id   # its own copy is one of the reads and writes
    replicas = {node.node_id: AnsweringReplica(node.node_id, storage) for node in nodes}
    replicas[me] = LocalReplica(me, storage)
    detector = FailureDetector(me, {n: Peer(n) for n in replicas if n != me}, 1.0, 1.0)
    await detector.ping_all()   # every peer up, its clock measured
    clock = Clock()
    clock.peers = detector
    coordinator = Coordinator(me, ring, replicas, detector, None, clock, settings.request_timeout, Background())
    ready = asyncio.Event()
    ready.set()
    handler = Handler(me, membership, coordinator, detector, settings, ready)
    server = LoopServer("127.0.0.1", 0, lambda who: Gate({method: getattr(handler, method)}, None, 60, who),
                        settings, KVStore)
    connection, transport = Inbound(server, ("127.0.0.1", 1)), Transport()
    connection.connection_made(transport)
    return connection, transport


def calling(connection, transport, request=None):
    """A coroutine function: one request (by default `request`) through the connection, returning its answer's
    bytes."""
    loop = asyncio.get_running_loop()

    async def one(data=request):
        answered = loop.create_future()
        transport.on_write = answered.set_result
        connection.data_received(data)
        return await answered
    return one


async def client_get(storage):
    request = encode_frame(codec.message("get", TMessageType.CALL, 1,
                                      KVStore.get_args(key=bench_key(5), level=ttypes.ConsistencyLevel.QUORUM)))
    one = calling(*await client_connection(storage, "get"), request)
    check_value(decoded((await one())[4:], KVStore.get_result).cell)
    return one


async def client_put(storage):
    request = encode_frame(codec.message("put", TMessageType.CALL, 1, KVStore.put_args(
        key=bench_key(5), value=VALUE, level=ttypes.ConsistencyLevel.QUORUM)))
    one = calling(*await client_connection(storage, "put"), request)
    check_acknowledged(decoded((await one())[4:], KVStore.put_result).acknowledged, 3)
    return one


def linked_replica(opened):
    """(a RemoteReplica for node 1, over a PeerLink whose connection is a Protocol stand-in; that protocol). The
    replica is added to `opened`, for its owner to close."""
    link = PeerLink(make_cluster(4)[1], 1.0)
    protocol = Protocol()
    link._protocol = protocol   # a connection that has proved itself, as _connect leaves it
    replica = RemoteReplica(1, link)
    opened.append(replica)
    return replica, protocol


def answer_to(link, protocol, method, result):
    """A function answering the call just written on protocol with result. The replica's answer is encoded once
    (its encoding is the replica's side): only its sequence id changes."""
    answer = codec.message(method, TMessageType.REPLY, 0, result)
    at = 8 + len(method)

    def answer_last():
        _, _, seqid, _ = codec.read_header(protocol.frames.pop())
        link.answered(protocol, answer[:at] + _SEQID.pack(seqid) + answer[at + 4:])
    return answer_last


async def internode_read(opened):
    replica, protocol = linked_replica(opened)
    answer_last = answer_to(replica.link, protocol, "replica_read_batch", Internode.replica_read_batch_result(
        success=[ttypes.ReadResult(ttypes.Cell(VALUE, 1, 0), [1], [])]))
    read = collections.deque(maxlen=1)   # the cell the last call got

    async def one():
        replica.read_many_async([(bench_key(5), lambda error, cell: read.append(cell))], time.monotonic() + 2)
        answer_last()
    await one()
    check_value(read[0])
    return one


async def internode_write(opened):
    replica, protocol = linked_replica(opened)
    answer_last = answer_to(replica.link, protocol, "replica_write_batch",
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


def peer_connection(storage, method):
    """(a connection to the peer port, through which `method` of the internode service is served; its
    transport)."""
    settings = Settings()
    membership = Membership(0, RingState(1, tuple(make_cluster(4))), None, None, settings.request_timeout, Background())
    internode = InternodeHandler(0, 1, storage, None, None, settings, membership, Clock())
    door = SharedDoor({method: getattr(internode, method)}, 60)
    server = LoopServer("127.0.0.1", 0, lambda who: door, settings, Internode)
    connection, transport = Inbound(server, ("127.0.0.1", 1)), Transport()
    connection.connection_made(transport)
    return connection, transport


async def replica_read(storage):
    connection, transport = peer_connection(storage, "replica_read_batch")
    request = encode_frame(codec.message("replica_read_batch", TMessageType.CALL, 1,
                                      Internode.replica_read_batch_args(keys=[bench_key(5)])))

    async def one():
        connection.data_received(request)
    answers = []
    transport.on_write = answers.append
    await one()
    transport.on_write = None
    check_value(decoded(answers[0][4:], Internode.replica_read_batch_result)[0].cell)
    return one


async def replica_write(storage):
    """Each call writes a newer cell of one key (its timestamp patched into the request), so each is applied."""
    sentinel = 0x0123456789ABCDEF
    mutation = ttypes.Mutation(bench_key(6), ttypes.Cell(VALUE, sentinel, 0))
    args = Internode.replica_write_batch_args(mutations=[mutation])
    request = encode_frame(codec.message("replica_write_batch", TMessageType.CALL, 1, args))
    at = request.index(_TIMESTAMP.pack(sentinel))
    before, after = request[:at], request[at + _TIMESTAMP.size:]
    stamps = itertools.count(int(time.time() * 1_000_000))
    one = calling(*peer_connection(storage, "replica_write_batch"))

    async def write():
        return await one(before + _TIMESTAMP.pack(next(stamps)) + after)
    answers = [decoded((await write())[4:], Internode.replica_write_batch_result) for _ in range(2)]
    if answers != [[0], [0]] or storage.get(bench_key(6)).timestamp != next(stamps) - 1:   # each applied
        raise LayerError(f"replica writes answered {answers!r}, or did not apply their cells: it measures the "
                         "wrong path")
    return write


async def disk_append(directory, owned):
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


def handoff(owned):
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


def floor(method):
    call = loopfloor.in_process(method)

    async def one():
        call()
    return one


