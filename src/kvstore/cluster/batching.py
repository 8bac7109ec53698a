"""Coalesced internode calls: per peer and batch method, at most one batch in flight.

A coordinator never waits for a peer to be free: it submits requests with a
callback each and goes on. When nothing is in flight, the requests go at once,
as one call of the batch method (replica_write_batch, replica_read_batch or
replica_scan_batch; the items are already in the IDL's types) on the peer's
link (kvstore.net.peer_link). Requests submitted while a batch is in flight queue
up, and go as the next batch (bounded by count and by bytes) the moment its
answer is in. So under load a batch costs one RPC and, on the replica, one
fsync however many requests it carries. A replica whose answer reached its
byte budget answers the first requests of a batch only (replica_read_batch);
the rest go first in the next batch.

Everything here runs on the node's loop. Invariants: every submitted
request's callback is called exactly once; a request whose deadline passed
before it could be sent fails with NodeUnavailable(sent=False); a callback that
raises is logged, never breaks the channel.
"""
import collections
import logging
import time

from kvstore.core.errors import NodeFailed, NodeUnavailable, StorageError
from kvstore_rpc import ttypes

log = logging.getLogger(__name__)

MAX_BATCH = 128
MAX_BATCH_BYTES = 1 << 20   # one request may be larger; a batch of several stays under this

Request = collections.namedtuple("Request", "item size deadline callback")


class PeerChannel:
    """One batch method to one peer, over the peer's link."""

    def __init__(self, node_id, link, method):
        self.node_id = node_id
        self._link = link
        self._method = method
        self._queue = collections.deque()   # requests not sent yet
        self._in_flight = None              # the batch sent and not yet answered
        self._stopped = False

    def submit_many(self, requests):
        """Queue items together, so they go in one batch (up to its bounds): each request is
        (item, size in bytes, deadline, callback). Each callback(error, result) is called once, on the loop
        (result: the item's element of the batch's answer, or None)."""
        requests = [Request(*request) for request in requests]
        if self._stopped:
            _answer_unsent(requests, self.node_id, "the channel stopped")
            return
        self._queue.extend(requests)
        if self._in_flight is None:
            self._send_next()

    def stop(self):
        """Requests queued are answered NodeUnavailable; the batch in flight is answered by the link."""
        self._stopped = True
        queued = list(self._queue)
        self._queue.clear()
        _answer_unsent(queued, self.node_id, "the channel stopped")

    def _send_next(self):
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
        _answer_unsent(expired, self.node_id)
        if not batch:
            self._in_flight = None
            return
        self._in_flight = batch
        self._link.send(self._method, ([r.item for r in batch],), max(r.deadline for r in batch),
                        lambda error, results: self._answered(batch, error, results))

    def _answered(self, batch, error, results):
        if isinstance(error, ttypes.StorageFailure):
            error = StorageError(f"node {self.node_id}: {error.why}")
        elif isinstance(error, ttypes.InvalidRequest):
            error = NodeUnavailable(f"node {self.node_id} refused the batch: {error.why}")
        elif isinstance(error, NodeFailed):   # it answered: the link goes on; the batch's requests fail with it
            log.warning("node %d failed inside a %s: %s", self.node_id, self._method, error)
        elif error is not None and not isinstance(error, NodeUnavailable):
            error = NodeUnavailable(f"node {self.node_id}: the {self._method} failed: {error!r}")
        if error is None and results is not None and 0 < len(results) < len(batch):
            # The answer reached its byte budget: the requests it did not reach go first in the next batch.
            self._queue.extendleft(reversed(batch[len(results):]))
            batch = batch[:len(results)]
        for request, result in zip(batch, results or [None] * len(batch)):
            _answer(request, error, result)
        if self._stopped:
            self._in_flight = None
            return
        self._send_next()


def _answer_unsent(requests, node_id, why=None):
    for request in requests:
        _answer(request, NodeUnavailable(
            f"node {node_id}: {why or 'the request deadline passed before it was sent'}", sent=False), None)


def _answer(request, error, result):
    try:
        request.callback(error, result)
    except Exception:
        log.exception("a request's callback failed")
