"""Coalesced internode calls: per peer and batch method, one connection and at most one batch in flight.

A coordinator never blocks on a peer: it submits requests with a callback each
and goes on. When nothing is in flight, the submitting thread sends its
requests at once, as one call of the batch method (replica_write_batch,
replica_read_batch or replica_scan_batch; the items are already in the IDL's
types): no other thread is woken for it to leave. Requests submitted while a
batch is in flight queue up, and the channel's own thread, which reads every
answer, sends them as the next batch (bounded by count and by bytes) the moment
the answer is in. So under load a batch costs one RPC and, on the replica, one
fsync however many requests it carries, and on an idle channel a request costs
no thread hand-off on its way out (one on its way back, as any answer does).
A replica whose answer reached its byte budget answers the first requests of a
batch only (replica_read_batch); the rest go first in the next batch.

The channel's thread also opens the connection when there is none (a caller
never waits for a connect), and drops it when it breaks: a send or a read
fails, the batch in flight passes its deadline, or the peer closes it (a
restarted peer is noticed at once, since the thread is always reading).

Invariants: every submitted request's callback is called exactly once (even
when sending fails in a way nobody foresaw, and when the channel stops); a
request whose deadline passed before it could be sent fails with
NodeUnavailable(sent=False); a callback that raises is logged, never kills the
channel.
"""
import collections
import logging
import threading
import time

from kvstore.errors import NodeFailed, NodeUnavailable, StorageError
from kvstore_rpc import ttypes

log = logging.getLogger(__name__)

MAX_BATCH = 128
MAX_BATCH_BYTES = 1 << 20   # one request may be larger; a batch of several stays under this
POLL = 0.25                 # seconds the channel's thread waits for an answer before it checks deadlines

Request = collections.namedtuple("Request", "item size deadline callback")


class PeerChannel:
    """One batch method to one peer, over a connection of its own."""

    def __init__(self, node_id, connect, method):
        """connect(timeout) -> a new peers.Connection to the peer; raises NodeUnavailable (ConnectFailed)."""
        self.node_id = node_id
        self._connect = connect
        self._method = method
        self._queue = collections.deque()   # requests not sent yet
        self._cond = threading.Condition()
        self._connection = None
        self._in_flight = None              # the requests sent (or being sent) and not yet answered
        self._deadline = 0.0                # by when the batch in flight must be answered
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"{method}-to-{node_id}", daemon=True)
        self._thread.start()

    def submit_many(self, requests):
        """Queue items together, so they go in one batch (up to its bounds): each request is
        (item, size in bytes, deadline, callback). Each callback(error, result) is called once,
        from any thread (result: the item's element of the batch's answer, or None)."""
        requests = [Request(*request) for request in requests]
        with self._cond:
            stopped = self._stopped
            if not stopped:
                self._queue.extend(requests)
                if self._in_flight is not None:
                    return                # the answer in flight sends these along when it comes
                if self._connection is None:
                    self._cond.notify()   # the channel's thread connects: a caller never waits for that
                    return
                batch, expired = self._take()
                connection = self._connection
        if stopped:
            _answer_unsent(requests, self.node_id, "the channel stopped")
            return
        _answer_unsent(expired, self.node_id)
        if batch:
            self._send(connection, batch)

    def stop(self):
        """Stop the channel: requests queued or in flight are answered NodeUnavailable, now or within POLL;
        its thread is joined."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(POLL + 1.0)

    # ---- under the lock ----

    def _take(self):
        """(the next batch, now in flight, [] if none; the requests taken whose deadline passed)."""
        now = time.monotonic()
        batch, expired, size = [], [], 0
        while self._queue and len(batch) < MAX_BATCH:
            request = self._queue[0]
            if request.deadline <= now:
                expired.append(self._queue.popleft())
                continue
            size += request.size
            if batch and size > MAX_BATCH_BYTES:
                break
            batch.append(self._queue.popleft())
        self._in_flight = batch or None
        self._deadline = max((r.deadline for r in batch), default=0.0)
        return batch, expired

    # ---- sending and receiving ----

    def _send(self, connection, batch):
        try:
            connection.send_call(self._method, ([r.item for r in batch],))
        except NodeUnavailable as exc:
            self._drop(connection, exc)
        except Exception as exc:  # a bug of ours, not the peer: still answer every request, once
            log.exception("sending a %s to node %d failed unexpectedly", self._method, self.node_id)
            self._drop(connection, NodeUnavailable(f"node {self.node_id}: the {self._method} failed: {exc!r}"))

    def _drop(self, connection, error):
        """The connection broke (None: it could not be opened): close it and fail the batch in flight
        on it, unless that was done already."""
        with self._cond:
            if self._connection is not connection:
                return
            batch, self._connection, self._in_flight = self._in_flight, None, None
            if self._queue:
                self._cond.notify()
        if connection is not None:
            connection.close()
        for request in batch or ():
            _answer(request, error, None)

    def _run(self):
        while True:
            try:
                if not self._step():
                    break
            except Exception as exc:  # a bug of ours: answer the batch in flight, keep the channel going
                log.exception("the %s channel to node %d failed", self._method, self.node_id)
                self._drop(self._connection, NodeUnavailable(f"node {self.node_id}: the {self._method} failed: "
                                                             f"{exc!r}"))
        self._drop(self._connection, NodeUnavailable(f"node {self.node_id}: the channel stopped", sent=True))
        with self._cond:
            queued = list(self._queue)
            self._queue.clear()
        _answer_unsent(queued, self.node_id, "the channel stopped")

    def _step(self):
        """Connect and send, or read one answer (or wait POLL for it); False once stopped."""
        with self._cond:
            while not self._stopped and self._connection is None and not self._queue:
                self._cond.wait()
            if self._stopped:
                return False
            connection = self._connection
            if connection is None:
                batch, expired = self._take()
        if connection is None:
            _answer_unsent(expired, self.node_id)
            if batch:
                self._connect_and_send(batch)
        else:
            self._receive(connection)
        return True

    def _connect_and_send(self, batch):
        try:
            connection = self._connect(self._deadline - time.monotonic())
        except NodeUnavailable as exc:
            self._drop(None, exc)   # no connection yet: answers the batch taken for it
            return
        with self._cond:
            self._connection = connection
        self._send(connection, batch)

    def _receive(self, connection):
        try:
            arrived = connection.wait_for_answer(POLL)
        except NodeUnavailable as exc:
            self._drop(connection, exc)
            return
        with self._cond:
            batch, deadline = (self._in_flight, self._deadline) if self._connection is connection else (None, 0)
        if not arrived:
            if batch and time.monotonic() > deadline:
                self._drop(connection, NodeUnavailable(f"node {self.node_id} did not answer a {self._method} "
                                                       "in time", sent=True))
            return
        if batch is None:
            self._drop(connection, NodeUnavailable(f"node {self.node_id} sent an answer nobody asked for"))
            return
        results, error = None, None
        try:
            results = connection.read_answer(self._method, deadline)
        except ttypes.StorageFailure as exc:
            error = StorageError(f"node {self.node_id}: {exc.why}")
        except ttypes.InvalidRequest as exc:
            error = NodeUnavailable(f"node {self.node_id} refused the batch: {exc.why}")
        except NodeFailed as exc:   # it answered: the connection goes on; the batch's requests fail with it
            log.warning("node %d failed inside a %s: %s", self.node_id, self._method, exc)
            error = exc
        except NodeUnavailable as exc:
            self._drop(connection, exc)
            return
        except Exception as exc:  # a bug of ours, not the peer: still answer every request, once
            log.exception("a %s to node %d failed unexpectedly", self._method, self.node_id)
            self._drop(connection, NodeUnavailable(f"node {self.node_id}: the {self._method} failed: {exc!r}"))
            return
        with self._cond:
            if self._connection is not connection or self._in_flight is not batch:
                return   # dropped meanwhile (the channel stopped): its requests are answered already
            if error is None and results is not None and 0 < len(results) < len(batch):
                # The answer reached its byte budget: the requests it did not reach go first in the next batch.
                self._queue.extendleft(reversed(batch[len(results):]))
                batch = batch[:len(results)]
            following, expired = self._take()
        for request, result in zip(batch, results or [None] * len(batch)):
            _answer(request, error, result)
        _answer_unsent(expired, self.node_id)
        if following:
            self._send(connection, following)


def _answer_unsent(requests, node_id, why=None):
    for request in requests:
        _answer(request, NodeUnavailable(
            f"node {node_id}: {why or 'the request deadline passed before it was sent'}", sent=False), None)


def _answer(request, error, result):
    try:
        request.callback(error, result)
    except Exception:
        log.exception("a request's callback failed")
