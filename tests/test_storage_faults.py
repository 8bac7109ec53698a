"""Storage faults on real nodes: skipping a corrupt record on request, a full disk, a hint that cannot be stored."""
import psutil
import pytest

from kvstore.storage.records import scan_records
from kvstore.testing.localcluster import wait_for
from kvstore_rpc.ttypes import ConsistencyLevel, TimedOut

QUORUM = ConsistencyLevel.QUORUM


def test_skip_corrupt_records_starts_reports_and_read_repair_restores_the_key(cluster):
    keys = [cluster.key_for([1, 2, 3], prefix=b"skip%d" % n) for n in range(10)]
    for n, key in enumerate(keys):
        cluster.call(0, "put", key, b"v%d" % n, QUORUM)
    wait_for(lambda: len(cluster.dump(2).cells) == len(keys), 5, "every write on node 2")
    cluster.crash(2)
    log_path = cluster.node_dir(2) / "commit.log"
    data = bytearray(log_path.read_bytes())
    data[scan_records(data)[1] // 2] ^= 0xFF   # inside the records, not the zeros grown after them
    log_path.write_bytes(bytes(data))
    assert cluster.restart(2, wait=False).wait(20) == 3
    assert "--skip-corrupt-records" in cluster.log(2)

    cluster.extra_args += ("--skip-corrupt-records",)
    cluster.restart(2)
    assert "skipped" in cluster.log(2) and "damaged file is kept as" in cluster.log(2)
    assert list(cluster.node_dir(2).glob("commit.log.corrupt-*"))
    assert len(cluster.dump(2).cells) == len(keys) - 1  # one record lost on this replica only
    for n, key in enumerate(keys):  # QUORUM reads bring it back from the other replicas
        assert cluster.call(2, "get", key, QUORUM).cell.value == b"v%d" % n
    wait_for(lambda: len(cluster.dump(2).cells) == len(keys), 5, "read repair of node 2")


def limit_file_size(cluster, i, limit):
    psutil.Process(cluster.procs[i].pid).rlimit(psutil.RLIMIT_FSIZE, (limit, psutil.RLIM_INFINITY))


def test_a_full_disk_fails_writes_clearly_serves_reads_and_recovers(cluster):
    key = cluster.key_for([1, 2, 3], prefix=b"full")
    cluster.call(0, "put", key, b"before", QUORUM)
    wait_for(lambda: all(cluster.cell_on(i, key) for i in (1, 2, 3)), 5, "the write on every replica")
    for i in (1, 2, 3):
        limit_file_size(cluster, i, (cluster.node_dir(i) / "commit.log").stat().st_size)

    with pytest.raises(TimedOut) as info:   # more than the zeros already grown ahead of the records
        cluster.call(0, "put", key, b"no room" * 300_000, QUORUM)
    assert "File too large" in info.value.why and "may or may not have been applied" in info.value.why
    assert cluster.call(1, "get", key, QUORUM).cell.value == b"before"   # reads go on
    for i in (1, 2, 3):
        assert cluster.procs[i].poll() is None                          # nobody died

    for i in (1, 2, 3):
        limit_file_size(cluster, i, psutil.RLIM_INFINITY)                 # space is back
    cluster.call(0, "put", key, b"after", QUORUM)
    for i in (1, 2, 3):
        cluster.crash(i)
        cluster.restart(i)
    assert cluster.call(0, "get", key, QUORUM).cell.value == b"after"
    assert all(cluster.cell_on(i, key).value == b"after" for i in (1, 2, 3))


def test_a_hint_that_could_not_be_stored_is_not_reported_as_kept(cluster):
    key = cluster.key_for([0, 1, 2], prefix=b"unhinted")
    cluster.crash_and_notice(2)
    (cluster.node_dir(0) / "hints" / "hints-2.log").mkdir()   # node 2's hint log on node 0 cannot be opened
    written = cluster.call(0, "put", key, b"v", ConsistencyLevel.ONE)
    assert written.acknowledged and written.hinted == []     # the answer must not say "hint kept"
    assert "could not store a hint for node 2: cannot store a hint for node 2" in cluster.log(0)
    (cluster.node_dir(0) / "hints" / "hints-2.log").rmdir()
    assert cluster.call(0, "put", key, b"w", ConsistencyLevel.ONE).hinted == [2]   # and once it can, it is
