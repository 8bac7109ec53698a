"""Range sync: bring every replica of one token range to the newest cell of each key, moving only what differs.

The primitive that repair, a replaced node's catch-up and (later) streaming to a new owner are made of
(ScyllaDB's row-level repair, on Riak's TicTac trees). The node running it is one of the sides; it:
1. asks each side for its 64 branch hashes, and where they differ, for the 64 leaf hashes of those branches;
2. for the leaves that differ, CHUNK_LEAVES at a time, asks each side for its (key, timestamp, digest)
   entries, and for each key where the sides disagree finds the newest cell by last-write-wins: the
   highest timestamp, and at a tie between different cells, the cells themselves decide (core.cell.newer);
3. reads that cell from one side that holds it (this node's own, when it does), and writes it through
   the normal replica write path to every side that holds anything else, in both directions.
So a range that differs in one key moves one cell, whatever the range's size: the bytes that cross are
two levels of hashes, one leaf's entries and the cell (`SyncStats` counts them). When this node holds
nothing in a chunk's leaves and there is one other side (a new node streaming a range from the replica
losing it), steps 2 and 3 are one: it asks the other side for the leaves' cells whole (sync_cells).

A tombstone that every replica may already have purged (older than gc grace, its range repaired since)
is not sent to a side that has no entry for its key: that side dropped it, and sending it back would undo
the purge at every repair.

Cells are written in batches of at most WRITE_BATCH_BYTES, each paid for first at the `Pace` (bytes a
second, the node's --repair-rate-mb), and an automatic repair rests after each chunk of leaves as long
as the chunk took, so a sync takes a bounded share of the machine. Any side failing
fails the sync (SyncFailed names it); what was written before stays written (every write is a plain
last-write-wins write: a sync that is run again sends only what is still missing).
"""
import asyncio
import time
from dataclasses import dataclass

from kvstore.core.cell import newer
from kvstore.core.errors import KVStoreError
from kvstore.core.hashtree import BRANCHES, LEAVES_PER_BRANCH, digest
from kvstore.cluster.sync_sides import ENTRY_BYTES

CHUNK_LEAVES = 64          # leaves whose entries are settled together (bounds the memory a sync takes)
BRANCHES_PER_CALL = 16     # branches whose leaf hashes one call asks for
WRITE_BATCH_BYTES = 1 << 20
READ_BATCH_BYTES = 1 << 20
CELL_OVERHEAD = 64         # what a cell costs beyond its key and value, for the pace and the byte counts


class SyncFailed(KVStoreError):
    """A side of a range sync failed: the message names it and why."""


@dataclass
class SyncStats:
    keys_compared: int = 0    # keys whose entries were compared (in leaves that differ)
    cells_in: int = 0         # cells written to this node's replica
    cells_out: int = 0        # cells written to the other replicas
    bytes_sent: int = 0       # bytes that crossed the network: hashes, entries and cells
    leaves_total: int = 0     # leaves found to differ
    leaves_done: int = 0


class Pace:
    """A byte rate: take(n) returns once n more bytes fit under it (0: no bound), in bursts of BURST seconds;
    and a duty cycle: rest(busy) sleeps so that a sync is at work at most `duty` of the time (1: always)."""
    BURST = 0.1

    def __init__(self, bytes_per_second, duty=1.0):
        self._rate = bytes_per_second
        self._duty = duty
        self._free = time.monotonic()

    async def rest(self, busy):
        if self._duty < 1.0:
            await asyncio.sleep(busy * (1.0 - self._duty) / self._duty)

    async def take(self, count):
        if not self._rate:
            return
        now = time.monotonic()
        self._free = max(self._free, now - self.BURST) + count / self._rate
        if self._free > now:
            await asyncio.sleep(self._free - now)


async def sync_range(token_range, sides, session, stats, pace, purgeable=lambda key, cell: False):
    """Sync one range between sides (sides[0]: this node's LocalSide). Raises SyncFailed."""
    branches = await _each(sides, lambda side: side.hashes(session, token_range, []))
    _count(stats, branches)
    different = [b for b in range(BRANCHES) if len({h[b] for h in branches}) > 1]
    leaves = []
    for start in range(0, len(different), BRANCHES_PER_CALL):
        asked = different[start:start + BRANCHES_PER_CALL]
        hashes = await _each(sides, lambda side, asked=asked: side.hashes(session, token_range, asked))
        _count(stats, hashes)
        for j, branch in enumerate(asked):
            for i in range(LEAVES_PER_BRANCH):
                if len({h[j * LEAVES_PER_BRANCH + i] for h in hashes}) > 1:
                    leaves.append(branch * LEAVES_PER_BRANCH + i)
    stats.leaves_total += len(leaves)
    if len(sides) == 2 and leaves and not await _entries(sides[0], session, token_range, leaves, None):
        return await _fill(token_range, sides, session, leaves, stats, pace, purgeable)   # a new node: stream
    for start in range(0, len(leaves), CHUNK_LEAVES):
        chunk = leaves[start:start + CHUNK_LEAVES]
        began = time.monotonic()
        await _settle(token_range, sides, session, chunk, stats, pace, purgeable)
        stats.leaves_done += len(chunk)
        await pace.rest(time.monotonic() - began)


async def _settle(token_range, sides, session, leaves, stats, pace, purgeable):
    """Make every side hold the newest cell of every key in these leaves."""
    held = await _each(sides, lambda side: _entries(side, session, token_range, leaves,
                                                    None if side is sides[0] else stats))
    keys = set().union(*held)
    stats.keys_compared += len(keys)
    sources, wanted = {}, {}   # side index -> keys to read from it; key -> each side's entry (None: no key)
    gets, count = [h.get for h in held], len(held)
    for key in keys:
        entries = [get(key) for get in gets]
        first = entries[0]
        if first is not None and entries.count(first) == count:
            continue   # every replica holds the same cell: the common case, decided by one comparison a side
        top = max(e for e in entries if e is not None)   # (timestamp, digest): the highest timestamp first
        winners = [i for i, e in enumerate(entries) if e is not None and e[0] == top[0]]
        if any(entries[i] != top for i in winners):   # different cells, one timestamp: the cells decide
            for i in winners:
                sources.setdefault(i, []).append(key)
        else:
            sources.setdefault(winners[0], []).append(key)
        wanted[key] = entries
    newest = {}
    for index, asked in sorted(sources.items()):
        for batch, _ in _batches(asked, len, READ_BATCH_BYTES):
            while batch:   # an answer at its budget covers a prefix: ask again for the rest
                try:
                    cells = await sides[index].read(session, token_range, batch)
                except KVStoreError as exc:
                    raise SyncFailed(f"node {sides[index].node_id}: {exc}") from None
                for key, cell in cells:
                    newest[key] = newer(newest.get(key), cell)
                    if index and cell is not None:
                        stats.bytes_sent += _cell_bytes(key, cell)
                batch = batch[len(cells):]
    digests = {key: digest(key, cell) for key, cell in newest.items() if cell is not None}
    for index, side in enumerate(sides):
        items = []
        for key, entries in wanted.items():
            cell = newest.get(key)
            entry = entries[index]
            if cell is None or (entry is not None and entry[1] == digests[key]):
                continue
            if entry is None and purgeable(key, cell):
                continue
            items.append((key, cell))
        await _write(side, items, pace, _counted_out(stats) if index else _counted_in(stats, sent=False))


async def _fill(token_range, sides, session, leaves, stats, pace, purgeable):
    """This node holds nothing in these leaves: write it every cell the other side holds in them (a tombstone
    every replica may have purged left out), CHUNK_LEAVES at a time, the next chunk asked for while this one
    is written (the other side reads while this one applies)."""
    local, other = sides

    def ask(chunk):
        return asyncio.ensure_future(other.cells(session, token_range, chunk)) if chunk else None
    coming = ask(leaves[:CHUNK_LEAVES])
    try:
        while coming is not None:
            try:
                cells, answered = await coming
            except KVStoreError as exc:
                raise SyncFailed(f"node {other.node_id}: {exc}") from None
            if answered <= 0:
                raise SyncFailed(f"node {other.node_id} answered none of {len(leaves)} leaves")
            leaves = leaves[answered:]
            coming = ask(leaves[:CHUNK_LEAVES])
            stats.keys_compared += len(cells)
            await _write(local, [(key, cell) for key, cell in cells if not purgeable(key, cell)], pace,
                         _counted_in(stats, sent=True))
            stats.leaves_done += answered
    finally:
        if coming is not None and not coming.done():
            coming.cancel()


async def _write(side, items, pace, counted):
    """Write items (key, cell) to side through its write path, in batches of WRITE_BATCH_BYTES, each paid for at
    the pace first; counted(cells, bytes) after each batch."""
    for batch, size in _batches(items, lambda item: _cell_bytes(*item), WRITE_BATCH_BYTES):
        await pace.take(size)
        try:
            await side.write(batch)
        except KVStoreError as exc:
            raise SyncFailed(f"node {side.node_id}: {exc}") from None
        counted(len(batch), size)


def _counted_out(stats):
    def counted(cells, size):
        stats.cells_out += cells
        stats.bytes_sent += size
    return counted


def _counted_in(stats, sent):
    """sent: the cells crossed the network to be written here (streamed whole), not read already."""
    def counted(cells, size):
        stats.cells_in += cells
        stats.bytes_sent += size if sent else 0
    return counted


async def _entries(side, session, token_range, leaves, stats):
    """{key: (timestamp, digest)} of every key in the leaves, asking again for the leaves an answer left out;
    the bytes they took counted in stats (None: this node's own, which cross no network)."""
    found = {}
    while leaves:
        entries, answered = await side.entries(session, token_range, leaves)
        if answered <= 0:
            raise SyncFailed(f"node {side.node_id} answered none of {len(leaves)} leaves")
        for key, timestamp, key_digest in entries:
            found[key] = (timestamp, key_digest)
        if stats is not None:
            stats.bytes_sent += sum(len(key) + ENTRY_BYTES for key, _, _ in entries)
        leaves = leaves[answered:]
    return found


async def _each(sides, call):
    """[call(side)] for every side at once; SyncFailed naming the first side that failed."""
    answers = await asyncio.gather(*(call(side) for side in sides), return_exceptions=True)
    for side, answer in zip(sides, answers):
        if isinstance(answer, BaseException):
            if isinstance(answer, KVStoreError):
                raise SyncFailed(f"node {side.node_id}: {answer}") from None
            raise answer
    return answers


def _count(stats, answers):
    """Bytes of the hashes the other sides sent (answers[0] is this node's own)."""
    stats.bytes_sent += sum(8 * len(answer) for answer in answers[1:])


def _cell_bytes(key, cell):
    return len(key) + len(cell.value or b"") + CELL_OVERHEAD


def _batches(items, size, limit):
    """(batch, its size) of items, each batch at most limit by size(item), but at least one item."""
    batch, total = [], 0
    for item in items:
        cost = size(item)
        if batch and total + cost > limit:
            yield batch, total
            batch, total = [], 0
        batch.append(item)
        total += cost
    if batch:
        yield batch, total
