"""The coordinator: how one node serves a client's put or get for the whole ring.

A write: find the key's replicas; if fewer are alive than the level needs,
raise Unavailable and write nothing; otherwise stamp the cell, send it to every
live replica at once (the local one by a direct call), hint the ones that are
down, and answer as soon as `block_for` replicas acknowledged. Replicas that
fail or miss the deadline get a hint too, after the answer if need be.

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
from kvstore.errors import NodeUnavailable, StorageError, TimedOut, Unavailable

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

    def ok(self, node_id, result=None):
        with self._cond:
            self.answers.append((node_id, result))
            self._cond.notify_all()

    def fail(self, node_id, reason):
        with self._cond:
            self.failures[node_id] = reason
            self._cond.notify_all()

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
    def __init__(self, local_id, ring, replicas, detector, hints, clock, executor, timeout):
        """replicas: {node_id: LocalReplica or RemoteReplica}; executor runs the remote calls."""
        self._local_id = local_id
        self._ring = ring
        self._replicas = replicas
        self._detector = detector
        self._hints = hints
        self._clock = clock
        self._executor = executor
        self._timeout = timeout

    def _plan(self, key, level):
        """(live replica ids, down replica ids, answers needed); Unavailable if too few are alive."""
        ids = [node.node_id for node in self._ring.replicas_for(key)]
        needed = block_for(level, len(ids))
        alive = [i for i in ids if self._detector.is_up(i)]
        if len(alive) < needed:
            raise Unavailable(len(alive), needed, level.name, len(ids))
        # The local replica goes last: remote calls are sent first, then it runs in this thread.
        alive.sort(key=lambda i: i == self._local_id)
        return alive, [i for i in ids if i not in alive], needed

    def _fan_out(self, alive, task):
        for node_id in alive:
            if node_id == self._local_id:
                task(node_id)
            else:
                self._executor.submit(task, node_id)

    # ---- writes ----

    def put(self, key, value, level):
        deadline = time.monotonic() + self._timeout
        alive, down, needed = self._plan(key, level)
        cell = Cell(value, self._clock.now())
        responses = Responses(needed, len(alive))
        self._fan_out(alive, lambda node_id: self._write_one(node_id, key, cell, deadline, responses))
        for node_id in down:
            self._store_hint(node_id, key, cell)
        if not responses.wait(deadline):
            acked, failures = responses.snapshot()
            raise TimedOut(_write_failure_message(level, len(acked), needed, failures), len(acked), needed)
        acked, _ = responses.snapshot()
        return WriteOutcome(cell.timestamp, [node_id for node_id, _ in acked], down)

    def _write_one(self, node_id, key, cell, deadline, responses):
        try:
            self._call(node_id, "write", key, cell, deadline)
        except (NodeUnavailable, StorageError) as exc:
            responses.fail(node_id, str(exc))
            if node_id != self._local_id:
                self._store_hint(node_id, key, cell)
        except Exception as exc:  # a bug must not leave the client waiting until the deadline
            log.exception("write to node %d failed", node_id)
            responses.fail(node_id, f"internal error: {exc}")
        else:
            responses.ok(node_id)

    def _store_hint(self, node_id, key, cell):
        try:
            self._hints.add(node_id, key, cell)
        except StorageError as exc:
            log.error("could not store a hint for node %d: %s", node_id, exc)

    def _call(self, node_id, operation, key, cell_or_none, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NodeUnavailable(f"node {node_id}: the request's deadline passed before it was sent", sent=False)
        try:
            method = getattr(self._replicas[node_id], operation)
            if operation == "write":
                return method(key, cell_or_none, remaining)
            return method(key, remaining)
        except NodeUnavailable as exc:
            if not exc.sent:
                self._detector.mark_down(node_id, str(exc))
            raise

    # ---- reads ----

    def get(self, key, level):
        deadline = time.monotonic() + self._timeout
        alive, _, needed = self._plan(key, level)
        responses = Responses(needed, len(alive))
        self._fan_out(alive, lambda node_id: self._read_one(node_id, key, deadline, responses))
        if not responses.wait(deadline):
            answered, failures = responses.snapshot()
            raise TimedOut(f"{level.name} read needs {needed} replicas, {len(answered)} answered in time"
                           + _reasons(failures), len(answered), needed)
        answers, _ = responses.snapshot()
        newest = reconcile(cell for _, cell in answers)
        repaired = self._repair(key, newest, answers, needed, level, deadline)
        if len(answers) < len(alive):
            self._executor.submit(self._repair_late, key, responses, deadline)
        return ReadOutcome(newest, [node_id for node_id, _ in answers], repaired)

    def _read_one(self, node_id, key, deadline, responses):
        try:
            cell = self._call(node_id, "read", key, None, deadline)
        except NodeUnavailable as exc:
            responses.fail(node_id, str(exc))
        except Exception as exc:
            log.exception("read from node %d failed", node_id)
            responses.fail(node_id, f"internal error: {exc}")
        else:
            responses.ok(node_id, cell)

    def _repair(self, key, newest, answers, needed, level, deadline):
        """Write newest to the stale replicas among answers; wait until `needed` replicas hold it."""
        stale = [node_id for node_id, cell in answers if cell != newest]
        if newest is None or not stale:
            return []
        log.debug("read repair of %r on nodes %s", key, stale)
        responses = Responses(len(stale), len(stale))
        self._fan_out(stale, lambda node_id: self._write_one(node_id, key, newest, deadline, responses))
        holding = len(answers) - len(stale)
        if not responses.wait(deadline, needed=max(0, needed - holding)):
            repaired, failures = responses.snapshot()
            raise TimedOut(f"{level.name} read found stale replicas and could not repair enough of them in time"
                           + _reasons(failures), holding + len(repaired), needed)
        repaired, _ = responses.snapshot()
        return [node_id for node_id, _ in repaired]

    def _repair_late(self, key, responses, deadline):
        """Once every replica answered (or the deadline passed), repair all that differ from the newest."""
        responses.wait(deadline, needed=responses.expected)
        answers, _ = responses.snapshot()
        newest = reconcile(cell for _, cell in answers)
        # Compare every answer, early ones too: a late answer may hold the newest cell.
        # A replica already holding it skips the write (storage ignores what is not newer).
        stale = [node_id for node_id, cell in answers if cell != newest]
        for node_id in stale:
            try:
                self._call(node_id, "write", key, newest, time.monotonic() + self._timeout)
                log.debug("background read repair of %r on node %d", key, node_id)
            except (NodeUnavailable, StorageError) as exc:
                log.info("background read repair on node %d failed: %s", node_id, exc)


def _reasons(failures):
    if not failures:
        return ""
    return " (" + "; ".join(f"node {n}: {why}" for n, why in sorted(failures.items())) + ")"


def _write_failure_message(level, acked, needed, failures):
    return (f"{level.name} write needs {needed} acknowledgements, got {acked}{_reasons(failures)}; "
            "the write may or may not have been applied (replicas that missed it will get a hint)")
