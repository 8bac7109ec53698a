"""Replication through real nodes: levels with replicas down, last write wins, crash and replay, hints."""
import json
import threading
import time

import pytest

from kvstore.testing.localcluster import wait_for
from kvstore_rpc.ttypes import Cell, ConsistencyLevel, Mutation, TimedOut, Unavailable

ONE, QUORUM, ALL = ConsistencyLevel.ONE, ConsistencyLevel.QUORUM, ConsistencyLevel.ALL


def test_all_replicas_up_both_levels_write_and_read_everywhere(shared_cluster):
    c = shared_cluster
    key = c.key_for([1, 2, 3])
    for coordinator in range(4):
        for level in (ONE, QUORUM):
            value = b"v-%d-%d" % (coordinator, level)
            written = c.call(coordinator, "put", key, value, level)
            assert written.hinted == []
            assert len(written.acknowledged) >= (1 if level == ONE else 2)
            # A read overlaps the write only when the two levels add up to more than 3 replicas:
            # ONE + ALL, QUORUM + QUORUM (ONE + QUORUM may miss a write still on its way).
            read = c.call((coordinator + 1) % 4, "get", key, ALL if level == ONE else QUORUM)
            assert read.cell.value == value and read.cell.timestamp == written.timestamp
    # ONE answers as soon as one replica acknowledged; the others still get the write.
    wait_for(lambda: all(c.cell_on(i, key) == read.cell for i in (1, 2, 3)), 5, "every replica to hold the write")


def test_one_replica_down_both_levels_succeed_and_the_down_one_is_hinted(cluster):
    key = cluster.key_for([1, 2, 3])
    cluster.crash_and_notice(2)
    for level in (ONE, QUORUM):
        written = cluster.call(0, "put", key, b"level-%d" % level, level)
        assert written.hinted == [2]
        assert cluster.call(0, "get", key, level).cell.value == b"level-%d" % level
    assert cluster.dump(0).pending_hints == {2: 2}


def test_two_replicas_down_one_works_quorum_is_unavailable_and_writes_nothing(cluster):
    key = cluster.key_for([1, 2, 3])
    cluster.call(0, "put", key, b"before", QUORUM)
    # Let the third replica's copy land, or its crash would rightly leave a hint for it.
    wait_for(lambda: all(cluster.cell_on(i, key) for i in (1, 2, 3)), 5, "the write on every replica")
    cluster.crash_and_notice(2)
    cluster.crash_and_notice(3)

    with pytest.raises(Unavailable) as info:
        cluster.call(0, "put", key, b"refused", QUORUM)
    assert info.value.why == "1 of 3 replicas alive, QUORUM needs 2"
    assert (info.value.alive, info.value.needed) == (1, 2)
    with pytest.raises(Unavailable):
        cluster.call(0, "get", key, QUORUM)
    # Nothing of the refused write leaked: not on the live replica, not as a hint.
    assert cluster.cell_on(1, key).value == b"before"
    assert cluster.call(0, "get", key, ONE).cell.value == b"before"
    assert cluster.dump(0).pending_hints == {}

    assert cluster.call(0, "put", key, b"at-one", ONE).acknowledged == [1]
    assert cluster.call(1, "get", key, ONE).cell.value == b"at-one"


def test_three_replicas_down_even_one_is_unavailable(cluster):
    key = cluster.key_for([0, 1, 2])
    for i in (0, 1, 2):
        cluster.crash_and_notice(i)
    with pytest.raises(Unavailable, match="0 of 3 replicas alive, ONE needs 1"):
        cluster.call(3, "put", key, b"x", ONE)


def test_concurrent_writers_through_different_coordinators_converge_on_the_newest(shared_cluster):
    c = shared_cluster
    key = c.key_for([0, 1, 2], prefix=b"race")
    acknowledged = []
    lock = threading.Lock()

    def writer(coordinator):
        connection = c.connect(coordinator)
        for n in range(40):
            value = b"from-%d-%d" % (coordinator, n)
            result = connection.call("put", (key, value, QUORUM), 10)
            with lock:
                acknowledged.append((result.timestamp, value))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(acknowledged) == 160
    timestamp, value = max(acknowledged)  # last write wins; equal stamps: the greater value
    wait_for(lambda: all(c.cell_on(i, key) == Cell(value, timestamp) for i in (0, 1, 2)), 5,
             "every replica to hold the newest write")
    assert c.call(3, "get", key, QUORUM).cell == Cell(value, timestamp)


def test_equal_timestamps_converge_whatever_the_order_of_arrival(shared_cluster):
    c = shared_cluster
    key = c.key_for([1, 2, 3], prefix=b"tie")
    low, high = Mutation(key, Cell(b"apple", 42)), Mutation(key, Cell(b"banana", 42))
    c.call(1, "replica_write", low)
    c.call(1, "replica_write", high)
    c.call(2, "replica_write", high)
    c.call(2, "replica_write", low)
    assert c.cell_on(1, key) == c.cell_on(2, key) == Cell(b"banana", 42)


def test_a_quorum_read_repairs_a_stale_replica_before_answering(shared_cluster):
    c = shared_cluster
    key = c.key_for([1, 2, 3], prefix=b"repair")
    c.call(1, "put", key, b"old", QUORUM)
    wait_for(lambda: c.cell_on(1, key) is not None, 5, "the write on node 1")
    newer = Cell(b"new", int(time.time() * 1e6) + 100_000)   # newer, and within the clock bound
    for i in (2, 3):  # node 1, the coordinator's own replica, is left stale
        c.call(i, "replica_write", Mutation(key, newer))
    result = c.call(1, "get", key, QUORUM)
    assert result.cell == newer
    assert result.repaired == [1]
    assert c.cell_on(1, key) == newer


def test_sigkill_of_every_node_loses_no_acknowledged_write(cluster):
    written = {}
    for n in range(200):
        key = b"%c-durable-%d" % (n % 256, n)
        written[key] = cluster.call(n % 4, "put", key, b"value-%d" % n, ONE if n % 2 else QUORUM).timestamp
    # Writes at ONE reach their other replicas in the background: let them land, then snapshot.
    wait_for(lambda: sum(len(cluster.dump(i).cells) for i in range(4)) == 3 * len(written), 10,
             "every write on its three replicas")
    dumps_before = {i: cluster.dump(i).cells for i in range(4)}
    for i in range(4):
        cluster.crash(i)
    for i in range(4):
        cluster.restart(i, wait=False)
    for i in range(4):
        cluster.wait_ready(i)
    cluster.wait_all_see_all()
    for i in range(4):
        assert cluster.dump(i).cells == dumps_before[i], f"node {i} replayed a different state"
    for n, (key, timestamp) in enumerate(written.items()):
        read = cluster.call(n % 4, "get", key, QUORUM)
        assert read.cell is not None and read.cell.timestamp == timestamp, key


def test_a_quorum_read_after_a_crash_returns_the_latest_acknowledged_write(cluster):
    key = cluster.key_for([1, 2, 3], prefix=b"latest")
    for crashed in (1, 2, 3):
        value = b"version-%d" % crashed
        cluster.call(0, "put", key, value, QUORUM)
        cluster.crash_and_notice(crashed)
        assert cluster.call(0, "get", key, QUORUM).cell.value == value
        cluster.restart(crashed)


def test_a_write_made_while_a_replica_was_down_reaches_it_through_a_hint(cluster):
    key = cluster.key_for([1, 2, 3], prefix=b"hinted")
    cluster.crash_and_notice(2)
    written = cluster.call(0, "put", key, b"while-you-were-out", QUORUM)
    assert written.hinted == [2]

    def inspect():
        out = cluster.run_tool("inspector.py", "--json", "--cluster", cluster.cluster_file)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    report = inspect()
    assert report["nodes"][0]["pending_hints"] == {"2": 1}
    assert report["nodes"][2]["up"] is False
    cluster.restart(2)

    def delivered():
        nodes = inspect()["nodes"]
        held = {k["key"]: k for k in nodes[2]["keys"]}
        return nodes[0]["pending_hints"] == {} and key.decode() in held and held[key.decode()]
    entry = wait_for(delivered, 10, "the hint to reach node 2")
    assert entry == {"key": key.decode(), "value": "while-you-were-out", "timestamp": written.timestamp,
                     "expires_at": None}
    assert "delivered 1 hints to node 2" in cluster.log(0)


def test_replicas_that_do_not_answer_give_timed_out_not_a_hang(cluster):
    key = cluster.key_for([1, 2, 3], prefix=b"paused")
    cluster.call(0, "put", key, b"before", QUORUM)
    cluster.pause(2)
    cluster.pause(3)  # still accepting connections; answering nothing
    try:
        started = time.monotonic()
        with pytest.raises(TimedOut) as info:
            cluster.call(0, "put", key, b"maybe", QUORUM)
        assert time.monotonic() - started < 4   # the 2 s request timeout, not a hang
        assert "may or may not have been applied" in info.value.why
        assert (info.value.acknowledged, info.value.needed) == (1, 2)
    finally:
        cluster.resume(2)
        cluster.resume(3)
    # The write was applied on node 1; once the others are back it reaches them (late, or by hint).
    wait_for(lambda: all(cluster.cell_on(i, key).value == b"maybe" for i in (1, 2, 3)), 10,
             "the timed-out write to reach every replica")


def test_a_write_at_one_lives_on_the_replica_that_took_it_and_returns_with_it(cluster):
    """ONE's promise: the write survives the crash of the replica that took it once that replica is back."""
    key = cluster.key_for([1, 2, 3], prefix=b"at-one")
    cluster.crash_and_notice(2)
    cluster.crash_and_notice(3)
    written = cluster.call(0, "put", key, b"only-on-1", ONE)
    assert written.acknowledged == [1] and sorted(written.hinted) == [2, 3]
    cluster.crash(1)
    cluster.crash(0)   # the coordinator, with its hints
    cluster.restart(2)
    cluster.restart(3)
    assert cluster.call(2, "get", key, QUORUM).cell is None  # the documented window: its only copy is down
    cluster.restart(1)
    assert cluster.call(1, "get", key, ONE).cell.value == b"only-on-1"  # back with its replica
    cluster.restart(0)  # and the hints reach the others
    wait_for(lambda: all(cluster.cell_on(i, key) is not None for i in (2, 3)), 10, "hints to nodes 2 and 3")
    assert cluster.call(3, "get", key, QUORUM).cell.timestamp == written.timestamp
