"""Coalesced internode calls: per peer, a queue and one sender thread for writes, another for reads.

A coordinator never blocks on a peer: it submits a write or a read with a
callback and goes on. The sender takes everything queued (up to a batch, by
count and by bytes), sends it as one call (replica_write_batch or
replica_read_batch), and calls each callback with the outcome. A batch costs one
RPC and, on the replica, one fsync, however many requests it carries; under
load, requests that arrive while a batch is in flight form the next one.

Invariants: every submitted request's callback is called exactly once; a
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

Request = collections.namedtuple("Request", "key cell deadline callback")


class PeerChannel:
    """One kind of call ('write' or 'read') to one peer, through its connection pool."""

    def __init__(self, node_id, pool, kind):
        self.node_id = node_id
        self._pool = pool
        self._kind = kind
        self._queue = collections.deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"{kind}-to-{node_id}", daemon=True)
        self._thread.start()

    def submit(self, key, cell, deadline, callback):
        """Queue one request; callback(error, result) is called once, from the sender thread."""
        with self._cond:
            self._queue.append(Request(key, cell, deadline, callback))
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
                log.exception("sending a %s batch to node %d failed", self._kind, self.node_id)

    def _take(self):
        batch, size = [], 0
        while self._queue and len(batch) < MAX_BATCH:
            request = self._queue[0]
            size += len(request.key) + (len(request.cell.value) if request.cell else 0)
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
        results, error = [None] * len(live), None
        try:
            if self._kind == "write":
                mutations = [ttypes.Mutation(r.key, ttypes.Cell(r.cell.value, r.cell.timestamp)) for r in live]
                self._pool.call("replica_write_batch", mutations, timeout=timeout)
            else:
                results = self._pool.call("replica_read_batch", [r.key for r in live], timeout=timeout)
        except ttypes.StorageFailure as exc:
            error = StorageError(f"node {self.node_id}: {exc.why}")
        except (NodeUnavailable, ttypes.InvalidRequest) as exc:
            error = exc if isinstance(exc, NodeUnavailable) else NodeUnavailable(
                f"node {self.node_id} refused the batch: {exc.why}")
        for request, result in zip(live, results):
            _answer(request, error, result)


def _answer(request, error, result):
    try:
        request.callback(error, result)
    except Exception:
        log.exception("a callback for %r failed", request.key)
