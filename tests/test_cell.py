"""Last write wins, with a deterministic tie-break; the clock; the mutation codec; the levels."""
import itertools

import pytest

from kvstore.cell import Cell, decode_mutation, encode_mutation, newer, reconcile
from kvstore.clock import Clock
from kvstore.consistency import Level, block_for, parse_level
from kvstore.errors import InvalidRequest


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


def test_absent_loses_to_anything():
    assert newer(None, Cell(b"", 0)) == Cell(b"", 0)
    assert reconcile([None, None]) is None


def test_mutation_codec_round_trip():
    data = encode_mutation(b"\x00key", Cell(b"\xffvalue", 1_700_000_000_000_000))
    assert decode_mutation(data) == (b"\x00key", Cell(b"\xffvalue", 1_700_000_000_000_000), len(data))
    with pytest.raises(ValueError):
        decode_mutation(data[:-1])


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
