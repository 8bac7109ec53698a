"""Responses: the answers of one request's replicas, gathered as they arrive from any thread.

The coordinator sends to replicas without waiting on any of them; each
replica's callback lands here (ok or fail), and the request's own thread waits
for as many answers as its level needs, or for all, or for its deadline.
"""
import threading
import time


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


def reasons(failures):
    """' (node 1: why; node 2: why)' from {node_id: why}, or '' when none failed: for error messages."""
    if not failures:
        return ""
    return " (" + "; ".join(f"node {n}: {why}" for n, why in sorted(failures.items())) + ")"
