"""A cell (a value, a tombstone or an expiring value), the last-write-wins rule, and the byte codec.

A cell is one of three kinds:
- live: a value, expires == 0;
- expiring: a value and `expires`, the absolute time (microseconds since the
  epoch) after which it reads as absent. The coordinator fixes it when the
  write is made, so every replica expires it at the same moment;
- tombstone: value None (a delete); `expires` is when it was deleted (or
  expired), from which its grace period counts before compaction may drop it.

The rule, in one place (Cassandra's): the higher timestamp wins. At equal
timestamps a tombstone beats an expiring cell, which beats a live one; between
two expiring cells (or two tombstones) the later `expires` wins; then the
lexically greater value. So replicas that see the same writes in any order
converge on the same cell, whatever their clocks say.
"""
import struct
from typing import NamedTuple, Optional

# Record formats. The first byte of a record tells them apart: the original
# format began with the key length's high byte, always 0 (keys are far under 16 MiB).
_V0_HEAD = struct.Struct("!IqI")     # key length, timestamp, value length (live cells only)
_V1_HEAD = struct.Struct("!BIqqI")   # kind, key length, timestamp, expires, value length
_KIND_VALUE, _KIND_TOMBSTONE = 1, 2


class Cell(NamedTuple):
    """Immutable, and a plain tuple underneath: a replica holds millions, and replay makes them all."""
    value: Optional[bytes]   # None: a tombstone
    timestamp: int
    expires: int = 0         # live: 0 or when it expires; tombstone: when it was deleted (microseconds)


def tombstone(timestamp, deleted_at=None):
    return Cell(None, timestamp, timestamp if deleted_at is None else deleted_at)


def _rank(cell):
    # At equal timestamps: tombstone > expiring > live, then the later expiry, then the greater value.
    if cell.value is None:
        return (cell.timestamp, 2, cell.expires, b"")
    return (cell.timestamp, 1 if cell.expires else 0, cell.expires, cell.value)


def newer(a, b):
    """The winner of two cells under last-write-wins; either may be None (absent)."""
    if a is None:
        return b
    if b is None:
        return a
    if a.timestamp != b.timestamp:  # the common cases, without building ranks
        return a if a.timestamp > b.timestamp else b
    if a == b:   # replicas that agree
        return a
    return a if _rank(a) >= _rank(b) else b


def reconcile(cells):
    """The winning cell among many (None when all are absent)."""
    best = None
    for cell in cells:
        best = newer(best, cell)
    return best


def visible(cell, now):
    """The cell as a read sees it at `now` (microseconds): None if absent, deleted or expired."""
    if cell is None or cell.value is None or (cell.expires and cell.expires <= now):
        return None
    return cell


def seconds_left(cell, now):
    """Redis TTL of a visible cell at `now`: seconds until it expires, rounded up; -1 when it never
    does; -2 when there is no cell."""
    if cell is None:
        return -2
    if not cell.expires:
        return -1
    return max(0, -(-(cell.expires - now) // 1_000_000))


def purge(cell, now, grace, repaired=True):
    """What compaction keeps of a cell at `now`: an expired value becomes a tombstone (deleted when it
    expired); a tombstone older than `grace` microseconds is dropped (None), if `repaired`: every replica of
    its range is known to hold it."""
    if cell.value is not None and cell.expires and cell.expires <= now:
        cell = Cell(None, cell.timestamp, cell.expires)
    if cell.value is None and repaired and cell.expires + grace <= now:
        return None
    return cell


def encode_mutation(key, cell):
    if cell.value is None:
        return _V1_HEAD.pack(_KIND_TOMBSTONE, len(key), cell.timestamp, cell.expires, 0) + key
    return _V1_HEAD.pack(_KIND_VALUE, len(key), cell.timestamp, cell.expires, len(cell.value)) + key + cell.value


def replay_into(cells, data, spans):
    """Decode every mutation in the spans and merge each into cells ({key: Cell}) by last-write-wins.
    The replay path, for millions of records: one pass, nothing copied but keys and values, no
    per-record generator or NamedTuple constructor. ValueError if malformed."""
    new_cell, setdefault = tuple.__new__, cells.setdefault
    unpack, head = _V1_HEAD.unpack_from, _V1_HEAD.size
    start = 0
    try:
        for start, end in spans:
            if data[start] == _KIND_VALUE:  # the common case inline
                _, key_len, timestamp, expires, value_len = unpack(data, start)
                key_end = start + head + key_len
                if key_end + value_len != end:
                    raise ValueError("the mutation does not fill its record")
                key, cell = data[start + head:key_end], new_cell(Cell, (data[key_end:end], timestamp, expires))
            else:
                key, cell, stop = decode_mutation(data, start, end)
                if stop != end:
                    raise ValueError("the mutation does not fill its record")
            held = setdefault(key, cell)
            if held is not cell and newer(held, cell) is cell:
                cells[key] = cell
    except (ValueError, struct.error, IndexError) as exc:
        raise MalformedMutation(start, str(exc)) from None


class MalformedMutation(ValueError):
    """A record whose checksum held but whose mutation does not decode; payload_offset: where it begins."""

    def __init__(self, payload_offset, detail):
        super().__init__(detail)
        self.payload_offset = payload_offset


def decode_mutation(data, offset=0, limit=None):
    """(key, cell, next offset) from bytes made by encode_mutation (either format); ValueError if
    malformed."""
    limit = len(data) if limit is None else limit
    try:
        kind = data[offset]
        if kind == 0:
            key_len, timestamp, value_len = _V0_HEAD.unpack_from(data, offset)
            expires, start = 0, offset + _V0_HEAD.size
        elif kind in (_KIND_VALUE, _KIND_TOMBSTONE):
            _, key_len, timestamp, expires, value_len = _V1_HEAD.unpack_from(data, offset)
            start = offset + _V1_HEAD.size
        else:
            raise ValueError(f"unknown mutation format {kind}")
    except (struct.error, IndexError) as exc:
        raise ValueError(f"short mutation header: {exc}") from None
    key_end = start + key_len
    end = key_end + value_len
    if end > limit:
        raise ValueError("mutation longer than its record")
    key = bytes(data[start:key_end])
    if kind == _KIND_TOMBSTONE:
        return key, Cell(None, timestamp, expires), end
    return key, Cell(bytes(data[key_end:end]), timestamp, expires), end
