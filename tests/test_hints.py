"""Hints survive a restart, leave only when delivered, expire after the window, and are not retried
on every heartbeat at a target that cannot take them."""
import contextlib

import pytest

from kvstore.core.cell import Cell
from kvstore.core.clock import Clock
from kvstore.storage.commitlog import CommitLog
from kvstore.core.errors import StorageError
from kvstore.cluster.handoff import HintDelivery
from kvstore.storage.hints import HintStore
from looptools import on_loop, workers


@contextlib.asynccontextmanager
async def hint_store(path, window=3600, **options):
    """A HintStore on this loop, loaded from path, with its disk worker; closed after the block."""
    async with workers() as (disk, background):
        store = HintStore(path, window, disk, **options)
        store.load()
        store.background = background
        yield store
    store.close()


async def settle(delivery, background, node_id):
    """The delivery to node_id started by a sign of life, run to its end."""
    delivery.on_alive(node_id)
    assert await background.wait(5)


@on_loop
async def test_hints_are_durable_and_leave_only_when_delivered(tmp_path):
    async with hint_store(tmp_path) as store:
        for i in range(5):
            await store.add(2, b"k%d" % i, Cell(b"v", i))
        await store.add(3, b"other", Cell(b"v", 9))
    async with hint_store(tmp_path) as again:
        assert sum(again.counts().values()) == 6
        pending = await again.pending(2)
        assert [h.key for h in pending] == [b"k0", b"k1", b"k2", b"k3", b"k4"]
        await again.delivered(2, pending[:3])
    async with hint_store(tmp_path) as third:
        assert [h.key for h in await third.pending(2)] == [b"k3", b"k4"]
        assert third.counts() == {2: 2, 3: 1}


@on_loop
async def test_hints_older_than_the_window_are_dropped(tmp_path, caplog):
    now = [1000.0]
    async with hint_store(tmp_path, window=60, clock=Clock(wall=lambda: now[0])) as store:
        await store.add(1, b"old", Cell(b"v", 1))
        now[0] += 50
        await store.add(1, b"new", Cell(b"v", 2))
        now[0] += 30   # "old" is 80 s old, "new" 30 s
        assert [h.key for h in await store.pending(1)] == [b"new"]
        assert "dropping 1 hints for node 1 older than the hint window" in caplog.text
    async with hint_store(tmp_path, window=60, clock=Clock(wall=lambda: now[0])) as reloaded:
        assert [h.key for h in await reloaded.pending(1)] == [b"new"]


@on_loop
async def test_a_target_that_cannot_take_hints_is_retried_after_a_growing_wait(tmp_path):
    async with hint_store(tmp_path) as store:
        await store.add(2, b"k", Cell(b"v", 1))
        attempts, now, full = [], [100.0], [True]

        class Target:
            async def deliver(self, mutations, timeout):
                attempts.append(now[0])
                if full[0]:
                    raise StorageError("node 2: disk full")

        delivery = HintDelivery(store, {2: Target()}, 1, store.background, clock=lambda: now[0])
        await settle(delivery, store.background, 2)
        await settle(delivery, store.background, 2)   # the next heartbeat, at once: no new attempt
        assert attempts == [100.0]
        now[0] = 100.6
        await settle(delivery, store.background, 2)   # after 0.5 s: a retry, which fails again
        now[0] = 101.0
        await settle(delivery, store.background, 2)   # within the doubled wait (1 s): none
        assert attempts == [100.0, 100.6]
        full[0] = False
        now[0] = 101.7
        await settle(delivery, store.background, 2)
        assert attempts == [100.0, 100.6, 101.7] and not store.has_pending(2)


class CountingLog(CommitLog):
    """A hint log that counts the bytes its rewrites write (and skips fsync: this is about bytes)."""
    rewritten = 0
    budget = None

    def __init__(self, path):
        super().__init__(path, sync=lambda fd: None)

    def rewrite(self, payloads):
        CountingLog.rewritten += sum(len(p) for p in payloads)
        if CountingLog.budget is not None and CountingLog.rewritten > CountingLog.budget:
            raise AssertionError(f"delivery rewrote {CountingLog.rewritten} bytes of hint logs, more than "
                                 f"{CountingLog.budget}: it is not linear in the hints")
        return super().rewrite(payloads)


@on_loop
async def test_delivering_a_hundred_thousand_hints_rewrites_at_most_as_many_bytes_as_they_hold(tmp_path):
    import asyncio
    async with hint_store(tmp_path, make_log=CountingLog, sync=lambda fd: None) as store:
        for start in range(0, 100_000, 1000):   # stored a thousand at a time, as concurrent requests would
            await asyncio.gather(*(store.add(2, b"key-%06d" % i, Cell(b"value", i + 1))
                                   for i in range(start, start + 1000)))
        held = store.bytes_on_disk
        CountingLog.rewritten, CountingLog.budget = 0, held   # a rewrite per batch would write ~500 times this

        class Target:
            received = 0

            async def deliver(self, mutations, timeout):
                Target.received += len(mutations)
        await HintDelivery(store, {2: Target()}, 1, store.background)._deliver(2)
        assert Target.received == 100_000 and not store.has_pending(2)
        assert CountingLog.rewritten <= held
        assert store.bytes_on_disk == 0 and not (tmp_path / "hints-2.log").stat().st_size


@on_loop
async def test_the_checkpoint_survives_a_restart_and_a_damaged_one_delivers_everything_again(tmp_path, caplog):
    async with hint_store(tmp_path) as store:
        for i in range(10):
            await store.add(2, b"k%d" % i, Cell(b"v", i + 1))
        await store.delivered(2, await store.pending(2, 3))   # three gone: the log keeps them, the checkpoint says so
        assert (tmp_path / "hints-2.delivered").read_text() == "3\n"
    async with hint_store(tmp_path) as again:
        assert again.counts() == {2: 7} and (await again.pending(2))[0].key == b"k3"
    (tmp_path / "hints-2.delivered").write_text("99\n")   # more than the log holds: not believed
    async with hint_store(tmp_path) as third:
        assert third.counts() == {2: 10}
    assert "not a count of at most the 10 hints in its log: delivering every hint again" in caplog.text


@on_loop
async def test_a_hint_record_that_does_not_decode_is_named_by_file_and_byte_offset(tmp_path):
    from kvstore.core.errors import CorruptLogError
    from kvstore.storage.records import encode_record
    async with hint_store(tmp_path) as store:
        await store.add(2, b"k", Cell(b"v", 1))
    path = tmp_path / "hints-2.log"
    size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(encode_record(b"\x00\x00\x00\x00\x00\x00\x00\x01\x09garbage"))
    with pytest.raises(CorruptLogError, match=f"corrupt log {path} at offset {size}: "):
        async with hint_store(tmp_path):
            pass


@on_loop
async def test_a_target_that_fails_inside_is_retried_after_a_wait_with_a_warning_naming_the_cause(tmp_path, caplog):
    from kvstore.core.errors import NodeFailed
    async with hint_store(tmp_path) as store:
        await store.add(2, b"k", Cell(b"v", 1))
        attempts, now = [], [100.0]

        class Target:
            async def deliver(self, mutations, timeout):
                attempts.append(now[0])
                raise NodeFailed("127.0.0.1:7000 failed inside deliver_hints: a bug")
        delivery = HintDelivery(store, {2: Target()}, 1, store.background, clock=lambda: now[0])
        for _ in range(5):   # heartbeats, at once: one attempt, not one each (a poison hint does not loop)
            await settle(delivery, store.background, 2)
        assert attempts == [100.0] and store.has_pending(2)
        assert "WARNING" in caplog.text and "failed inside deliver_hints: a bug; next try in 0.5 s" in caplog.text
