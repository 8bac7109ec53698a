"""Deletes and expiry through real nodes: tombstones win, travel by hints and read repair, survive
replay, and go only after their grace and a repair; expiry is fixed by the coordinator and seen everywhere."""
import time

import pytest

from kvstore.core.errors import InvalidRequest, Unavailable
from kvstore.testing.localcluster import Cluster, FAST_SETTINGS, wait_for
from kvstore_rpc.ttypes import Cell, Mutation, TokenRange
from kvstore_rpc.ttypes import InvalidRequest as InvalidRequestIDL

GRACE = 2.0   # seconds: short, so a test can see a tombstone outlive it


@pytest.fixture(scope="module")
def grace_cluster(tmp_path_factory):
    """Every node running, with a short gc grace (tombstones only go on compaction, which tests ask for)."""
    c = Cluster(tmp_path_factory.mktemp("grace"), extra_args=FAST_SETTINGS + ("--gc-grace-seconds", str(GRACE)))
    c.start()
    yield c
    c.close()


def stored(cluster, i, key):
    """The cell node i holds for key, as stored (a tombstone has value None), or None."""
    return cluster.cell_on(i, key)


def test_a_delete_hides_the_key_on_every_replica_and_the_inspector_shows_the_tombstone(grace_cluster):
    c = grace_cluster
    key = c.key_for([0, 1, 2], b"del")
    with c.client(3) as kv:
        kv.put(key, b"doomed", "QUORUM")
        deleted = kv.delete(key, "QUORUM")
        assert kv.get(key, "QUORUM") is None and kv.get(key, "ALL") is None
    wait_for(lambda: all(stored(c, i, key) == Cell(None, deleted.timestamp, deleted.timestamp) for i in (0, 1, 2)),
             5, "the tombstone on every replica")
    out = c.run_tool("inspector.py", "--cluster", c.cluster_file)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if "(tombstone)" in line]
    assert len(lines) == 3 and all(f"{deleted.timestamp}  deleted 20" in line for line in lines)


def test_at_one_timestamp_a_delete_beats_a_put_on_every_replica(grace_cluster):
    c = grace_cluster
    key = c.key_for([1, 2, 3], b"tie")
    c.call(1, "replica_write", Mutation(key, Cell(b"zzz-live", 777)))
    c.call(2, "replica_write", Mutation(key, Cell(None, 777, 777)))
    c.call(3, "replica_write", Mutation(key, Cell(b"aaa-expiring", 777, 2**62)))
    with c.client(0) as kv:
        assert kv.get(key, "ALL") is None   # the tombstone wins, and read repair spreads it
    assert all(stored(c, i, key) == Cell(None, 777, 777) for i in (1, 2, 3))


def test_tombstones_stay_for_their_grace_and_until_a_repair_then_compaction_drops_them(grace_cluster):
    c = grace_cluster
    key = c.key_for([0, 1, 2], b"grace")
    with c.client(0) as kv:
        kv.put(key, b"v", "ALL")
        kv.delete(key, "ALL")
    for i in (0, 1, 2):   # within its grace the tombstone is kept
        c.call(i, "compact")
        assert stored(c, i, key).value is None
    time.sleep(GRACE + 0.2)
    for i in (0, 1, 2):   # past it, but no full repair of its range has come after it: still kept
        c.call(i, "compact")
        assert stored(c, i, key).value is None
    token_range = next(r for r, ids in c.ring.ranges() if key in r)

    def dropped_after_a_repair():
        try:
            c.call(0, "repair", [TokenRange(*token_range)])
        except InvalidRequestIDL as exc:   # its automatic repair runs (every second, with this grace): next time
            assert "is already running" in exc.why
            return False
        wait_for(lambda: not c.call(0, "repair_status").running, 10, "the repair to end")
        for i in (0, 1, 2):
            c.call(i, "compact")
        return all(stored(c, i, key) is None for i in (0, 1, 2))
    wait_for(dropped_after_a_repair, 20, "a repair that lets compaction drop the tombstone")


def test_a_ttl_is_fixed_by_the_coordinator_and_the_key_expires_everywhere(grace_cluster):
    c = grace_cluster
    key = c.key_for([1, 2, 3], b"ttl")
    with c.client(0) as kv:
        written = kv.put(key, b"brief", "ALL", ttl=2)
        expires = [stored(c, i, key).expires_at for i in (1, 2, 3)]
        assert expires == [written.timestamp + 2_000_000] * 3
        assert kv.get(key).expires_at == written.timestamp + 2_000_000
        assert kv.ttl(key) in (1, 2)
        wait_for(lambda: kv.get(key, "QUORUM") is None, 5, "the key to expire")
        assert kv.ttl(key) == -2 and kv.get(key, "ALL") is None
        assert kv.scan_page(key, key + b"\x00")[0] == []


def test_expire_and_ttl_follow_redis(grace_cluster):
    c = grace_cluster
    with c.client(2) as kv:
        assert kv.expire(b"never-written", 10) is None
        kv.put(b"forever", b"v", "QUORUM")
        assert kv.ttl(b"forever", "QUORUM") == -1
        written = kv.expire(b"forever", 100, "QUORUM")
        assert written is not None and kv.ttl(b"forever", "QUORUM") in (99, 100)
        assert kv.get(b"forever", "QUORUM").value == b"v"
        kv.expire(b"forever", 0, "QUORUM")   # a non-positive expiry deletes, as in Redis
        assert kv.get(b"forever", "QUORUM") is None
        with pytest.raises(InvalidRequest, match="TTL must be from 1 to"):
            kv.put(b"k", b"v", ttl=10**9)


def test_a_delete_an_expiry_and_a_batch_reach_a_down_replica_by_hint_and_survive_crashes(cluster):
    deleted_key = cluster.key_for([1, 2, 3], b"gone")
    expiring_key = cluster.key_for([1, 2, 3], b"exp")
    batch = {cluster.key_for([1, 2, 3], b"batch-%d" % i): b"batched-%d" % i for i in range(3)}
    with cluster.client(0) as kv:
        kv.mput({deleted_key: b"before", expiring_key: b"before"}, "ALL")
        cluster.crash_and_notice(2)
        deleted = kv.delete(deleted_key, "QUORUM")
        assert deleted.hinted == [2]
        expiring = kv.put(expiring_key, b"for-an-hour", "QUORUM", ttl=3600)
        assert all(w.hinted == [2] for w in kv.mput(batch, "QUORUM").values())
        assert cluster.dump(0).pending_hints == {2: 2 + len(batch)}
        cluster.restart(2)
        wait_for(lambda: cluster.dump(0).pending_hints == {}, 10, "the hints to be delivered")
        assert stored(cluster, 2, deleted_key) == Cell(None, deleted.timestamp, deleted.timestamp)
        assert stored(cluster, 2, expiring_key).expires_at == expiring.timestamp + 3600 * 1_000_000
        assert all(stored(cluster, 2, key).value == value for key, value in batch.items())
        # Crash every replica at once: the tombstone and the expiry come back from the logs.
        for i in (1, 2, 3):
            cluster.crash(i)
        for i in (1, 2, 3):
            cluster.restart(i, wait=False)
        for i in (1, 2, 3):
            cluster.wait_ready(i)
        cluster.wait_all_see_all()
        for i in (1, 2, 3):
            assert stored(cluster, i, deleted_key).value is None
            assert stored(cluster, i, expiring_key).expires_at == expiring.timestamp + 3600 * 1_000_000
            assert all(stored(cluster, i, key).value == value for key, value in batch.items())
        assert kv.get(deleted_key, "ALL") is None
        assert kv.get(expiring_key, "ALL").value == b"for-an-hour"
        assert {k: v.value for k, v in kv.mget(batch, "ALL").items()} == batch


def test_all_needs_every_replica(cluster):
    key = cluster.key_for([1, 2, 3], b"all")
    with cluster.client(0) as kv:
        assert sorted(kv.put(key, b"v", "ALL").acknowledged) == [1, 2, 3]
        cluster.crash_and_notice(3)
        with pytest.raises(Unavailable, match="^2 of 3 replicas alive, ALL needs 3$"):
            kv.put(key, b"refused", "ALL")
        with pytest.raises(Unavailable, match="ALL needs 3"):
            kv.get(key, "ALL")
        assert kv.get(key, "QUORUM").value == b"v"
