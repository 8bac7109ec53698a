"""Coalesced internode calls: per peer, a queue and one sender thread for writes, another for reads.

A coordinator never blocks on a peer: it submits a request with a callback and
goes on. The sender takes everything queued (up to a batch, by count and by
bytes), sends it as one call of its batch method (replica_write_batch or
replica_read_batch; the items are already in the IDL's types), and calls each
callback with the outcome. A batch costs one
RPC and, on the replica, one fsync, however many requests it carries; under
load, requests that arrive while a batch is in flight form the next one.

Invariants: every submitted request's callback is called exactly once (even
when sending fails in a way nobody foresaw); a
request whose deadline passed before it could be sent fails with
NodeUnavailable(sent=False); a callback that raises is logged, never kills
the sender.
"""
import collections
import logging
import threading
import time

from kvstore.errors import NodeUnavailable, StorageError
from kvstore_rpc import ttypes

log = logging.getLogger(__name__)

MAX_BATCH = 128
MAX_BATCH_BYTES = 1 << 20   # one request may be larger; a batch of several stays under this

Request = collections.namedtuple("Request", "item size deadline callback")


class PeerChannel:
    """One batch method to one peer, through its connection pool."""

    def __init__(self, node_id, pool, method):
        self.node_id = node_id
        self._pool = pool
        self._method = method
        self._queue = collections.deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"{method}-to-{node_id}", daemon=True)
        self._thread.start()

    def submit_many(self, requests):
        """Queue items together, so they go in one batch (up to its bounds): each request is
        (item, size in bytes, deadline, callback). Each callback(error, result) is called once,
        from the sender thread (result: the item's element of the batch's answer, or None)."""
        with self._cond:
            self._queue.extend(Request(*request) for request in requests)
            self._cond.notify()

    def stop(self):
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _run(self):
        while True:
            with self._cond:
                while not self._queue and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                batch = self._take()
            try:
                self._send(batch)
            except Exception:  # a background thread's failure is logged with its traceback
                log.exception("sending a %s to node %d failed", self._method, self.node_id)

    def _take(self):
        batch, size = [], 0
        while self._queue and len(batch) < MAX_BATCH:
            size += self._queue[0].size
            if batch and size > MAX_BATCH_BYTES:
                break
            batch.append(self._queue.popleft())
        return batch

    def _send(self, batch):
        now = time.monotonic()
        live = [r for r in batch if r.deadline > now]
        for request in batch:
            if request.deadline <= now:
                _answer(request, NodeUnavailable(
                    f"node {self.node_id}: the request's deadline passed before it was sent", sent=False), None)
        if not live:
            return
        timeout = max(r.deadline for r in live) - now
        results, error = None, None
        try:
            results = self._pool.call(self._method, [r.item for r in live], timeout=timeout)
        except ttypes.StorageFailure as exc:
            error = StorageError(f"node {self.node_id}: {exc.why}")
        except ttypes.InvalidRequest as exc:
            error = NodeUnavailable(f"node {self.node_id} refused the batch: {exc.why}")
        except NodeUnavailable as exc:
            error = exc
        except Exception as exc:  # a bug of ours, not the peer: still answer every request, once
            log.exception("a %s to node %d failed unexpectedly", self._method, self.node_id)
            error = NodeUnavailable(f"node {self.node_id}: the {self._method} failed: {exc!r}", sent=True)
        for request, result in zip(live, results or [None] * len(live)):
            _answer(request, error, result)


def _answer(request, error, result):
    try:
        request.callback(error, result)
    except Exception:
        log.exception("a request's callback failed")
