"""Read-your-writes sessions and the client library, through real nodes: a session never sees its
own write go missing without StaleRead; the client fails over and raises typed errors."""
import pytest

from kvstore.client.client import Value
from kvstore.core.errors import InvalidRequest, NodeUnavailable, StaleRead, Unavailable
from kvstore.testing.localcluster import wait_for


def test_a_session_reads_its_write_made_at_one_through_another_node(cluster):
    key = cluster.key_for([1, 2, 3], b"ryw")
    node3 = (cluster.nodes[3].host, cluster.nodes[3].port)
    # Writes go through node 2; when it dies the client moves to node 3.
    kv = cluster.client(2, choose=lambda candidates: node3 if node3 in candidates else candidates[0])
    kv.put(key, b"old", "ALL")
    cluster.crash_and_notice(3)
    written = kv.put(key, b"new", "ONE")          # node 2 and node 1 have it; node 3's hint is on 2
    assert written.hinted == [3]
    cluster.crash_and_notice(2)
    cluster.restart(3)
    # Through node 3 at ONE: its own copy (stale) answers first; the session makes it wait for node 1.
    assert kv.get(key, "ONE") == Value(b"new", written.timestamp)
    assert kv.address == node3
    kv.close()


def test_stale_read_when_no_reachable_replica_has_the_sessions_write(cluster):
    key = cluster.key_for([1, 2, 3], b"stale")
    with cluster.client(0) as kv:
        old = kv.put(key, b"old", "ALL")
        cluster.crash_and_notice(2)
        cluster.crash_and_notice(3)
        written = kv.put(key, b"only-on-1", "ONE")   # hints for 2 and 3 are kept on node 0
        assert written.acknowledged == [1] and sorted(written.hinted) == [2, 3]
        cluster.crash(1)
        cluster.crash(0)                             # the hints go down with the coordinator
        cluster.restart(2, wait=False)
        cluster.restart(3)
        cluster.wait_ready(2)
        for observer in (2, 3):
            cluster.wait_seen(observer, 1, up=False)
        kv.close()
        with pytest.raises(StaleRead) as info:
            kv.get(key, "ONE")
        assert (info.value.wanted, info.value.seen) == (written.timestamp, old.timestamp)
        assert str(info.value).startswith("no replica of")
        with pytest.raises(StaleRead):   # ttl and expire read through the session too
            kv.ttl(key, "ONE")
        with pytest.raises(StaleRead):
            kv.expire(key, 60, "ONE")
        # Without the session the old value comes back silently: what the session protects against.
        kv.session = False
        assert kv.get(key, "ONE").value == b"old"
        kv.session = True
        cluster.restart(1)
        wait_for(lambda: cluster.seen_up(2, 1), 10, "node 1 seen up")
        assert kv.get(key, "ONE").value == b"only-on-1"


def test_the_client_moves_to_a_live_node_and_raises_typed_errors(cluster):
    notes = []
    kv = cluster.client(0, on_failover=notes.append)
    key = cluster.key_for([1, 2, 3], b"failover")
    kv.put(key, b"v", "QUORUM")
    assert kv.address == (cluster.nodes[0].host, cluster.nodes[0].port)
    cluster.crash(0)
    assert kv.get(key, "QUORUM").value == b"v"               # a read goes on elsewhere
    assert kv.put(key, b"w", "QUORUM").timestamp > 0        # so does a write that never left
    assert kv.address != (cluster.nodes[0].host, cluster.nodes[0].port)
    assert notes and "is gone; now connected to" in notes[0]
    with pytest.raises(InvalidRequest, match="the key must not be empty"):
        kv.get(b"")
    cluster.crash_and_notice(2)
    cluster.crash_and_notice(3)
    with pytest.raises(Unavailable) as info:
        kv.put(key, b"x", "QUORUM")
    assert (info.value.alive, info.value.needed) == (1, 2)
    cluster.crash(1)
    with pytest.raises(NodeUnavailable, match="no node of the cluster answers"):
        kv.get(key)
    kv.close()
