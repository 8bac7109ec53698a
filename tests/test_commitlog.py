"""The commit log: clean end, torn tail (cut), corruption (refused), group commit through the disk worker,
disk full."""
import asyncio
import os
import subprocess
import sys
import threading
import time

import pytest

from kvstore.storage.commitlog import GROW_BYTES, CommitLog
from kvstore.core.errors import CorruptLogError, StorageError
from kvstore.storage.records import encode_record
from looptools import on_loop, workers


def write_log(path, payloads):
    log = CommitLog(path)
    log.replay()
    for p in payloads:
        log.append(p)
    log.close()


PAYLOADS = [b"first", b"", b"third record" * 10, bytes(range(256))]


def test_replay_returns_every_record_in_order(tmp_path):
    write_log(tmp_path / "c.log", PAYLOADS)
    assert CommitLog(tmp_path / "c.log").replay() == PAYLOADS


def test_a_cut_anywhere_inside_the_last_record_keeps_every_complete_record(tmp_path):
    path = tmp_path / "c.log"
    write_log(path, PAYLOADS)
    whole = path.read_bytes()
    last = len(encode_record(PAYLOADS[-1]))
    for cut in range(len(whole) - last, len(whole)):
        path.write_bytes(whole[:cut])
        log = CommitLog(path)
        assert log.replay() == PAYLOADS[:-1], f"cut at {cut}"
        assert path.stat().st_size == len(whole) - last  # the torn bytes are gone
        log.append(b"after")  # and the log appends cleanly after the repair
        log.close()
        assert CommitLog(path).replay() == PAYLOADS[:-1] + [b"after"]


def test_a_zero_filled_tail_is_torn_not_corrupt(tmp_path):
    path = tmp_path / "c.log"
    write_log(path, PAYLOADS)
    with open(path, "ab") as f:
        f.write(b"\0" * 100)
    assert CommitLog(path).replay() == PAYLOADS


def test_the_log_grows_in_zeros_ahead_of_its_records_and_a_crash_leaves_them_harmless(tmp_path, caplog):
    path = tmp_path / "c.log"
    log = CommitLog(path)
    log.replay()
    for p in PAYLOADS:
        log.append(p)
    records = sum(len(encode_record(p)) for p in PAYLOADS)
    assert log.size == records and path.stat().st_size >= records + GROW_BYTES // 2
    # No close: as after a crash. Replay finds every record, warns of nothing, appends after the last.
    reopened = CommitLog(path)
    assert reopened.replay() == PAYLOADS and "torn" not in caplog.text
    reopened.append(b"after")
    reopened.close()
    assert path.stat().st_size == records + len(encode_record(b"after"))   # a clean close cuts the zeros
    assert CommitLog(path).replay() == PAYLOADS + [b"after"]


def test_a_record_torn_inside_the_zeros_is_cut_and_a_damaged_one_is_refused(tmp_path):
    path = tmp_path / "c.log"
    write_log(path, PAYLOADS[:-1])
    good = path.read_bytes()
    last = encode_record(PAYLOADS[-1])
    for landed in range(1, len(last)):
        path.write_bytes(good + last[:landed] + bytes(len(last) - landed + 1000))
        if 4 < landed < 8 or landed > len(last) - 4:
            # Part of a checksum landed: the safe side is to refuse (--skip-corrupt-records recovers).
            with pytest.raises(CorruptLogError):
                CommitLog(path).replay()
            continue
        assert CommitLog(path).replay() == PAYLOADS[:-1], f"{landed} bytes landed"
        assert path.read_bytes() == good
    damaged = bytearray(last)
    damaged[20] ^= 0x01                      # a whole record, one bit flipped, zeros after it
    path.write_bytes(good + bytes(damaged) + bytes(1000))
    with pytest.raises(CorruptLogError):
        CommitLog(path).replay()


@pytest.mark.parametrize("where", ["header", "payload"])
def test_a_flipped_byte_in_the_middle_refuses_to_start_naming_file_and_offset(tmp_path, where):
    path = tmp_path / "c.log"
    write_log(path, PAYLOADS)
    data = bytearray(path.read_bytes())
    second = len(encode_record(PAYLOADS[0]))   # offset of the second record
    third = second + len(encode_record(PAYLOADS[1]))
    data[third + (1 if where == "header" else 10)] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError) as info:
        CommitLog(path).replay()
    assert info.value.offset == third and str(path) in str(info.value)
    assert path.read_bytes() == bytes(data)  # nothing was cut


@on_loop
async def test_appends_queued_while_the_disk_worker_syncs_share_its_next_fsync(tmp_path):
    def slow_sync(fd):
        time.sleep(0.005)
        os.fdatasync(fd)
    log = CommitLog(tmp_path / "c.log", sync=slow_sync)
    log.replay()
    async with workers() as (disk, _):
        await asyncio.gather(*(disk.append(log, [b"%d" % i]) for i in range(320)))
    assert log.records_written == 320
    assert log.fsync_count < 320 / 2, f"{log.fsync_count} fsyncs for 320 appends: commits are not grouped"
    log.close()
    assert CommitLog(tmp_path / "c.log").replay() == [b"%d" % i for i in range(320)]


@on_loop
async def test_appends_and_rewrites_queued_together_all_complete_in_queue_order(tmp_path):
    log = CommitLog(tmp_path / "c.log", sync=lambda fd: time.sleep(0.002))
    log.replay()
    async with workers() as (disk, _):
        done = []
        for round_ in range(10):
            done += [disk.append(log, [b"x%d" % round_]) for _ in range(5)]
            done.append(disk.run(log.rewrite, [b"base%d" % round_]))
        done.append(disk.append(log, [b"last"]))
        await asyncio.wait_for(asyncio.gather(*done), 10)
    log.close()
    assert CommitLog(tmp_path / "c.log").replay() == [b"base9", b"last"]


DISK_FULL = r"""
import resource, signal, sys
sys.path[:0] = sys.argv[2:]
from kvstore.storage.commitlog import CommitLog
from kvstore.core.errors import StorageError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
log = CommitLog(sys.argv[1]); log.replay()
log.append(b"kept" * 100)
resource.setrlimit(resource.RLIMIT_FSIZE, (2000, resource.RLIM_INFINITY))
try:
    log.append(b"x" * 5000)
except StorageError as exc:
    print("refused:", exc)
log.append(b"small")  # still fits: the failed record left no bytes behind
"""


def test_a_full_disk_refuses_the_write_and_keeps_the_log_clean(tmp_path):
    path = tmp_path / "c.log"
    src = os.path.join(os.path.dirname(__file__), "..", "src")
    out = subprocess.run([sys.executable, "-c", DISK_FULL, str(path), src], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert "refused: cannot append" in out.stdout
    assert CommitLog(path).replay() == [b"kept" * 100, b"small"]


def test_skipping_corrupt_records_recovers_the_rest_and_keeps_the_damaged_file(tmp_path, caplog):
    path = tmp_path / "c.log"
    write_log(path, PAYLOADS)
    data = bytearray(path.read_bytes())
    second = len(encode_record(PAYLOADS[0]))
    data[second + 10] ^= 0x01  # damage the second record only
    path.write_bytes(bytes(data))
    log = CommitLog(path)
    assert log.replay(skip_corrupt=True) == [PAYLOADS[0]] + PAYLOADS[2:]
    assert f"skipped {len(encode_record(PAYLOADS[1]))} damaged bytes at offset {second}" in caplog.text
    aside = list(tmp_path.glob("c.log.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == bytes(data)
    log.append(b"after")
    log.close()
    assert CommitLog(path).replay() == [PAYLOADS[0]] + PAYLOADS[2:] + [b"after"]  # clean without the flag


def test_a_periodic_log_acknowledges_before_syncing_and_syncs_within_its_period(tmp_path):
    synced = []
    log = CommitLog(tmp_path / "c.log", sync=lambda fd: synced.append(os.fstat(fd).st_size), sync_period=0.05)
    log.replay()
    log.append(b"first")
    assert synced == [] and log.fsync_count == 0   # acknowledged: written, not yet synced
    deadline = time.monotonic() + 5
    while log.fsync_count == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log.fsync_count == 1
    log.append(b"second")
    log.close()   # a clean stop syncs what the period had not
    assert log.fsync_count == 2
    assert CommitLog(tmp_path / "c.log").replay() == [b"first", b"second"]


@on_loop
async def test_a_batch_whose_write_fails_fails_every_append_of_it_and_the_log_goes_on(tmp_path):
    log = CommitLog(tmp_path / "c.log")
    log.replay()
    log.append(b"kept")
    real_write = os.pwrite
    syncing, gate = threading.Event(), threading.Event()

    def slow_sync(fd):   # holds the worker in the first batch's fsync while two more appends queue
        syncing.set()
        gate.wait(5)
        os.fdatasync(fd)
    log._sync = slow_sync

    def full_disk(fd, data, offset):
        if len(data) < GROW_BYTES:   # the records, not the zeros grown ahead of them
            raise OSError(28, "No space left on device")
        return real_write(fd, data, offset)
    async with workers() as (disk, _):
        first = disk.append(log, [b"first"])
        assert await asyncio.to_thread(syncing.wait, 5)
        queued = [disk.append(log, [name]) for name in (b"a", b"b")]
        os.pwrite = full_disk
        try:
            gate.set()
            await first
            outcomes = await asyncio.gather(*queued, return_exceptions=True)
        finally:
            os.pwrite = real_write
        assert all(isinstance(outcome, StorageError) and "No space left" in str(outcome) for outcome in outcomes), \
            outcomes
        await disk.append(log, [b"after"])
    log.close()
    assert CommitLog(tmp_path / "c.log").replay() == [b"kept", b"first", b"after"]
