"""A real node's start-up on a torn or corrupt commit log, and on a data directory an earlier version wrote."""
import shutil
from pathlib import Path

from kvstore.testing.localcluster import FAST_SETTINGS, Cluster, wait_for
from kvstore.storage.records import encode_record, scan_records
from kvstore_rpc.ttypes import ConsistencyLevel

QUORUM = ConsistencyLevel.QUORUM


def fill(cluster, count=20):
    key_of = [cluster.key_for([1, 2, 3], prefix=b"rec%d" % n) for n in range(count)]
    for n, key in enumerate(key_of):
        cluster.call(0, "put", key, b"value-%d" % n, QUORUM)
    return key_of


def records_end(path):
    """Where the last record ends: a crashed node's log goes on in zeros grown ahead of its records."""
    return scan_records(path.read_bytes())[1]


def test_a_torn_last_record_is_cut_and_everything_acknowledged_replays(cluster):
    keys = fill(cluster)
    before = cluster.dump(2).cells
    cluster.crash(2)
    log_path = cluster.node_dir(2) / "commit.log"
    with open(log_path, "r+b") as f:   # crash mid-append: the record's end never landed
        f.seek(records_end(log_path))
        f.write(encode_record(b"a write that was never acknowledged")[:-7])
    cluster.restart(2)
    assert cluster.dump(2).cells == before
    assert len(before) == len(keys)
    assert "torn tail" in cluster.log(2)


def test_a_corrupt_record_stops_start_up_naming_file_and_offset(cluster):
    fill(cluster)
    cluster.crash(2)
    log_path = cluster.node_dir(2) / "commit.log"
    data = bytearray(log_path.read_bytes())
    data[records_end(log_path) // 2] ^= 0xFF   # inside the records, not the zeros after them
    log_path.write_bytes(bytes(data))
    proc = cluster.restart(2, wait=False)
    assert proc.wait(20) == 3  # EXIT_CORRUPT
    log = cluster.log(2)
    assert f"corrupt log {log_path} at offset" in log
    assert "Refusing to start" in log
    assert log_path.read_bytes() == bytes(data)  # the evidence is left as it was


OLD_DATA = Path(__file__).parent / "fixtures" / "datadir-2026-12"   # a commit log and a hint log, as written then
T = 1796140000_000000


def test_a_data_directory_written_by_an_earlier_version_replays_and_its_hints_are_delivered(tmp_path):
    # A window of ten years: the fixture's hints were made on 2026-12-01 and must not age out of the test.
    # Only node 0 has data: the others, empty beside it, start as replacements (or they would refuse to).
    c = Cluster(tmp_path / "old", extra_args=FAST_SETTINGS + ("--hint-window", str(10 * 365 * 86400)),
                node_args={i: ("--replace",) for i in (1, 2, 3)})
    shutil.copytree(OLD_DATA, c.node_dir(0))
    try:
        c.start()
        cells = {m.key: m.cell for m in c.dump(0).cells}
        assert (cells[b"apple"].value, cells[b"apple"].timestamp) == (b"green", T + 6)
        assert cells[b"banana"].value is None and cells[b"banana"].timestamp == T + 3   # the tombstone
        assert cells[b"session"].expires_at == T + 4 + 3600 * 10**6
        assert cells[b"\xff\x00binary"].value == b"\x00\x01" and len(cells) == 4
        wait_for(lambda: all(c.cell_on(2, b"hinted-%d" % i) for i in range(3)), 15, "its hints delivered to node 2")
        wait_for(lambda: not c.dump(0).pending_hints, 5, "node 0 to hold no hint")
    finally:
        c.close()
