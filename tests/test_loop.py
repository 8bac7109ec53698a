"""A node's event loop never blocks: under a workload that takes every path that touches a file (durable
writes at every level, batches, deletes and expiry, hints stored for a node that is down and delivered when it
is back, read repair, a compaction, logins, the clock's reservation renewed), no callback holds the loop longer
than kvstore.node.loopcheck.SLOW_CALLBACK, and no fsync, fdatasync, pwrite or open for writing happens on the loop's
thread. The nodes run with KVSTORE_CHECK_LOOP=1 (asyncio's debug mode and the file-call guard)."""
import time

import pytest

from kvstore.node import loopcheck
from kvstore.tools import processes
from kvstore.testing.localcluster import Cluster, wait_for
from kvstore_rpc.ttypes import ConsistencyLevel, KeyValue

ONE, QUORUM, ALL = ConsistencyLevel.ONE, ConsistencyLevel.QUORUM, ConsistencyLevel.ALL
RUN_SECONDS = 7   # longer than half the clock's reservation (10 s): it is renewed while serving


@pytest.fixture
def checked_cluster(tmp_path, monkeypatch):
    monkeypatch.setenv(loopcheck.ENV, "1")
    c = Cluster(tmp_path / "checked").start()
    yield c
    c.close()


def test_no_node_blocks_its_loop_or_touches_a_file_on_it(checked_cluster):
    c = checked_cluster
    down_key = c.key_for([1, 2, 3])
    c.crash_and_notice(2)
    for n in range(50):   # node 2 is down: its share is hinted
        c.call(0, "put", down_key + b"-%d" % n, b"hinted", QUORUM)
    c.restart(2)
    wait_for(lambda: not c.dump(0).pending_hints, 20, "the hints to be delivered")
    stale = c.key_for([0, 1, 2])
    c.call(3, "put", stale, b"old", ALL)
    c.crash_and_notice(1)
    c.call(3, "put", stale, b"new", QUORUM)   # node 1 misses it; hints are stored for it
    c.restart(1)
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < RUN_SECONDS:
        node = n % 4
        key = b"key-%d" % (n % 200)
        c.call(node, "put", key, b"v-%d" % n, (ONE, QUORUM, ALL)[n % 3])
        c.call((node + 1) % 4, "get", key, QUORUM)
        if n % 20 == 0:
            c.call(node, "multi_put", [KeyValue(b"batch-%d-%d" % (n, i), b"b") for i in range(20)], QUORUM)
            c.call(node, "multi_get", [b"batch-%d-%d" % (n, i) for i in range(20)], QUORUM)
            c.call(node, "scan", b"", None, 50, QUORUM)
            c.call(node, "remove", key, QUORUM)
            c.call(node, "expire", b"key-%d" % ((n + 1) % 200), 100, QUORUM)
            c.call(node, "ttl", b"key-%d" % ((n + 1) % 200), QUORUM)
            c.call(node, "get", stale, ALL)   # read repair of node 1, if its hint has not got there first
        n += 1
    for i in range(4):
        c.call(i, "compact")
    for i in range(4):
        log = (c.node_dir(i) / processes.LOG_FILE).read_text()
        slow = [line for line in log.splitlines() if "Executing" in line and "took" in line]
        assert not slow, f"node {i} held its loop:\n" + "\n".join(slow)
        assert loopcheck.VIOLATION not in log, f"node {i} touched a file on its loop:\n{log}"
        assert "checking that the loop never blocks" in log
