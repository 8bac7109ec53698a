"""Storage: last write wins on apply, and compaction keeps the log proportional to the live data."""
import threading

from kvstore.cell import Cell
from kvstore.commitlog import CommitLog
from kvstore.storage import Storage


def open_storage(path, compact_min_bytes=10_000):
    storage = Storage(CommitLog(path), compact_min_bytes=compact_min_bytes)
    storage.load()
    return storage


def test_an_older_write_is_not_logged_or_applied(tmp_path):
    storage = open_storage(tmp_path / "c.log")
    storage.apply(b"k", Cell(b"new", 2))
    size = storage.log_bytes
    storage.apply(b"k", Cell(b"old", 1))
    assert storage.get(b"k") == Cell(b"new", 2) and storage.log_bytes == size


def test_compaction_rewrites_the_log_as_the_live_cells(tmp_path):
    storage = open_storage(tmp_path / "c.log")
    for n in range(2000):  # 20 keys overwritten 100 times: history is 100x the live data
        storage.apply(b"key-%d" % (n % 20), Cell(b"value-%d" % n, n))
    storage.compact()
    state = storage.items()
    assert storage.log_bytes < 20 * 100
    storage.close()
    again = open_storage(tmp_path / "c.log")
    assert again.items() == state and len(state) == 20


def test_writes_during_compaction_are_neither_lost_nor_blocked_for_good(tmp_path):
    storage = open_storage(tmp_path / "c.log", compact_min_bytes=5_000)  # compacts over and over
    done = []

    def writer(w):
        for n in range(300):
            storage.apply(b"w%d-%d" % (w, n % 50), Cell(b"v%d" % n, n + 1))
        done.append(w)
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(done) == list(range(8))
    storage.compact()
    state = storage.items()
    storage.close()
    again = open_storage(tmp_path / "c.log")
    assert again.items() == state
    assert {k: c.timestamp for k, c in state} == {b"w%d-%d" % (w, k): 250 + k + 1
                                                  for w in range(8) for k in range(50)}


def test_a_crash_right_after_compaction_replays_everything(tmp_path):
    storage = open_storage(tmp_path / "c.log")
    for n in range(500):
        storage.apply(b"k%d" % (n % 10), Cell(b"v%d" % n, n))
    storage.compact()
    storage.apply(b"after", Cell(b"x", 1000))
    expected = storage.items()
    # no close(): the process "dies" here; the log on disk is all there is
    assert open_storage(tmp_path / "c.log").items() == expected
