"""A replica's cells: held in memory, made durable through the commit log.

Invariant: a cell is visible to reads only after its record is fsynced, so
nothing a read returns can be lost by a crash. Writes merge by last-write-wins,
so the order in which concurrent writes reach the log does not matter: replay
gives the same state.
"""
import logging
import threading

from kvstore.cell import decode_mutation, encode_mutation, newer
from kvstore.errors import CorruptLogError

log = logging.getLogger(__name__)


class Storage:
    def __init__(self, commit_log):
        self._log = commit_log
        self._cells = {}
        self._lock = threading.Lock()

    def load(self, skip_corrupt=False):
        """Rebuild the cells from the log; returns how many records were replayed."""
        payloads = self._log.replay(skip_corrupt)
        for index, payload in enumerate(payloads):
            try:
                key, cell, _ = decode_mutation(payload)
            except ValueError as exc:
                raise CorruptLogError(self._log.path, f"record #{index}", str(exc)) from None
            self._merge(key, cell)
        log.info("replayed %d records from %s: %d keys", len(payloads), self._log.path, len(self._cells))
        return len(payloads)

    def apply(self, key, cell):
        """Make the write durable, then visible. Raises StorageError when it cannot."""
        self.apply_all([(key, cell)])

    def apply_all(self, mutations):
        """Apply many writes with one shared fsync. A write older than what is held is skipped."""
        fresh = [(k, c) for k, c in mutations if newer(self._cells.get(k), c) is c]
        if not fresh:
            return
        self._log.append_all([encode_mutation(k, c) for k, c in fresh])
        for key, cell in fresh:
            self._merge(key, cell)

    def _merge(self, key, cell):
        with self._lock:
            self._cells[key] = newer(self._cells.get(key), cell)

    def get(self, key):
        return self._cells.get(key)

    def items(self):
        """A snapshot of (key, cell), sorted by key."""
        with self._lock:
            return sorted(self._cells.items())

    def __len__(self):
        return len(self._cells)

    @property
    def log_bytes(self):
        return self._log.size

    def close(self):
        self._log.close()
