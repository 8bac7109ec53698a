"""Responses: the answers of one request's replicas, gathered as they arrive.

The coordinator sends to replicas without waiting on any of them; each
replica's callback lands here (ok or fail), on the node's loop, and the
request awaits as many answers as its level needs, or all, or its deadline (a
timer on the loop: nothing polls).
"""
import asyncio
import time


class Responses:
    """Answers from replicas as they arrive; wait() returns once enough are in, or all, or the deadline."""

    def __init__(self, needed, expected):
        self.needed = needed
        self.expected = expected
        self.answers = []   # (node_id, result), in order of arrival
        self.failures = {}  # node_id -> reason
        self._when_complete = None
        self._waiter = None
        self._wanted = needed

    def ok(self, node_id, result=None):
        self.answers.append((node_id, result))
        self._arrived()

    def fail(self, node_id, reason):
        self.failures[node_id] = reason
        self._arrived()

    def _arrived(self):
        all_in = len(self.answers) + len(self.failures) >= self.expected
        waiter = self._waiter
        if waiter is not None and not waiter.done() and (all_in or self._enough(self._wanted)):
            waiter.set_result(True)
        if all_in and self._when_complete is not None:
            callback, self._when_complete = self._when_complete, None
            callback(list(self.answers))

    def when_complete(self, callback):
        """Call callback(answers) once every expected replica has answered or failed: now, if they
        all have, else when the last one does. Nothing waits for it."""
        if len(self.answers) + len(self.failures) >= self.expected:
            callback(list(self.answers))
        else:
            self._when_complete = callback

    async def wait(self, deadline, needed=None):
        """True once `needed` (default: the level's) answers are in; False if that can no longer happen."""
        needed = self.needed if needed is None else needed
        if not self._enough(needed) and len(self.answers) + len(self.failures) < self.expected:
            remaining = deadline - time.monotonic()
            if remaining > 0:
                loop = asyncio.get_running_loop()
                self._waiter, self._wanted = loop.create_future(), needed
                timer = loop.call_later(remaining, _give_up, self._waiter)
                try:
                    await self._waiter
                finally:
                    timer.cancel()
                    self._waiter = None
        return self._enough(needed)

    def _enough(self, wanted):
        return len(self.answers) >= wanted

    def snapshot(self):
        return list(self.answers), dict(self.failures)


class BothResponses(Responses):
    """A write during a ring change whose key's replicas move: it needs its level in the old replica set and in
    the new one (kvstore.core.ring_state), `groups`: [(ids, answers needed among them)]."""

    def __init__(self, groups, expected):
        super().__init__(max(needed for _, needed in groups), expected)
        self._groups = groups

    def _enough(self, wanted):
        if wanted != self.needed:
            return len(self.answers) >= wanted
        answered = {node_id for node_id, _ in self.answers}
        return all(len(answered & ids) >= needed for ids, needed in self._groups)


def _give_up(waiter):
    if not waiter.done():
        waiter.set_result(False)


def reasons(failures):
    """' (node 1: why; node 2: why)' from {node_id: why}, or '' when none failed: for error messages."""
    if not failures:
        return ""
    return " (" + "; ".join(f"node {n}: {why}" for n, why in sorted(failures.items())) + ")"
