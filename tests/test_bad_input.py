"""What a client sends can never kill a node or stall everyone else; every refusal names its cause."""
import socket
import struct
import threading
import time

import psutil
import pytest

from kvstore.testing.localcluster import FAST_SETTINGS, Cluster
from kvstore_rpc import KVStore
from kvstore_rpc.ttypes import ConsistencyLevel, InvalidRequest, Unavailable
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.transport.TTransport import TMemoryBuffer

QUORUM = ConsistencyLevel.QUORUM
MAX_VALUE = 4096


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A cluster with a small value limit and a short read deadline."""
    c = Cluster(tmp_path_factory.mktemp("bad"), extra_args=FAST_SETTINGS + ("--max-value-bytes", str(MAX_VALUE),
                                                                             "--read-timeout", "1")).start()
    yield c
    c.close()


def raw(cluster, i=0):
    s = socket.create_connection((cluster.nodes[i].host, cluster.nodes[i].port), timeout=5)
    return s


def closed_by_node(sock, within=5.0):
    sock.settimeout(within)
    try:
        while True:
            if sock.recv(4096) == b"":
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def still_serves(cluster, i=0):
    key = b"alive-%f" % time.time()
    cluster.call(i, "put", key, b"yes", QUORUM)
    return cluster.call(i, "get", key, QUORUM).cell.value == b"yes"


def frame(payload):
    return struct.pack("!i", len(payload)) + payload


def put_message(key, value, level=QUORUM):
    buf = TMemoryBuffer()
    client = KVStore.Client(TBinaryProtocol(buf))
    client._seqid = 0
    client.send_put = client.send_put  # the generated client writes the call into buf
    client._oprot.trans = buf
    client.send_put(key, value, level, None, None)
    return buf.getvalue()


@pytest.mark.parametrize("payload", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",          # announces a frame of ~1.2 GB: over the limit
    struct.pack("!i", 0x7FFFFFFF),                 # the largest length prefix there is
    struct.pack("!i", -5) + b"abc",                # a negative one
    frame(b"\x00" * 64),                           # a frame of garbage
    frame(b"\x80\x01\x00\x01" + b"\xff" * 40),     # a call header with junk after it
])
def test_garbage_closes_that_connection_and_the_node_serves_on(small, payload):
    sock = raw(small)
    sock.sendall(payload)
    assert closed_by_node(sock)
    sock.close()
    assert still_serves(small)


def test_an_absurd_string_length_inside_a_frame_allocates_nothing(small):
    message = bytearray(put_message(b"k", b"v"))
    # The key's length prefix follows the message header and the field header (type 11, id 1).
    at = bytes(message).index(b"\x0b\x00\x01") + 3
    message[at:at + 4] = struct.pack("!i", 0x7FFFFFF0)
    node = psutil.Process(small.procs[0].pid)
    before = node.memory_info().rss
    for _ in range(20):
        sock = raw(small)
        sock.sendall(frame(bytes(message)))
        assert closed_by_node(sock)
        sock.close()
    assert node.memory_info().rss - before < 50 * 2**20
    assert still_serves(small)


def test_a_client_that_sends_half_a_message_and_stalls_is_cut_off_while_others_are_served(small):
    whole = frame(put_message(b"stall", b"v"))
    stalled = raw(small)
    stalled.sendall(whole[:len(whole) // 2])
    started = time.monotonic()
    assert still_serves(small)  # served while the stalled client holds its connection
    assert closed_by_node(stalled, within=5)
    assert time.monotonic() - started < 4  # the 1 s read deadline, not the idle timeout
    stalled.close()


def test_an_idle_connection_on_every_node_blocks_nobody(small):
    idle = [raw(small, i) for i in range(4)]
    results = []

    def client(i):
        results.append(all(still_serves(small, i) for _ in range(5)))
    threads = [threading.Thread(target=client, args=(i % 4,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [True] * 16
    for s in idle:
        s.close()


@pytest.mark.parametrize("key, value, level, why", [
    (b"", b"v", QUORUM, "the key must not be empty"),
    (b"k" * (64 * 1024 + 1), b"v", QUORUM, "key of 65537 bytes is over the limit of 65536 bytes"),
    (b"k", b"v" * (MAX_VALUE + 1), QUORUM, f"value of {MAX_VALUE + 1} bytes is over the limit of {MAX_VALUE}"),
    (b"k", b"v", 9, "unknown consistency level 9: the IDL's levels are 1 (ONE), 2 (QUORUM), 3 (ALL)"),
])
def test_invalid_requests_are_refused_with_the_reason(small, key, value, level, why):
    with pytest.raises(InvalidRequest) as info:
        small.call(1, "put", key, value, level)
    assert why in info.value.why
    assert still_serves(small, 1)


def test_a_value_at_the_limit_is_accepted(small):
    small.call(0, "put", b"big", b"x" * MAX_VALUE, QUORUM)
    assert small.call(1, "get", b"big", QUORUM).cell.value == b"x" * MAX_VALUE


def test_nodes_that_are_down_give_unavailable_naming_the_count(cluster):
    key = cluster.key_for([0, 1, 2])
    cluster.crash_and_notice(1)
    cluster.crash_and_notice(2)
    with pytest.raises(Unavailable) as info:
        cluster.call(3, "get", key, QUORUM)
    assert info.value.why == "1 of 3 replicas alive, QUORUM needs 2"
