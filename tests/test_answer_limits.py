"""Everything a node accepts, a stock Thrift client can read back.

The client here is the Thrift library's own: TSocket, TFramedTransport at its
default frame limit (16,384,000 bytes; other languages' libraries are alike)
and TBinaryProtocol. A value at the node's limit, a multi_get of large values,
a 10,000-key scan over large values and an unpaged dump all arrive in frames it
accepts, and say where to go on.
"""
import time

import pytest
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.transport.TSocket import TSocket
from thrift.transport.TTransport import DEFAULT_MAX_FRAME_SIZE, TFramedTransport, TMemoryBuffer

from kvstore.core.config import Settings
from kvstore_rpc import KVStore
from kvstore_rpc.ttypes import ConsistencyLevel, InvalidRequest

QUORUM = ConsistencyLevel.QUORUM
LIMIT = Settings().max_value_bytes


@pytest.fixture
def stock(shared_cluster):
    node = shared_cluster.nodes[0]
    sock = TSocket(node.host, node.port)
    sock.setTimeout(30_000)
    transport = TFramedTransport(sock)     # the library's default maximum frame
    transport.open()
    client = KVStore.Client(TBinaryProtocol(transport))
    client.login(*shared_cluster.credentials)
    yield client
    transport.close()


def test_the_value_limit_is_under_what_stock_clients_read():
    assert LIMIT == 15 * 1024 * 1024 and DEFAULT_MAX_FRAME_SIZE == 16_384_000


def test_a_value_at_the_limit_is_read_back_and_one_byte_more_is_refused(stock):
    value = bytes(range(256)) * (LIMIT // 256)
    assert len(value) == LIMIT
    stock.put(b"big", value, QUORUM, 0, 0)
    assert stock.get(b"big", QUORUM, 0).cell.value == value
    with pytest.raises(InvalidRequest, match=f"over the limit of {LIMIT} bytes"):
        stock.put(b"bigger", value + b"x", QUORUM, 0, 0)
    assert stock.get(b"big", QUORUM, 0).cell.value == value    # the connection is still good


def test_a_multi_get_of_large_values_stops_at_the_budget_and_the_library_asks_for_the_rest(stock, shared_cluster):
    value = b"m" * (6 * 1024 * 1024)
    for i in range(3):
        stock.put(b"mg%d" % i, value, QUORUM, 0, 0)
    answer = stock.multi_get([b"mg0", b"mg1", b"mg2", b"mg0"], QUORUM, {})
    assert [o.key for o in answer] == [b"mg0", b"mg1"]              # 12 MiB fit; the rest is asked again
    assert all(o.result.cell.value == value for o in answer)
    with shared_cluster.client() as kv:
        got = kv.mget([b"mg0", b"mg1", b"mg2", b"absent"], "QUORUM")
    assert [got[k].value for k in (b"mg0", b"mg1", b"mg2")] == [value] * 3 and got[b"absent"] is None


def test_a_large_scan_page_and_an_unpaged_dump_fit_in_a_stock_frame(stock, shared_cluster):
    value = b"s" * 1_000_000
    keys = [b"scan-%02d" % i for i in range(24)]       # 24 MB in all: more than one frame holds
    with shared_cluster.client() as kv:
        for i in range(0, len(keys), 4):                 # a batch must fit in one request frame
            kv.mput({key: value for key in keys[i:i + 4]}, "QUORUM")
    seen, start, pages = [], b"scan-", 0
    while start is not None:
        page = stock.scan(start, b"scan.", 10_000, QUORUM)
        seen += [m.key for m in page.items]
        start, pages = page.resume_key, pages + 1
    assert seen == keys and pages == 2

    replica = shared_cluster.replicas(b"scan-00")[0]
    cells, start, pages = [], b"", 0
    while True:
        page = _stock_dump(shared_cluster, replica, start)
        cells += [m.key for m in page.cells if m.key.startswith(b"scan-")]
        pages += 1
        if page.next_start is None:
            break
        start = page.next_start
    assert cells == keys and pages >= 2


def _stock_dump(cluster, node_id, start):
    """One dump page (an admin's call on the client port); its answer, encoded as a node sends it, must fit
    in a stock client's frame."""
    page = cluster.call(node_id, "dump", None, start, 0)   # 0: no count, only the budget
    encoded = TMemoryBuffer()
    KVStore.dump_result(success=page).write(TBinaryProtocol(encoded))
    assert len(encoded.getvalue()) < DEFAULT_MAX_FRAME_SIZE
    return page


def peak_memory(pid):
    """The process's high-water mark of resident memory, in bytes (VmHWM)."""
    status = open(f"/proc/{pid}/status").read()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024


def test_a_key_asked_for_many_times_in_one_multi_get_is_read_once(cluster):
    key = cluster.key_for([0, 1, 2])
    cluster.call(0, "put", key, b"r" * LIMIT, ConsistencyLevel.ALL, 0)
    coordinator = cluster.procs[3].pid          # not a replica of the key: every read is a remote one
    before = peak_memory(coordinator)
    answer = cluster.call(3, "multi_get", [key] * 20, ConsistencyLevel.ONE, {}, timeout=60)
    assert [o.key for o in answer] == [key]     # one 15 MiB value fills the answer; the rest is asked again
    # One read of a 15 MiB value measured 108-117 MB at the coordinator's peak (the replicas' answers, decoded,
    # and the answer encoded); three or more would pass this bound, twenty pass 1 GB.
    assert peak_memory(coordinator) - before < 250 * 2**20, "the coordinator read the key more than once"


def test_a_multi_get_of_many_large_values_reads_a_round_at_a_time_and_stops_when_its_answer_is_full(cluster):
    value = b"d" * (8 * 2**20)
    keys = [cluster.key_for([0, 1, 2], b"%02d" % i) for i in range(20)]   # 160 MiB in all, none on node 3
    for key in keys:
        cluster.call(0, "put", key, value, ConsistencyLevel.QUORUM, 0, timeout=30)
    coordinator = cluster.procs[3].pid
    before = peak_memory(coordinator)
    answer = cluster.call(3, "multi_get", keys, ConsistencyLevel.QUORUM, {}, timeout=60)
    assert [o.key for o in answer] == keys[:1]   # 8 MiB and the next would pass 16,000,000 bytes
    # A round is 5 keys at the default value limit: about 120 MiB of replicas' answers at most, where
    # reading all 20 took more than 400 MiB.
    grew = peak_memory(coordinator) - before
    assert grew < 300 * 2**20, f"the coordinator grew by {grew >> 20} MiB"


def test_a_scan_over_large_values_asks_replicas_for_pages_by_bytes(cluster):
    value = b"s" * (4 * 2**20)
    keys = [b"\x10big-%02d" % i for i in range(40)]    # 160 MiB in one token range
    for key in keys:
        cluster.call(0, "put", key, value, ConsistencyLevel.QUORUM, 0, timeout=30)
    replicas = cluster.replicas(keys[0])
    before = {i: peak_memory(cluster.procs[i].pid) for i in replicas}
    started = time.monotonic()
    page = cluster.call(3, "scan", b"\x10big-", b"\x10big.", 1, ConsistencyLevel.QUORUM, timeout=30)
    assert [m.key for m in page.items] == keys[:1] and page.resume_key == keys[0] + b"\x00"
    assert time.monotonic() - started < 2.0
    # Each replica's page stops at the 16,000,000-byte budget: 4 cells, not the 64 asked for (256 MiB).
    for i in replicas:
        grew = peak_memory(cluster.procs[i].pid) - before[i]
        assert grew < 100 * 2**20, f"replica {i} grew by {grew >> 20} MiB"
    got, start = [], b"\x10big-"
    while start is not None:                          # and the scan, page by page, misses nothing
        page = cluster.call(3, "scan", start, b"\x10big.", 7, ConsistencyLevel.QUORUM, timeout=30)
        got += [m.key for m in page.items]
        start = page.resume_key
    assert got == keys
