"""Ordered scans and batches through real nodes: byte order across the whole ring (and its
wrap-around), paging, hidden deletes, replicas down; per-key batch outcomes, one call per replica."""
import pytest

from kvstore.core.errors import InvalidRequest, Unavailable
from kvstore.testing.localcluster import wait_for

# Keys on every node's range (tokens 3f, 7f, bf, ff), including the wrap-around past ff.
KEYS = [b"\x01a", b"\x3f", b"\x40", b"\x7f\xff", b"\x80", b"\xbfz", b"\xc0", b"\xff", b"\xff\x00", b"\xff\xff\xff"]


def live_keys(kv, start=b"", end=None, page=3, level="QUORUM"):
    return [key for key, _ in kv.scan(start, end, page=page, level=level)]


def test_scans_walk_the_ring_in_byte_order_and_page(shared_cluster):
    with shared_cluster.client(1) as kv:
        kv.mput({key: b"value of " + key for key in KEYS}, "ALL")
        assert live_keys(kv) == KEYS                                  # the whole ring, three keys a page
        assert live_keys(kv, page=100) == KEYS
        assert live_keys(kv, b"\xbf", None) == [b"\xbfz", b"\xc0", b"\xff", b"\xff\x00", b"\xff\xff\xff"]
        assert live_keys(kv, b"\xff\x00", None) == [b"\xff\x00", b"\xff\xff\xff"]   # the wrap-around only
        assert live_keys(kv, b"\x3f", b"\x80") == [b"\x3f", b"\x40", b"\x7f\xff"]    # end excluded
        assert live_keys(kv, b"\x41", b"\x7f") == []                                 # nothing in range
        assert live_keys(kv, b"\x40", b"\x40") == []
        items, resume = kv.scan_page(b"", None, limit=4)
        assert [k for k, _ in items] == KEYS[:4] and resume == KEYS[3] + b"\x00"
        assert items[0][1].value == b"value of \x01a"
        with pytest.raises(InvalidRequest, match="is after its end"):
            kv.scan_page(b"\x90", b"\x10")


def test_scans_hide_deleted_and_expired_keys(shared_cluster):
    with shared_cluster.client(0) as kv:
        kv.mput({b"\x50hide-%d" % i: b"v" for i in range(6)}, "QUORUM")
        kv.delete(b"\x50hide-1", "QUORUM")
        kv.delete(b"\x50hide-2", "QUORUM")
        kv.put(b"\x50hide-3", b"brief", "QUORUM", ttl=1)
        wait_for(lambda: kv.get(b"\x50hide-3", "QUORUM") is None, 5, "the expiry")
        # A page of 2 over tombstones still finds every live key.
        assert live_keys(kv, b"\x50", b"\x51", page=2) == [b"\x50hide-0", b"\x50hide-4", b"\x50hide-5"]


def test_scans_with_a_replica_down_at_one_and_quorum_and_unavailable_with_two(cluster):
    with cluster.client(0) as kv:
        kv.mput({key: b"v" for key in KEYS}, "ALL")
        cluster.crash_and_notice(2)
        assert live_keys(kv, level="ONE") == KEYS
        assert live_keys(kv, level="QUORUM") == KEYS
        with pytest.raises(Unavailable, match="ALL needs 3"):
            live_keys(kv, level="ALL")
        cluster.crash_and_notice(3)
        assert live_keys(kv, level="ONE") == KEYS
        with pytest.raises(Unavailable, match="1 of 3 replicas alive, QUORUM needs 2"):
            live_keys(kv, level="QUORUM")


def test_a_batch_answers_key_by_key_and_sends_one_call_per_replica(shared_cluster):
    c = shared_cluster
    keys = [bytes([first]) + b"batch" for first in range(0, 256, 8)]   # 32 keys, all over the ring
    before = {i: c.dump(i, b"-").records_written for i in range(4)}
    fsyncs = {i: c.dump(i, b"-").fsyncs for i in range(4)}
    with c.client(0) as kv:
        written = kv.mput([(key, b"batched") for key in keys], "ALL")
        assert list(written) == keys and {w.timestamp for w in written.values()} == {written[keys[0]].timestamp}
        held = {i: sum(1 for key in keys if i in c.replicas(key)) for i in range(4)}
        for i in range(4):
            # Every key a node holds arrived in one internode call (or one local apply): one fsync.
            assert c.dump(i, b"-").records_written - before[i] == held[i]
            assert c.dump(i, b"-").fsyncs - fsyncs[i] == 1
        read = kv.mget(keys + [b"\x33never-written"], "QUORUM")
        assert [v.value for v in list(read.values())[:-1]] == [b"batched"] * len(keys)
        assert read[b"\x33never-written"] is None


def test_a_batch_with_replicas_down_fails_only_the_keys_that_cannot_be_served(cluster):
    keys = [bytes([first]) + b"part" for first in (0x10, 0x50, 0x90, 0xd0)]   # owners 0, 1, 2, 3
    cluster.crash_and_notice(2)
    cluster.crash_and_notice(3)
    with cluster.client(0) as kv:
        outcomes = kv.mput([(key, b"v") for key in keys] + [(b"", b"empty key")], "QUORUM")
        by_owner = dict(zip((0, 1, 2, 3), keys))
        # Replicas {0,1,2} and {3,0,1} keep two alive; {1,2,3} and {2,3,0} do not.
        assert outcomes[by_owner[0]].hinted == [2] and outcomes[by_owner[3]].hinted == [3]
        for owner in (1, 2):
            assert isinstance(outcomes[by_owner[owner]], Unavailable)
            assert str(outcomes[by_owner[owner]]) == "1 of 3 replicas alive, QUORUM needs 2"
        assert isinstance(outcomes[b""], InvalidRequest)
        read = kv.mget(keys, "QUORUM")
        assert read[by_owner[0]].value == b"v" and isinstance(read[by_owner[1]], Unavailable)
