"""The coordinator: how one node serves a client's put or get for the whole ring.

A write: find the key's replicas; if fewer are alive than the level needs,
raise Unavailable and write nothing; otherwise stamp the cell, queue it for
every live remote replica (their channels send it, coalesced with other
requests), write the local replica in this thread, hint the replicas that are
down, and answer as soon as `block_for` replicas acknowledged. Replicas that
fail or miss the deadline get a hint too, after the answer if need be. No
thread waits on a peer on the request's behalf: outcomes arrive as callbacks.

A read: ask every live replica at once, answer from the first `block_for`
answers with the newest cell (last write wins). Replicas among those that were
stale or missing the key are written the newest cell before the answer
(blocking read repair), so a later QUORUM read cannot see an older value;
replicas that answer late are repaired in the background.

Every request has one deadline, set when it arrives and passed down the fan-out.
"""
import logging
import threading
import time
from dataclasses import dataclass

from kvstore.cell import Cell, reconcile
from kvstore.consistency import block_for
from kvstore.errors import ConnectFailed, StorageError, TimedOut, Unavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteOutcome:
    timestamp: int
    acknowledged: list
    hinted: list


@dataclass(frozen=True)
class ReadOutcome:
    cell: Cell
    answered: list
    repaired: list


class Responses:
    """Answers from replicas as they arrive; wait() returns once enough are in, or all, or the deadline."""

    def __init__(self, needed, expected):
        self.needed = needed
        self.expected = expected
        self.answers = []   # (node_id, result), in order of arrival
        self.failures = {}  # node_id -> reason
        self._cond = threading.Condition()
        self._when_complete = None

    def ok(self, node_id, result=None):
        with self._cond:
            self.answers.append((node_id, result))
            self._cond.notify_all()
            callback = self._take_callback_if_complete()
        if callback:
            callback(list(self.answers))

    def fail(self, node_id, reason):
        with self._cond:
            self.failures[node_id] = reason
            self._cond.notify_all()
            callback = self._take_callback_if_complete()
        if callback:
            callback(list(self.answers))

    def when_complete(self, callback):
        """Call callback(answers) once every expected replica has answered or failed: now, if they
        all have, else in the thread that brings the last one. No thread waits for it."""
        with self._cond:
            self._when_complete = callback
            callback = self._take_callback_if_complete()
        if callback:
            callback(list(self.answers))

    def _take_callback_if_complete(self):
        if self._when_complete is None or len(self.answers) + len(self.failures) < self.expected:
            return None
        callback, self._when_complete = self._when_complete, None
        return callback

    def wait(self, deadline, needed=None):
        """True once `needed` (default: the level's) answers are in; False if that can no longer happen."""
        needed = self.needed if needed is None else needed
        with self._cond:
            while len(self.answers) < needed and len(self.answers) + len(self.failures) < self.expected:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return len(self.answers) >= needed

    def snapshot(self):
        with self._cond:
            return list(self.answers), dict(self.failures)


class Coordinator:
    def __init__(self, local_id, ring, replicas, detector, hints, clock, timeout):
        """replicas: {node_id: LocalReplica or RemoteReplica}, each with write_async and read_async."""
        self._local_id = local_id
        self._ring = ring
        self._replicas = replicas
        self._detector = detector
        self._hints = hints
        self._clock = clock
        self._timeout = timeout

    def _plan(self, key, level):
        """(live replica ids, down replica ids, answers needed); Unavailable if too few are alive."""
        ids = [node.node_id for node in self._ring.replicas_for(key)]
        needed = block_for(level, len(ids))
        alive = [i for i in ids if self._detector.is_up(i)]
        if len(alive) < needed:
            raise Unavailable(len(alive), needed, level.name, len(ids))
        # The local replica goes last: remote requests are queued first, then it runs in this thread.
        alive.sort(key=lambda i: i == self._local_id)
        return alive, [i for i in ids if i not in alive], needed

    # ---- writes ----

    def put(self, key, value, level):
        deadline = time.monotonic() + self._timeout
        alive, down, needed = self._plan(key, level)
        cell = Cell(value, self._clock.now())
        responses = Responses(needed, len(alive))
        for node_id in alive:
            self._write_to(node_id, key, cell, deadline, responses)
        for node_id in down:
            self._store_hint(node_id, key, cell)
        if not responses.wait(deadline):
            acked, failures = responses.snapshot()
            raise TimedOut(_write_failure_message(level, len(acked), needed, failures), len(acked), needed)
        acked, _ = responses.snapshot()
        return WriteOutcome(cell.timestamp, [node_id for node_id, _ in acked], down)

    def _write_to(self, node_id, key, cell, deadline, responses):
        """Send one write; its outcome lands in responses, and a remote replica that missed it gets a hint."""
        def done(error, _):
            if error is None:
                responses.ok(node_id)
                return
            self._note_failure(node_id, error)
            responses.fail(node_id, str(error))
            if node_id != self._local_id:
                self._store_hint(node_id, key, cell)
        self._replicas[node_id].write_async(key, cell, deadline, done)

    def _note_failure(self, node_id, error):
        if isinstance(error, ConnectFailed):  # refused: it is down. A slow answer proves nothing.
            self._detector.mark_down(node_id, str(error))

    def _store_hint(self, node_id, key, cell):
        try:
            self._hints.add(node_id, key, cell)
        except StorageError as exc:
            log.error("could not store a hint for node %d: %s", node_id, exc)

    # ---- reads ----

    def get(self, key, level):
        deadline = time.monotonic() + self._timeout
        alive, _, needed = self._plan(key, level)
        responses = Responses(needed, len(alive))
        for node_id in alive:
            self._read_from(node_id, key, deadline, responses)
        if not responses.wait(deadline):
            answered, failures = responses.snapshot()
            raise TimedOut(f"{level.name} read needs {needed} replicas, {len(answered)} answered in time"
                           + _reasons(failures), len(answered), needed)
        answers, _ = responses.snapshot()
        newest = reconcile(cell for _, cell in answers)
        repaired = self._repair(key, newest, answers, needed, level, deadline)
        used = {node_id for node_id, _ in answers}
        responses.when_complete(lambda everyone: self._repair_late(key, everyone, used, newest))
        return ReadOutcome(newest, [node_id for node_id, _ in answers], repaired)

    def _read_from(self, node_id, key, deadline, responses):
        def done(error, cell):
            if error is None:
                responses.ok(node_id, cell)
            else:
                self._note_failure(node_id, error)
                responses.fail(node_id, str(error))
        self._replicas[node_id].read_async(key, deadline, done)

    def _repair(self, key, newest, answers, needed, level, deadline):
        """Write newest to the stale replicas among answers; wait until `needed` replicas hold it."""
        stale = [node_id for node_id, cell in answers if cell != newest]
        if newest is None or not stale:
            return []
        log.debug("read repair of %r on nodes %s", key, stale)
        responses = Responses(len(stale), len(stale))
        for node_id in sorted(stale, key=lambda i: i == self._local_id):
            self._write_to(node_id, key, newest, deadline, responses)
        holding = len(answers) - len(stale)
        if not responses.wait(deadline, needed=max(0, needed - holding)):
            repaired, failures = responses.snapshot()
            raise TimedOut(f"{level.name} read found stale replicas and could not repair enough of them in time"
                           + _reasons(failures), holding + len(repaired), needed)
        repaired, _ = responses.snapshot()
        return [node_id for node_id, _ in repaired]

    def _repair_late(self, key, everyone, used, answered_newest):
        """Once every replica has answered, repair those that differ from the newest cell of all.
        The answers the client got were repaired before it got them, unless a late answer is newer."""
        newest = reconcile(cell for _, cell in everyone)
        stale = [node_id for node_id, cell in everyone
                 if cell != newest and (node_id not in used or newest != answered_newest)]
        if stale:
            log.debug("background read repair of %r on nodes %s", key, stale)
            deadline = time.monotonic() + self._timeout
            for node_id in stale:  # a failure leaves a hint, like any write
                self._write_to(node_id, key, newest, deadline, Responses(0, 1))


def _reasons(failures):
    if not failures:
        return ""
    return " (" + "; ".join(f"node {n}: {why}" for n, why in sorted(failures.items())) + ")"


def _write_failure_message(level, acked, needed, failures):
    return (f"{level.name} write needs {needed} acknowledgements, got {acked}{_reasons(failures)}; "
            "the write may or may not have been applied (replicas that missed it will get a hint)")
