"""Last write wins, with Cassandra's tie-breaks for deletes and expiry; the clock; the codec; the levels."""
import itertools
import struct

import pytest

from kvstore.core.cell import (Cell, decode_mutation, encode_mutation, newer, purge, reconcile,
                          replay_into, seconds_left, tombstone, visible)
from kvstore.core.clock import Clock
from kvstore.core.consistency import Level, block_for, parse_level
from kvstore.core.errors import InvalidRequest


def test_higher_timestamp_wins_whatever_the_value():
    assert newer(Cell(b"a", 2), Cell(b"z", 1)) == Cell(b"a", 2)
    assert newer(Cell(b"z", 1), Cell(b"a", 2)) == Cell(b"a", 2)


def test_equal_timestamps_the_greater_value_wins():
    assert newer(Cell(b"abc", 5), Cell(b"abd", 5)) == Cell(b"abd", 5)
    assert newer(Cell(b"\xff", 5), Cell(b"\x00\xff", 5)) == Cell(b"\xff", 5)


def test_every_arrival_order_converges_on_the_same_cell():
    cells = [Cell(b"x", 7), Cell(b"y", 7), Cell(b"a", 6), Cell(b"", 7), None]
    results = {reconcile(order) for order in itertools.permutations(cells)}
    assert results == {Cell(b"y", 7)}


def test_at_equal_timestamps_a_tombstone_beats_an_expiring_value_which_beats_a_plain_one():
    plain, expiring, deleted = Cell(b"zzz", 5), Cell(b"a", 5, expires=10), tombstone(5)
    assert newer(plain, expiring) == newer(expiring, plain) == expiring
    assert newer(expiring, deleted) == newer(deleted, expiring) == deleted
    assert newer(plain, deleted) == newer(deleted, plain) == deleted
    # A later write beats a delete, as any later write does.
    assert newer(deleted, Cell(b"back", 6)) == Cell(b"back", 6)


def test_between_two_expiring_cells_of_one_timestamp_the_later_expiry_wins():
    assert newer(Cell(b"z", 5, expires=10), Cell(b"a", 5, expires=20)) == Cell(b"a", 5, expires=20)
    assert newer(tombstone(5, deleted_at=7), tombstone(5, deleted_at=9)) == tombstone(5, deleted_at=9)


def test_deletes_and_expiry_converge_in_every_arrival_order():
    cells = [Cell(b"x", 7), tombstone(7), Cell(b"y", 7, expires=100), Cell(b"y", 7, expires=50), Cell(b"a", 6)]
    assert {reconcile(order) for order in itertools.permutations(cells)} == {tombstone(7)}


def test_reads_see_neither_tombstones_nor_expired_cells():
    assert visible(tombstone(5), now=1) is None
    assert visible(Cell(b"v", 5, expires=100), now=99) == Cell(b"v", 5, expires=100)
    assert visible(Cell(b"v", 5, expires=100), now=100) is None
    assert visible(Cell(b"v", 5), now=2**62) == Cell(b"v", 5)


def test_ttl_follows_redis():
    assert seconds_left(None, 0) == -2
    assert seconds_left(Cell(b"v", 1), 0) == -1
    assert seconds_left(Cell(b"v", 1, expires=10_500_000), 0) == 11  # rounded up, as a key still there


def test_compaction_turns_expired_values_into_tombstones_and_drops_them_after_grace():
    grace = 1_000
    assert purge(Cell(b"v", 1, expires=50), now=40, grace=grace) == Cell(b"v", 1, expires=50)
    assert purge(Cell(b"v", 1, expires=50), now=60, grace=grace) == Cell(None, 1, 50)
    assert purge(Cell(b"v", 1, expires=50), now=1_050, grace=grace) is None
    assert purge(tombstone(100), now=1_099, grace=grace) == tombstone(100)
    assert purge(tombstone(100), now=1_100, grace=grace) is None
    assert purge(Cell(b"v", 1), now=2**62, grace=grace) == Cell(b"v", 1)


def test_absent_loses_to_anything():
    assert newer(None, Cell(b"", 0)) == Cell(b"", 0)
    assert reconcile([None, None]) is None


@pytest.mark.parametrize("cell", [Cell(b"\xffvalue", 1_700_000_000_000_000), Cell(b"", 3),
                                  Cell(b"v", 3, expires=1_800_000_000_000_000), tombstone(9, deleted_at=11)])
def test_mutation_codec_round_trip(cell):
    data = encode_mutation(b"\x00key", cell)
    assert decode_mutation(data) == (b"\x00key", cell, len(data))
    replayed = {}
    replay_into(replayed, data, [(0, len(data))])
    assert replayed == {b"\x00key": cell} and type(replayed[b"\x00key"]) is Cell
    with pytest.raises(ValueError):
        decode_mutation(data[:-1])


def test_replay_merges_records_by_last_write_wins_whatever_their_order():
    records = [encode_mutation(b"k", Cell(b"new", 5)), encode_mutation(b"k", Cell(b"old", 4)),
               encode_mutation(b"k", tombstone(5)), encode_mutation(b"j", Cell(b"x", 1))]
    data, spans, at = b"".join(records), [], 0
    for record in records:
        spans.append((at, at + len(record)))
        at += len(record)
    replayed = {}
    replay_into(replayed, data, spans)
    assert replayed == {b"k": tombstone(5), b"j": Cell(b"x", 1)}


def test_records_of_the_first_format_still_replay():
    old = struct.pack("!IqI", 3, 42, 5) + b"key" + b"value"   # key length, timestamp, value length
    assert decode_mutation(old) == (b"key", Cell(b"value", 42), len(old))
    replayed = {}
    replay_into(replayed, old, [(0, len(old))])
    assert replayed == {b"key": Cell(b"value", 42)}


def test_clock_strictly_increases_when_the_wall_clock_steps_back():
    readings = iter([100.0, 100.0, 99.0, 50.0, 101.0])
    clock = Clock(wall=lambda: next(readings))
    stamps = [clock.now() for _ in range(5)]
    assert stamps == sorted(set(stamps))
    assert stamps[0] == 100_000_000 and stamps[-1] == 101_000_000


def test_block_for_and_level_parsing():
    assert block_for(Level.ONE, 3) == 1
    assert block_for(Level.QUORUM, 3) == 2
    assert block_for(Level.QUORUM, 1) == 1
    assert parse_level("quorum") is Level.QUORUM and parse_level(1) is Level.ONE
    with pytest.raises(InvalidRequest, match="unknown consistency level 7"):
        parse_level(7)
