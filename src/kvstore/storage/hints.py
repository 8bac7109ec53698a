"""Hints: writes a coordinator holds for a replica that was down or did not answer.

One commit log per target node (hints-<id>.log), so a target's hints replay in
the order they were made. The hints belong to the node's event loop; their
appends, checkpoints and rewrites go to the disk worker (kvstore.storage.diskworker),
where appends to one target's log share one fsync, as the commit log's do.
Invariants: a hint is durable when add() returns; it counts as gone only after
the target acknowledged it (delivered()) or it passed the window (hints older
than the window are dropped with a log line, as Cassandra's max_hint_window).
The window is judged by the clock (kvstore.core.clock): a hint is dated by its
latest(), its age by its earliest(), so a wrong clock never drops one early.

Delivery never rewrites the log. Hints go out oldest first, so what is gone is
always a prefix of the log: its length is the target's checkpoint
(hints-<id>.delivered, one number, replaced atomically and fsynced). Once every
hint in the log is gone, the log is emptied; while hints keep coming, it is
compacted (rewritten as the hints still held) once what is gone outnumbers
them, so each hint is rewritten a bounded number of times on average and
delivery takes time linear in the hints. A checkpoint lost or damaged counts
as 0: hints are delivered again, which is harmless (a replica keeps the newer
of two cells).
"""
import asyncio
import bisect
import logging
import os
import re
import struct
from dataclasses import dataclass

from kvstore.core.cell import Cell, decode_mutation, encode_mutation
from kvstore.core.clock import Clock
from kvstore.storage.commitlog import CommitLog, replace_file
from kvstore.core.errors import CorruptLogError, StorageError
from kvstore.storage.records import RECORD_HEADER

log = logging.getLogger(__name__)

_CREATED = struct.Struct("!q")
_FILE_NAME = re.compile(r"^hints-(\d+)\.log$")


@dataclass(frozen=True)
class Hint:
    key: bytes
    cell: Cell
    created: float   # seconds since the epoch, when the coordinator stored it
    number: int = 0  # its place in the target's log: 0 for the first record


class HintStore:
    def __init__(self, directory, window, disk, clock=None, make_log=CommitLog, sync=None):
        """window: seconds a hint is kept; disk: the kvstore.storage.diskworker.DiskWorker that writes its files;
        clock: a kvstore.core.clock.Clock, which dates hints and judges them; sync: how a checkpoint is made
        durable."""
        self._directory = str(directory)
        self._window = window
        self._disk = disk
        self._clock = clock or Clock()
        self._make_log = make_log
        self._sync = sync
        self._targets = {}

    def load(self, skip_corrupt=False):
        """Replay every hint log in the directory; returns the number of hints held."""
        os.makedirs(self._directory, exist_ok=True)
        for name in sorted(os.listdir(self._directory)):
            match = _FILE_NAME.match(name)
            if match:
                self._target(int(match.group(1)), skip_corrupt)
        total = sum(len(t.hints) for t in self._targets.values())
        if total:
            log.info("holding %d hints for nodes %s", total, sorted(n for n, t in self._targets.items() if t.hints))
        return total

    def _target(self, node_id, skip_corrupt=False):
        if node_id not in self._targets:
            self._targets[node_id] = self._open(node_id, skip_corrupt)
        return self._targets[node_id]

    def _open(self, node_id, skip_corrupt=False):
        """The target's hints, its log opened and replayed (at start, or on the disk worker when a first hint
        for it comes)."""
        path = os.path.join(self._directory, f"hints-{node_id}.log")
        return _TargetHints(node_id, self._make_log(path), skip_corrupt, self._sync, self._disk)

    async def add(self, target, key, cell):
        """Store a hint durably. Raises StorageError when it cannot."""
        created = self._clock.latest() / 1e6
        try:
            if target not in self._targets:   # a first hint for it: its log is opened off the loop
                opened = await self._disk.run(self._open, target)
                self._targets.setdefault(target, opened)
        except OSError as exc:   # its log could not even be opened
            raise StorageError(f"cannot store a hint for node {target}: {exc.strerror or exc}") from exc
        await self._targets[target].add(key, cell, created)
        log.debug("stored hint for node %d", target)

    async def pending(self, target, limit=None):
        """The hints for target (the `limit` oldest), oldest first, after dropping those past the window."""
        hints = self._targets.get(target)
        if hints is None:
            return []
        expired = await hints.drop_older_than(self._clock.earliest() / 1e6 - self._window)
        if expired:
            log.warning("dropping %d hints for node %d older than the hint window (%.0f s); the next repair of "
                        "its ranges brings that replica up to date (automatic, or ./server.sh repair)",
                        expired, target, self._window)
        return hints.hints[:limit]

    async def delivered(self, target, hints):
        """The target acknowledged these hints (the oldest pending ones): forget them, durably."""
        if hints:
            await self._targets[target].forget_through(hints[-1].number)

    def counts(self):
        """{target node id: pending hints}, only targets with some."""
        return {n: len(t.hints) for n, t in list(self._targets.items()) if t.hints}

    def has_pending(self, target):
        hints = self._targets.get(target)
        return bool(hints and hints.hints)

    @property
    def bytes_on_disk(self):
        return sum(t.log.size for t in list(self._targets.values()))

    def close(self):
        for hints in list(self._targets.values()):
            hints.log.close()


class _TargetHints:
    """One target's hints: its log, the hints still held (in log order) and the checkpoint. Built (its log
    replayed) at start or on the disk worker; used on the loop."""

    def __init__(self, node_id, commit_log, skip_corrupt, sync, disk):
        self.node_id = node_id
        self.log = commit_log
        self._disk = disk
        self._checkpoint = _Checkpoint(commit_log.path[:-len(".log")] + ".delivered", sync)
        self._appending = 0   # appends queued on the disk worker: the log is not rewritten under them
        self._moving = None   # a rewrite or checkpoint under way (a future): one at a time
        data, spans = commit_log.replay_spans(skip_corrupt)   # opens the log (a new one when there is none)
        self.records = len(spans)
        gone = self._checkpoint.load(self.records)
        self.hints = []
        self._oldest = float("inf")   # at most the oldest `created` held: no hint can expire before it
        for number, (start, end) in enumerate(spans[gone:], gone):
            try:
                created_us, = _CREATED.unpack_from(data, start)
                key, cell, _ = decode_mutation(data[start:end], _CREATED.size)
            except (ValueError, struct.error) as exc:
                raise CorruptLogError(commit_log.path, start - RECORD_HEADER, str(exc)) from None
            self.hints.append(Hint(key, cell, created_us / 1e6, number))
            self._oldest = min(self._oldest, created_us / 1e6)

    async def add(self, key, cell, created):
        hint = Hint(key, cell, created)
        appended = self._disk.append(self.log, [_encode(hint)])
        self._appending += 1
        # Numbered when durable: the disk worker completes a log's appends in its order, and the loop runs
        # these callbacks in the order they were completed, so the list stays in the log's order.
        appended.add_done_callback(lambda future: self._appended(hint, future))
        await asyncio.shield(appended)   # a request given up on leaves the hint listed all the same

    def _appended(self, hint, future):
        self._appending -= 1
        if future.cancelled() or future.exception() is not None:
            return
        self.hints.append(Hint(hint.key, hint.cell, hint.created, self.records))
        self.records += 1
        self._oldest = min(self._oldest, hint.created)

    async def drop_older_than(self, cutoff):
        if self._oldest >= cutoff:   # the common case, without looking at every hint
            return 0
        kept = [h for h in self.hints if h.created >= cutoff]
        dropped = len(self.hints) - len(kept)
        self._oldest = min((h.created for h in kept), default=float("inf"))
        if dropped:
            self.hints = kept
            await self._moved()
        return dropped

    async def forget_through(self, number):
        del self.hints[:bisect.bisect_right(self.hints, number, key=lambda h: h.number)]
        await self._moved()

    async def _moved(self):
        """After hints went: empty the log when none is left, compact it when most are gone, else move the
        checkpoint; one at a time, on the disk worker. The log is rewritten only while no append to it is
        queued (the rewrite would drop it): meanwhile the checkpoint moves instead."""
        while self._moving is not None:
            await self._moving
        self._moving = asyncio.get_running_loop().create_future()
        gone = self.hints[0].number if self.hints else self.records
        try:
            if self._appending or (self.hints and gone <= len(self.hints)):
                await self._disk.run(self._checkpoint.save, gone)
            else:   # the checkpoint first: a crash between delivers some again, loses none
                first = gone
                await self._disk.run(self._rewrite, [_encode(h) for h in self.hints])
                # The rewritten log starts at what was hint `first`; an append queued after the rewrite is
                # completed after it, and numbered after this.
                self.hints = [Hint(h.key, h.cell, h.created, h.number - first) for h in self.hints]
                self.records -= first
        except StorageError as exc:   # nothing lost: those hints are delivered again after a restart
            log.warning("could not record the hints delivered to node %d: %s", self.node_id, exc)
        finally:
            self._moving.set_result(None)
            self._moving = None

    def _rewrite(self, records):
        """On the disk worker: the log as just these records (none: emptied), the checkpoint at 0 before and
        after (a crash between: an empty log and a checkpoint past it are read as 0)."""
        if records:
            self._checkpoint.save(0)
        self.log.rewrite(records)
        self._checkpoint.save(0)


class _Checkpoint:
    """How many of a hint log's first records are gone (delivered or past the window)."""

    def __init__(self, path, sync):
        self.path = path
        self._sync = sync

    def load(self, records):
        try:
            with open(self.path, encoding="ascii") as f:
                text = f.read().strip()
        except FileNotFoundError:
            return 0
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("cannot read %s (%s): delivering every hint in its log again", self.path, exc)
            return 0
        if text.isdigit() and not records:   # emptied, then a crash before the checkpoint was reset
            return 0
        if not text.isdigit() or int(text) > records:
            log.warning("%s holds %r, not a count of at most the %d hints in its log: delivering every hint "
                        "again", self.path, text[:40], records)
            return 0
        return int(text)

    def save(self, gone):
        try:   # the rename need not be durable: an older checkpoint only delivers some hints again
            replace_file(self.path, b"%d\n" % gone, self._sync, sync_directory=False)
        except OSError as exc:
            raise StorageError(f"cannot write {self.path}: {exc.strerror or exc}") from exc


def _encode(hint):
    return _CREATED.pack(int(hint.created * 1e6)) + encode_mutation(hint.key, hint.cell)
