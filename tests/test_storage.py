"""Storage: last write wins on apply, compaction keeps the log proportional to the live data (and
drops tombstones only after their grace), and ordered scans."""
import asyncio
import contextlib

import pytest

from kvstore.core.cell import Cell, tombstone
from kvstore.core.clock import Clock
from kvstore.storage.commitlog import CommitLog
from kvstore.storage.store import Storage
from looptools import on_loop, workers


@contextlib.asynccontextmanager
async def open_storage(path, compact_min_bytes=10_000, close=True, **options):
    """A storage on this loop, replayed from path; closed after the block unless close=False (a crash)."""
    async with workers() as (disk, background):
        storage = Storage(CommitLog(path), disk, background, compact_min_bytes=compact_min_bytes, **options)
        storage.load()
        yield storage
    if close:
        storage.close()


@on_loop
async def test_an_older_write_is_not_logged_or_applied(tmp_path):
    async with open_storage(tmp_path / "c.log") as storage:
        await storage.apply(b"k", Cell(b"new", 2))
        size = storage.log_bytes
        await storage.apply(b"k", Cell(b"old", 1))
        assert storage.get(b"k") == Cell(b"new", 2) and storage.log_bytes == size


@on_loop
async def test_a_durable_write_is_applied_even_when_its_callback_fails(tmp_path):
    """The callback runs before the merge (a replica's answer goes out first): a callback that raises must not
    leave a write durable on disk but missing from what reads see."""
    async with open_storage(tmp_path / "c.log") as storage:
        called = asyncio.get_running_loop().create_future()

        def failing(error, answers):
            called.set_result((error, answers))
            raise RuntimeError("a bug in whatever answers the write")
        storage.apply_all_then([(b"k", Cell(b"v", 1))], failing)
        assert await called == (None, [0])
        assert storage.get(b"k") == Cell(b"v", 1)


@on_loop
async def test_compaction_rewrites_the_log_as_the_live_cells(tmp_path):
    async with open_storage(tmp_path / "c.log") as storage:
        for n in range(2000):  # 20 keys overwritten 100 times: history is 100x the live data
            await storage.apply(b"key-%d" % (n % 20), Cell(b"value-%d" % n, n))
        await storage.compact()
        state = storage.items()
        assert storage.log_bytes < 20 * 100
    async with open_storage(tmp_path / "c.log") as again:
        assert again.items() == state and len(state) == 20


@on_loop
async def test_writes_during_compaction_are_neither_lost_nor_blocked_for_good(tmp_path):
    async with open_storage(tmp_path / "c.log", compact_min_bytes=5_000) as storage:  # compacts over and over
        done = []

        async def writer(w):
            for n in range(300):
                await storage.apply(b"w%d-%d" % (w, n % 50), Cell(b"v%d" % n, n + 1))
            done.append(w)
        await asyncio.wait_for(asyncio.gather(*(writer(w) for w in range(8))), 60)
        assert sorted(done) == list(range(8))
        await storage.compact()
        state = storage.items()
    async with open_storage(tmp_path / "c.log") as again:
        assert again.items() == state
    assert {k: c.timestamp for k, c in state} == {b"w%d-%d" % (w, k): 250 + k + 1
                                                  for w in range(8) for k in range(50)}


@on_loop
async def test_a_crash_right_after_compaction_replays_everything(tmp_path):
    async with open_storage(tmp_path / "c.log", close=False) as storage:
        for n in range(500):
            await storage.apply(b"k%d" % (n % 10), Cell(b"v%d" % n, n))
        await storage.compact()
        await storage.apply(b"after", Cell(b"x", 1000))
        expected = storage.items()
    # not closed: the process "dies" here; the log on disk is all there is
    async with open_storage(tmp_path / "c.log") as again:
        assert again.items() == expected


@on_loop
async def test_scans_return_keys_in_byte_order_with_tombstones_and_a_limit(tmp_path):
    async with open_storage(tmp_path / "c.log") as storage:
        for key in (b"b", b"\xff\x01", b"a", b"ab", b"\x00", b"c"):
            await storage.apply(key, Cell(b"v-" + key, 1))
        await storage.apply(b"ab", tombstone(2))
        assert [k for k, _ in storage.scan(b"", None, 100)] == [b"\x00", b"a", b"ab", b"b", b"c", b"\xff\x01"]
        assert storage.scan(b"a", b"b", 100) == [(b"a", Cell(b"v-a", 1)), (b"ab", tombstone(2))]
        assert [k for k, _ in storage.scan(b"a", None, 2)] == [b"a", b"ab"]
        assert storage.scan(b"d", b"e", 10) == []
    async with open_storage(tmp_path / "c.log") as reopened:   # the index is rebuilt by replay
        assert [k for k, _ in reopened.scan(b"b", None, 100)] == [b"b", b"c", b"\xff\x01"]


@on_loop
async def test_compaction_keeps_tombstones_for_their_grace_then_drops_them(tmp_path):
    now = [1000.0]
    async with open_storage(tmp_path / "c.log", gc_grace=60, clock=Clock(wall=lambda: now[0])) as storage:
        await storage.apply(b"deleted", tombstone(int(1000e6)))
        await storage.apply(b"expiring", Cell(b"v", int(1000e6), expires=int(1010e6)))
        await storage.apply(b"kept", Cell(b"v", int(1000e6)))
        now[0] = 1030.0
        assert await storage.compact() == 0
        assert storage.get(b"deleted") == tombstone(int(1000e6))
        assert storage.get(b"expiring") == Cell(None, int(1000e6), int(1010e6))  # expired: now a tombstone
        now[0] = 1065.0
        assert await storage.compact() == 1   # the delete is past its grace; the expiry (at 1010) is not yet
        assert storage.get(b"deleted") is None and storage.scan(b"d", b"e", 10) == []
        now[0] = 1071.0
        assert await storage.compact() == 1
    async with open_storage(tmp_path / "c.log") as reopened:
        assert reopened.items() == [(b"kept", Cell(b"v", int(1000e6)))]


@on_loop
async def test_a_record_that_passes_its_checksum_but_does_not_decode_is_named_by_file_and_byte_offset(tmp_path):
    from kvstore.core.cell import encode_mutation
    from kvstore.core.errors import CorruptLogError
    from kvstore.storage.records import encode_record
    good = encode_mutation(b"k", Cell(b"v", 1))
    path = tmp_path / "c.log"
    path.write_bytes(encode_record(good) + encode_record(b"\x09not a mutation"))
    with pytest.raises(CorruptLogError, match=f"corrupt log {path} at offset {len(encode_record(good))}: "):
        async with open_storage(path):
            pass
