"""Thousands of random and mutated Thrift messages at a node: it never dies, its memory stays
bounded, and a valid client is answered correctly all the while."""
import random
import socket
import struct
import threading
import time

import psutil
import pytest

from kvstore.testing.localcluster import FAST_SETTINGS, Cluster
from kvstore_rpc import Internode, KVStore, ttypes
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.transport.TTransport import TMemoryBuffer

MESSAGES = 3000
QUORUM = ttypes.ConsistencyLevel.QUORUM


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("fuzz"), extra_args=FAST_SETTINGS + ("--read-timeout", "1")).start()
    yield c
    c.close()


def valid_calls(rng):
    """One well-formed call of every kind, with random arguments."""
    key, value = rng.randbytes(rng.randint(1, 20)), rng.randbytes(rng.randint(0, 50))
    cell = ttypes.Cell(rng.choice([value, None]), rng.randint(0, 2**62), rng.choice([0, rng.randint(-2**62, 2**62)]))
    level, seconds = rng.choice([1, 2, 3, 4, -1]), rng.choice([0, 1, 3600, -5, 2**31 - 1])
    floor = rng.choice([0, 1, 2**62])
    return [("put", (key, value, level, seconds, floor)), ("get", (key, 2, rng.choice([0, 1, 2**62]))),
            ("remove", (key, level, floor)), ("expire", (key, seconds, level, rng.choice([0, 2**62]))),
            ("ttl", (key, level, rng.choice([0, 2**62]))),
            ("multi_put", ([ttypes.KeyValue(key, value)] * rng.randint(0, 3), level, seconds, floor)),
            ("multi_get", ([key] * rng.randint(0, 3), level, {key: rng.randint(0, 2**62)})),
            ("scan", (key, rng.choice([b"", value]), rng.choice([0, 1, 10, -1, 2**31 - 1]), level)),
            ("replica_scan_batch", ([ttypes.KeyRange(key, value, rng.choice([0, 5, -1]))],)),
            ("get_endpoints", (key,)),
            ("describe_ring", ()), ("replica_write", (ttypes.Mutation(key, cell),)), ("replica_read", (key,)),
            ("deliver_hints", ([ttypes.Mutation(key, cell)] * rng.randint(0, 3),)),
            ("heartbeat", (rng.randint(-5, 10),)), ("dump", (rng.choice([key, b""]), value, rng.choice([0, 3, -1])))]


def encode(method, args):
    """A call as its service's client encodes it; calls meant for nodes arrive at the client port too."""
    buf = TMemoryBuffer()
    service = KVStore if hasattr(KVStore, f"{method}_args") else Internode
    client = service.Client(TBinaryProtocol(buf))
    getattr(client, f"send_{method}")(*args)
    return buf.getvalue()


def mutate(rng, message):
    data = bytearray(message)
    kind = rng.randrange(8)
    if kind == 0:
        return rng.randbytes(rng.randint(0, 200))                     # noise
    if kind == 1 and data:
        for _ in range(rng.randint(1, 8)):                            # bit flips
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == 2:
        return bytes(data[:rng.randrange(len(data) + 1)])             # truncated
    elif kind == 3 and len(data) > 4:
        at = rng.randrange(len(data) - 3)                             # a huge or negative length prefix
        data[at:at + 4] = struct.pack("!i", rng.choice([0x7FFFFFFF, -1, -0x80000000, 0x10000000]))
    elif kind == 4 and len(data) > 12:
        at = rng.randrange(12, len(data))                             # a wrong field type
        data[at] = rng.choice([0, 1, 2, 3, 4, 6, 8, 10, 11, 12, 13, 14, 15, 16, 255])
    elif kind == 5:                                                   # deep nesting in an unknown field
        head = encode("heartbeat", (0,))[:-4]
        return head + b"\x0f\x00\x63" + (b"\x0f" + struct.pack("!i", 1)) * rng.randint(10, 5000) + b"\x00"
    elif kind == 6:
        at = rng.randrange(len(data) + 1)                             # random bytes inserted
        data[at:at] = rng.randbytes(rng.randint(1, 30))
    return bytes(data)


def frame(rng, payload):
    length = len(payload)
    if rng.random() < 0.1:
        length = rng.choice([length + rng.randint(1, 100), max(0, length - rng.randint(1, 10)), 0x7FFFFFFF, -7])
    return struct.pack("!i", length) + payload


def send(node, data):
    with socket.create_connection((node.host, node.port), timeout=2) as s:
        s.sendall(data)
        s.settimeout(0.05)
        try:
            s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            pass


def test_fuzzed_messages_never_kill_a_node_or_starve_valid_clients(target):
    rng = random.Random(20261128)
    node = target.nodes[0]
    process = psutil.Process(target.procs[0].pid)
    stop, answered, wrong = threading.Event(), [0], []

    def valid_client():
        connection = target.connect(0)
        n = 0
        while not stop.is_set():
            n += 1
            key, value = b"valid-%d" % (n % 50), b"v%d" % n
            try:
                connection.call("put", (key, value, QUORUM), 10)
                got = connection.call("get", (key, QUORUM), 10).cell
                if got is None or got.value != value:
                    wrong.append((key, value, got))
                answered[0] += 1
            except Exception as exc:  # collected: the assertion below names it
                wrong.append(exc)
                connection = target.connect(0)
            time.sleep(0.005)

    checker = threading.Thread(target=valid_client)
    checker.start()
    rss_before = process.memory_info().rss
    try:
        for n in range(MESSAGES):
            method, args = rng.choice(valid_calls(rng))
            send(node, frame(rng, mutate(rng, encode(method, args))))
            if n % 500 == 0:
                assert target.procs[0].poll() is None, f"the node died after {n} messages:\n{target.log(0)}"
    finally:
        stop.set()
        checker.join(30)
    assert target.procs[0].poll() is None, target.log(0)
    assert process.memory_info().rss - rss_before < 100 * 2**20
    assert wrong == []
    assert answered[0] > 50
    assert target.call(0, "get", b"valid-1", QUORUM).cell is not None
