"""A replica's cells: held in memory, made durable through the commit log, compacted as it grows.

Invariants: a cell is visible to reads only after its record is fsynced, so
nothing a read returns can be lost by a crash. Writes merge by last-write-wins,
so the order in which concurrent writes reach the log does not matter: replay
gives the same state. The log is rewritten from the live cells (compaction)
once it holds more than twice their size, so replay at start-up is
proportional to the live data, not to every write ever made. Writers share a
gate across append-and-apply; compaction closes it, so no write can fall
between the snapshot and the rewritten log.

Deletes and expiry: tombstones are cells like any other (they must travel to
replicas that missed the delete, or those would bring the value back).
Compaction turns expired values into tombstones and drops tombstones older
than the grace period (gc_grace), and only then, judged by the clock's
earliest() (kvstore.clock), so a clock that runs ahead expires nothing early.

A cell stamped further ahead of this node's clock than the offset it believes
is refused (FROM_THE_FUTURE): held, it would beat every correctly stamped write
of its key until the clocks caught up with it.

Keys are also kept in a sorted index (sortedcontainers), for range scans.
"""
import gc
import logging
import threading

from sortedcontainers import SortedList

from kvstore.clock import Clock
from kvstore.cell import MalformedMutation, encode_mutation, newer, purge, replay_into
from kvstore.records import RECORD_HEADER, RECORD_OVERHEAD
from kvstore.errors import CorruptLogError

log = logging.getLogger(__name__)

COMPACT_MIN_BYTES = 64 * 2**20   # a log smaller than this is never worth rewriting
GC_GRACE_SECONDS = 10 * 24 * 3600  # how long a tombstone is kept (Cassandra's gc_grace_seconds)
FROM_THE_FUTURE = -1               # apply_all's answer for a cell refused: stamped too far ahead of the clock


class Storage:
    def __init__(self, commit_log, compact_min_bytes=COMPACT_MIN_BYTES, gc_grace=GC_GRACE_SECONDS, clock=None):
        """clock: a kvstore.clock.Clock, which judges expiry (earliest) and which cells to admit."""
        self._log = commit_log
        self._clock = clock or Clock()
        self._cells = {}
        self._keys = SortedList()
        self._gc_grace_us = int(gc_grace * 1e6)
        self._lock = threading.Lock()
        self._gate = _Gate()
        self._live_bytes = 0        # what a compacted log of the current cells would hold
        self._compact_min_bytes = compact_min_bytes
        self._compacting = False
        self._compaction_lock = threading.Lock()  # one rewrite at a time
        self._compaction = None                   # the background compaction's thread, joined by close()

    def load(self, skip_corrupt=False):
        """Rebuild the cells from the log; returns how many records were replayed."""
        # Replay makes millions of objects and no cycles: the collector's full passes over them
        # would take longer than the replay itself.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._load(skip_corrupt)
        finally:
            if collecting:
                gc.enable()

    def _load(self, skip_corrupt):
        data, spans = self._log.replay_spans(skip_corrupt)
        cells = self._cells
        try:
            replay_into(cells, data, spans)
        except MalformedMutation as exc:
            raise CorruptLogError(self._log.path, exc.payload_offset - RECORD_HEADER, str(exc)) from None
        self._keys = SortedList(cells)
        self._live_bytes = RECORD_OVERHEAD * len(cells) + sum(len(k) + len(c.value or b"") for k, c in cells.items())
        log.info("replayed %d records from %s: %d keys", len(spans), self._log.path, len(cells))
        self._maybe_compact()
        return len(spans)

    def apply(self, key, cell):
        """Make the write durable, then visible. Raises StorageError when it cannot."""
        self.apply_all([(key, cell)])

    def apply_all(self, mutations):
        """Apply many writes with one shared fsync. A write older than what is held is skipped. Returns, for
        each write, 0 when it is now the key's cell, the timestamp of the newer cell held instead, or
        FROM_THE_FUTURE when it was refused (stamped too far ahead of this node's clock)."""
        admitted = [self._clock.admits(c.timestamp) for _, c in mutations]
        if not all(admitted):
            ahead = max(c.timestamp for _, c in mutations) - self._clock.read()
            log.warning("refused %d cells stamped up to %.3f s ahead of this node's clock, more than the %g s it "
                        "believes (--max-clock-offset)", admitted.count(False), ahead / 1e6,
                        self._clock.max_offset / 1e6)
        self._gate.enter()
        try:
            held = [self._cells.get(k) for k, _ in mutations]
            fresh = [(k, c) for (k, c), old, ok in zip(mutations, held, admitted) if ok and newer(old, c) is c]
            if fresh:
                self._log.append_all([encode_mutation(k, c) for k, c in fresh])
                for key, cell in fresh:
                    self._merge(key, cell)
        finally:
            self._gate.leave()
        if fresh:
            self._maybe_compact()
        return [FROM_THE_FUTURE if not ok else 0 if old is None or old == c or newer(old, c) is c else old.timestamp
                for (_, c), old, ok in zip(mutations, held, admitted)]

    def _merge(self, key, cell):
        with self._lock:
            held = self._cells.get(key)
            winner = newer(held, cell)
            if winner is not held:
                if held is None:
                    self._keys.add(key)
                self._cells[key] = winner
                self._live_bytes += _record_size(key, winner) - (_record_size(key, held) if held else 0)

    def _maybe_compact(self):
        if self._log.size < max(self._compact_min_bytes, 2 * self._live_bytes):
            return
        with self._lock:
            if self._compacting:
                return
            self._compacting = True
            self._compaction = threading.Thread(target=self._compact_in_background, name="compaction", daemon=True)
            self._compaction.start()

    def _compact_in_background(self):
        try:
            self.compact()
        except Exception:  # a failed compaction leaves the old log in place; say so, never silently
            log.exception("compaction of %s failed", self._log.path)
        finally:
            with self._lock:
                self._compacting = False

    def compact(self):
        """Rewrite the log as just the current cells (writes wait meanwhile): expired values become
        tombstones, tombstones past the grace period are dropped. Returns the tombstones dropped."""
        with self._compaction_lock:
            self._gate.close()
            try:
                before = self._log.size
                now = self._clock.earliest()
                with self._lock:
                    items, changed, dropped = [], [], []
                    for key, cell in self._cells.items():
                        kept = purge(cell, now, self._gc_grace_us)
                        if kept is None:
                            dropped.append(key)
                            continue
                        items.append((key, kept))
                        if kept is not cell:
                            changed.append((key, kept))
                self._log.rewrite([encode_mutation(k, c) for k, c in items])
                with self._lock:  # memory holds what the log now holds
                    self._cells.update(changed)
                    for key in dropped:
                        del self._cells[key]
                        self._keys.remove(key)
                    self._live_bytes = sum(_record_size(k, c) for k, c in items)
            finally:
                self._gate.open()
            log.info("compacted %s: %d -> %d bytes (%d keys, %d tombstones past grace dropped)",
                     self._log.path, before, self._log.size, len(items), len(dropped))
            return len(dropped)

    def get(self, key):
        """The key's cell as stored: a value, an expiring value (perhaps expired) or a tombstone."""
        return self._cells.get(key)

    def scan(self, start, end, limit):
        """[(key, cell)] for keys in [start, end) in byte order (end None: no bound), at most limit,
        tombstones and expired cells included: the coordinator needs them to merge replicas."""
        with self._lock:
            keys = []
            for key in self._keys.irange(start, end, inclusive=(True, False)):
                if len(keys) >= limit:
                    break
                keys.append(key)
            return [(key, self._cells[key]) for key in keys]

    def items(self):
        """A snapshot of (key, cell), sorted by key (the key index is already in order)."""
        with self._lock:
            return [(key, self._cells[key]) for key in self._keys]

    def __len__(self):
        return len(self._cells)

    @property
    def log_bytes(self):
        return self._log.size

    @property
    def log_counters(self):
        """(records appended, fsyncs) since start."""
        return self._log.records_written, self._log.fsync_count

    def close(self):
        """Close the log, once a compaction under way has finished."""
        if self._compaction is not None:
            self._compaction.join()
        self._log.close()


def _record_size(key, cell):
    return RECORD_OVERHEAD + len(key) + len(cell.value or b"")


class _Gate:
    """Many writers may be inside at once; close() waits for them to leave and keeps new ones out."""

    def __init__(self):
        self._cond = threading.Condition()
        self._inside = 0
        self._closed = False

    def enter(self):
        with self._cond:
            while self._closed:
                self._cond.wait()
            self._inside += 1

    def leave(self):
        with self._cond:
            self._inside -= 1
            if self._inside == 0:
                self._cond.notify_all()

    def close(self):
        with self._cond:
            self._closed = True
            while self._inside:
                self._cond.wait()

    def open(self):
        with self._cond:
            self._closed = False
            self._cond.notify_all()
