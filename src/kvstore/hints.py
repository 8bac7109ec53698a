"""Hints: writes a coordinator holds for a replica that was down or did not answer.

One commit log per target node (hints-<id>.log), so a target's hints replay in
the order they were made. Invariants: a hint is durable when add() returns; it
leaves the log only after the target acknowledged it (delivered()); hints older
than the window are dropped with a log line, as Cassandra's max_hint_window.
The window is judged by the clock (kvstore.clock): a hint is dated by its
latest(), its age by its earliest(), so a wrong clock never drops one early.
"""
import logging
import os
import re
import struct
import threading
from dataclasses import dataclass

from kvstore.cell import Cell, decode_mutation, encode_mutation
from kvstore.clock import Clock
from kvstore.commitlog import CommitLog
from kvstore.errors import CorruptLogError

log = logging.getLogger(__name__)

_CREATED = struct.Struct("!q")
_FILE_NAME = re.compile(r"^hints-(\d+)\.log$")


@dataclass(frozen=True)
class Hint:
    key: bytes
    cell: Cell
    created: float  # seconds since the epoch, when the coordinator stored it


class HintStore:
    def __init__(self, directory, window, clock=None, make_log=CommitLog):
        """window: seconds a hint is kept; clock: a kvstore.clock.Clock, which dates hints and judges them."""
        self._directory = str(directory)
        self._window = window
        self._clock = clock or Clock()
        self._make_log = make_log
        self._logs = {}
        self._pending = {}
        self._lock = threading.Lock()

    def load(self, skip_corrupt=False):
        """Replay every hint log in the directory; returns the number of hints held."""
        os.makedirs(self._directory, exist_ok=True)
        for name in sorted(os.listdir(self._directory)):
            match = _FILE_NAME.match(name)
            if match:
                self._load_target(int(match.group(1)), skip_corrupt)
        total = sum(len(h) for h in self._pending.values())
        if total:
            log.info("holding %d hints for nodes %s", total, sorted(t for t, h in self._pending.items() if h))
        return total

    def _load_target(self, target, skip_corrupt):
        commit_log = self._log_for(target)
        hints = []
        for index, payload in enumerate(commit_log.replay(skip_corrupt)):
            try:
                created_us, = _CREATED.unpack_from(payload)
                key, cell, _ = decode_mutation(payload, _CREATED.size)
            except (ValueError, struct.error) as exc:
                raise CorruptLogError(commit_log.path, f"record #{index}", str(exc)) from None
            hints.append(Hint(key, cell, created_us / 1e6))
        self._pending[target] = hints

    def _log_for(self, target):
        if target not in self._logs:
            self._logs[target] = self._make_log(os.path.join(self._directory, f"hints-{target}.log"))
        return self._logs[target]

    def add(self, target, key, cell):
        """Store a hint durably. Raises StorageError when it cannot."""
        hint = Hint(key, cell, self._clock.latest() / 1e6)
        # One lock across the append and the list: a concurrent rewrite in
        # _remove must never drop a record that memory still holds.
        with self._lock:
            if target not in self._pending:
                self._log_for(target).replay()  # opens a fresh log
                self._pending[target] = []
            self._logs[target].append(_encode(hint))
            self._pending[target].append(hint)
        log.debug("stored hint for node %d", target)

    def pending(self, target):
        """The hints for target, oldest first, after dropping those past the window."""
        with self._lock:
            hints = self._pending.get(target, [])
            cutoff = self._clock.earliest() / 1e6 - self._window
            expired = sum(1 for h in hints if h.created < cutoff)
        if expired:
            log.warning("dropping %d hints for node %d older than the hint window (%.0f s); "
                        "repair that replica by reading its keys at QUORUM", expired, target, self._window)
            self._remove(target, lambda h: h.created < cutoff)
        with self._lock:
            return list(self._pending.get(target, []))

    def delivered(self, target, hints):
        """The target acknowledged these hints: forget them, durably."""
        done = set(map(id, hints))
        self._remove(target, lambda h: id(h) in done)

    def _remove(self, target, drop):
        with self._lock:
            keep = [h for h in self._pending.get(target, []) if not drop(h)]
            self._pending[target] = keep
            self._logs[target].rewrite([_encode(h) for h in keep])

    def counts(self):
        """{target node id: pending hints}, only targets with some."""
        with self._lock:
            return {t: len(h) for t, h in self._pending.items() if h}

    def has_pending(self, target):
        return bool(self._pending.get(target))

    @property
    def bytes_on_disk(self):
        return sum(commit_log.size for commit_log in self._logs.values())

    def close(self):
        for commit_log in self._logs.values():
            commit_log.close()


def _encode(hint):
    return _CREATED.pack(int(hint.created * 1e6)) + encode_mutation(hint.key, hint.cell)
