"""A cell (value and timestamp), the last-write-wins rule, and the byte codec of a mutation.

The rule, in one place: the higher timestamp wins; at equal timestamps the
lexically greater value wins (as in Cassandra), so replicas that see the same
writes in any order converge on the same cell.
"""
import struct
from typing import NamedTuple

_MUTATION_HEAD = struct.Struct("!IqI")  # key length, timestamp, value length


class Cell(NamedTuple):
    """Immutable, and a plain tuple underneath: a replica holds millions, and replay makes them all."""
    value: bytes
    timestamp: int


def newer(a, b):
    """The winner of two cells under last-write-wins; either may be None (absent)."""
    if a is None:
        return b
    if b is None:
        return a
    if (a.timestamp, a.value) >= (b.timestamp, b.value):
        return a
    return b


def reconcile(cells):
    """The winning cell among many (None when all are absent)."""
    best = None
    for cell in cells:
        best = newer(best, cell)
    return best


def encode_mutation(key, cell):
    return _MUTATION_HEAD.pack(len(key), cell.timestamp, len(cell.value)) + key + cell.value


def decode_mutations(data, spans):
    """Yield (key, Cell) from the spans (start, end) of data that each hold one encoded mutation.
    The replay path: one pass, nothing copied but keys and values. ValueError if malformed."""
    unpack, head = _MUTATION_HEAD.unpack_from, _MUTATION_HEAD.size
    for start, end in spans:
        key_len, timestamp, value_len = unpack(data, start)
        key_end = start + head + key_len
        if key_end + value_len != end:
            raise ValueError(f"mutation at offset {start} does not fill its record")
        yield data[start + head:key_end], Cell(data[key_end:end], timestamp)


def decode_mutation(data, offset=0):
    """(key, cell, next offset) from bytes made by encode_mutation; ValueError if malformed."""
    try:
        key_len, timestamp, value_len = _MUTATION_HEAD.unpack_from(data, offset)
    except struct.error as exc:
        raise ValueError(f"short mutation header: {exc}") from None
    start = offset + _MUTATION_HEAD.size
    end = start + key_len + value_len
    if end > len(data):
        raise ValueError("mutation longer than its record")
    key = bytes(data[start:start + key_len])
    value = bytes(data[start + key_len:end])
    return key, Cell(value, timestamp), end
