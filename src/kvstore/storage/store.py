"""A replica's cells: held in memory, made durable through the commit log, compacted as it grows.

Invariants: a cell is visible to reads only after its record is fsynced, so
nothing a read returns can be lost by a crash. Writes merge by last-write-wins,
so the order in which concurrent writes reach the log does not matter: replay
gives the same state. The log is rewritten from the live cells (compaction)
once it holds more than twice their size, so replay at start-up is
proportional to the live data, not to every write ever made.

The cells belong to the node's event loop: every method but load() is called
on it, and nothing here takes a lock. Appends and compaction's rewrite go to
the disk worker (kvstore.storage.diskworker), and a write is applied in memory once
its append is durable. Compaction waits for the appends in flight and holds
new writes back while it snapshots and rewrites, so no write can fall between
the snapshot and the rewritten log.

Deletes and expiry: tombstones are cells like any other (they must travel to
replicas that missed the delete, or those would bring the value back).
Compaction turns expired values into tombstones and drops a tombstone only
when it is older than the grace period (gc_grace), judged by the clock's
earliest() (kvstore.core.clock) so a clock that runs ahead expires nothing
early, and a full repair of its range finished after it was written (the
`horizon`: ScyllaDB's tombstone_gc "repair" mode): until every replica is
known to hold it, a replica that missed the delete could bring the value back.

Every change of a key's cell is told to the hash trees range sync compares and to the byte sample
(kvstore.storage.watchers); after a replay they are built in the background (build_trees).

A cell stamped further ahead of this node's clock than the offset it believes
is refused (FROM_THE_FUTURE): held, it would beat every correctly stamped write
of its key until the clocks caught up with it.

Keys are also kept in a sorted index (sortedcontainers), for range scans.
"""
import asyncio
import gc
import logging

from sortedcontainers import SortedList

from kvstore.core.clock import Clock
from kvstore.core.cell import MalformedMutation, encode_mutation, newer, purge, replay_into
from kvstore.storage.records import RECORD_HEADER, RECORD_OVERHEAD
from kvstore.core.errors import CorruptLogError
from kvstore.core.tasks import settle
from kvstore.storage.watchers import Watchers

log = logging.getLogger(__name__)

COMPACT_MIN_BYTES = 64 * 2**20   # a log smaller than this is never worth rewriting
GC_GRACE_SECONDS = 10 * 24 * 3600  # how long a tombstone is kept (Cassandra's gc_grace_seconds)
FROM_THE_FUTURE = -1               # apply_all's answer for a cell refused: stamped too far ahead of the clock


class Storage:
    def __init__(self, commit_log, disk, background, compact_min_bytes=COMPACT_MIN_BYTES, gc_grace=GC_GRACE_SECONDS,
                 clock=None, trees=None, horizon=None, sample=None):
        """disk: the kvstore.storage.diskworker.DiskWorker its appends go through; background: the node's
        kvstore.core.tasks.Background, which runs compaction; clock: a kvstore.core.clock.Clock, which judges expiry
        (earliest) and which cells to admit; trees: told of every change (changed; begin_build, add_built), or None;
        horizon(): a function of a key, the stamp below which its range's tombstones are known to be on every
        replica (0: none is); None: every tombstone is (a store with no replicas, in tests); sample: a
        kvstore.storage.sample.ByteSample, told of every change as the trees are, or None."""
        self._log = commit_log
        self._disk = disk
        self._background = background
        self._clock = clock or Clock()
        self._cells = {}
        self._keys = SortedList()
        self._gc_grace_us = int(gc_grace * 1e6)
        self._live_bytes = 0        # what a compacted log of the current cells would hold
        self._compact_min_bytes = compact_min_bytes
        self._appending = 0         # appends in flight: a compaction waits for them
        self._open = asyncio.Event()   # cleared while a compaction snapshots and rewrites: writes wait
        self._open.set()
        self._held_back = []        # (mutations, done) of the writes that came while it was closed
        self._drained = asyncio.Event()
        self._compaction = None     # the compaction under way (a task, or a request's compact())
        self._watch = Watchers(trees, sample)
        self._horizon = horizon or (lambda: _EVERYTHING_REPAIRED)

    def load(self, skip_corrupt=False, holds=None):
        """Rebuild the cells from the log (before the node serves); returns how many records were replayed.
        holds(key): False for a key of a range this node no longer holds (a cleanup the log may still replay:
        dropped again here, so a crash after a cleanup never brings a dropped range back; None: keep them all)."""
        # Replay makes millions of objects and no cycles: the collector's full passes over them
        # would take longer than the replay itself.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._load(skip_corrupt, holds)
        finally:
            if collecting:
                gc.enable()

    def _load(self, skip_corrupt, holds):
        data, spans = self._log.replay_spans(skip_corrupt)
        cells = self._cells
        try:
            replay_into(cells, data, spans)
        except MalformedMutation as exc:
            raise CorruptLogError(self._log.path, exc.payload_offset - RECORD_HEADER, str(exc)) from None
        if holds is not None:
            dropped = [key for key in cells if not holds(key)]
            for key in dropped:
                del cells[key]
            if dropped:
                log.info("dropped %d keys of ranges this node no longer holds (cleaned up before)", len(dropped))
        self._keys = SortedList(cells)
        self._watch.begin_build()   # built by build_trees() once the node serves
        self._live_bytes = RECORD_OVERHEAD * len(cells) + sum(len(k) + len(c.value or b"") for k, c in cells.items())
        log.info("replayed %d records from %s: %d keys", len(spans), self._log.path, len(cells))
        return len(spans)

    async def apply(self, key, cell):
        """Make the write durable, then visible. Raises StorageError when it cannot."""
        return (await self.apply_all([(key, cell)]))[0]

    async def apply_all(self, mutations):
        """Apply many writes with one shared fsync. A write older than what is held is skipped. Returns, for
        each write, 0 when it is now the key's cell, the timestamp of the newer cell held instead, or
        FROM_THE_FUTURE when it was refused (stamped too far ahead of this node's clock)."""
        future = asyncio.get_running_loop().create_future()
        self.apply_all_then(mutations, lambda error, answers: settle(future, error, answers))
        return await future

    def apply_all_then(self, mutations, done):
        """apply_all without a coroutine: done(error, answers) is called on the loop once the writes are durable
        (a StorageError when they could not be), straight from the disk worker's completion: the write path of a
        request costs no task and no extra turn of the loop. The writes are applied right after done returns, in
        the same turn: nothing else on the loop can tell the difference, and a replica's answer goes out first."""
        if not self._open.is_set():   # a compaction is rewriting the log: this write waits for it
            self._held_back.append((mutations, done))
            return
        cells, admits = self._cells, self._clock.admits
        answers, fresh = [], []
        for key, cell in mutations:
            if not admits(cell.timestamp):
                answers.append(FROM_THE_FUTURE)
                continue
            held = cells.get(key)
            if held is None or newer(held, cell) is cell:
                fresh.append((key, cell))
                answers.append(0)
            else:   # the same cell again is no news; an older one is answered with the newer held
                answers.append(0 if held == cell else held.timestamp)
        refused = answers.count(FROM_THE_FUTURE)
        if refused:
            ahead = max(c.timestamp for _, c in mutations) - self._clock.read()
            log.warning("refused %d cells stamped up to %.3f s ahead of this node's clock, more than the %g s it "
                        "believes (--max-clock-offset)", refused, ahead / 1e6, self._clock.max_offset / 1e6)
        if not fresh:
            done(None, answers)
            return
        self._appending += 1
        self._disk.append(self._log, [encode_mutation(k, c) for k, c in fresh],
                          lambda error: self._appended(fresh, error, done, answers))

    def _appended(self, fresh, error, done, answers):
        self._appending -= 1
        if not self._appending:
            self._drained.set()
        try:   # done first, so that a replica's answer goes out before the merge
            done(error, None if error else answers)
        finally:   # in this same turn, so no read or write of this node runs in between
            if error is None:
                for key, cell in fresh:
                    self._merge(key, cell)
                self.maybe_compact()

    def _merge(self, key, cell):
        held = self._cells.get(key)
        winner = newer(held, cell)
        if winner is not held:
            if held is None:
                self._keys.add(key)
            self._cells[key] = winner
            self._watch.changed(key, held, winner)
            self._live_bytes += _record_size(key, winner) - (_record_size(key, held) if held else 0)

    def maybe_compact(self):
        """Start a compaction in the background if the log holds more than twice the live data."""
        if self._compaction is not None or self._log.size < max(self._compact_min_bytes, 2 * self._live_bytes):
            return
        if not self._background.stopping:
            self._background.spawn(self._compact_in_background(), "compaction")

    async def _compact_in_background(self):
        try:
            await self.compact()
        except Exception:  # a failed compaction leaves the old log in place; say so, never silently
            log.exception("compaction of %s failed", self._log.path)

    async def compact(self):
        """Rewrite the log as just the current cells (writes wait meanwhile): expired values become
        tombstones, tombstones past the grace period are dropped. Returns the tombstones dropped."""
        return (await self._compact(None))[0]

    async def cleanup(self, holds):
        """Drop every key with holds(key) False (of a range this node no longer holds) and compact, so the log
        forgets them too (until it has, load drops them again); returns how many keys were dropped."""
        return (await self._compact(holds))[1]

    async def _compact(self, holds):
        while self._compaction is not None:
            await self._compaction
        self._compaction = asyncio.get_running_loop().create_future()
        self._open.clear()
        try:
            while self._appending:
                self._drained.clear()
                await self._drained.wait()
            before = self._log.size
            cleaned = [] if holds is None else [key for key in self._cells if not holds(key)]
            if cleaned:
                for key in cleaned:
                    self._watch.changed(key, self._cells.pop(key), None)
                    self._keys.remove(key)
            snapshot = list(self._cells.items())
            items, changed, dropped = await self._disk.run(_rewrite, self._log, snapshot, self._clock.earliest(),
                                                           self._gc_grace_us, self._horizon())
            for key, cell in changed:   # memory holds what the log now holds
                self._watch.changed(key, self._cells[key], cell)
                self._cells[key] = cell
            for key in dropped:
                self._watch.changed(key, self._cells.pop(key), None)
                self._keys.remove(key)
            self._live_bytes = sum(_record_size(k, c) for k, c in items)
        finally:
            self._open.set()
            self._compaction.set_result(None)
            self._compaction = None
            held_back, self._held_back = self._held_back, []
            for mutations, done in held_back:
                self.apply_all_then(mutations, done)
        log.info("compacted %s: %d -> %d bytes (%d keys, %d tombstones past grace dropped%s)",
                 self._log.path, before, self._log.size, len(items), len(dropped),
                 f", {len(cleaned)} keys of ranges no longer held dropped" if cleaned else "")
        return len(dropped), len(cleaned)

    async def build_trees(self):
        """Build the trees and the sample from the cells, in the background (kvstore.storage.watchers)."""
        await self._watch.build(self._keys, self._cells, lambda: self._background.stopping)

    def get(self, key):
        """The key's cell as stored: a value, an expiring value (perhaps expired) or a tombstone."""
        return self._cells.get(key)

    def scan(self, start, end, limit):
        """[(key, cell)] for keys in [start, end) in byte order (end None: no bound), at most limit,
        tombstones and expired cells included: the coordinator needs them to merge replicas."""
        keys = []
        for key in self._keys.irange(start, end, inclusive=(True, False)):
            if len(keys) >= limit:
                break
            keys.append(key)
        return [(key, self._cells[key]) for key in keys]

    def items(self):
        """A snapshot of (key, cell), sorted by key (the key index is already in order)."""
        return [(key, self._cells[key]) for key in self._keys]

    def __len__(self):
        return len(self._cells)

    @property
    def log_bytes(self):
        """Bytes of the commit log that hold records."""
        return self._log.size

    @property
    def log_file_bytes(self):
        """The commit log file's size on disk (allocated ahead of its records)."""
        return self._log.file_bytes

    @property
    def log_counters(self):
        """(records appended, fsyncs) since start."""
        return self._log.records_written, self._log.fsync_count

    def close(self):
        """Close the log (once the disk worker has stopped: nothing writes to it any more)."""
        self._log.close()


def _rewrite(commit_log, snapshot, now, gc_grace_us, horizon):
    """On the disk worker: the cells after purging (expired values as tombstones, old tombstones dropped once
    their range was repaired after them), written as the new log. Returns (kept items, the cells purging
    changed, the keys dropped)."""
    items, changed, dropped = [], [], []
    for key, cell in snapshot:
        never_purged = cell.value is not None and not cell.expires   # a live value without a ttl
        kept = purge(cell, now, gc_grace_us, repaired=never_purged or cell.timestamp < horizon(key))
        if kept is None:
            dropped.append(key)
            continue
        items.append((key, kept))
        if kept is not cell:
            changed.append((key, kept))
    commit_log.rewrite([encode_mutation(k, c) for k, c in items])
    return items, changed, dropped


def _record_size(key, cell):
    return RECORD_OVERHEAD + len(key) + len(cell.value or b"")


def _EVERYTHING_REPAIRED(key):
    return 2**63
