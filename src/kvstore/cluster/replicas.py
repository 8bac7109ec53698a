"""The two kinds of replica a coordinator writes to, reads from and scans.

Both take requests with a callback(error, result) each and never make the
caller wait: every callback is called on the node's loop. LocalReplica is this
node's own storage: reads answer at once; a group of writes is one append on
the disk worker (one fsync), applied and called back once durable, straight
from the disk worker's completion. RemoteReplica is another node: requests go
through its channels (coalesced into batches; a group submitted together goes
in one call) over its link (kvstore.net.peer_link); a cell crosses to the IDL's types and back through
kvstore.net.wire, and a peer's refusal becomes the error the coordinator counts.
"""
from kvstore.cluster.batching import PeerChannel
from kvstore.core.errors import InvalidRequest, NodeFailed, NodeUnavailable, StorageError
from kvstore.cluster.scan_pages import ReplicaPage
from kvstore.net.wire import from_cell, to_mutation
from kvstore_rpc import ttypes


class LocalReplica:
    def __init__(self, node_id, storage, readable=lambda key: True):
        """readable(key): False while a replaced node has not synced key's range (its reads then fail)."""
        self.node_id = node_id
        self._storage = storage
        self._readable = readable

    def write_many_async(self, writes, deadline):
        """writes: [(key, cell, callback)], applied with one fsync; each callback gets 0 (None), or the
        timestamp of the newer cell the replica holds instead."""
        self._storage.apply_all_then([(key, cell) for key, cell, _ in writes],
                                     lambda error, newer_held: _written(writes, error, newer_held))

    def read_many_async(self, reads, deadline):
        """reads: [(key, callback)]; each callback gets the stored cell (tombstones included) or None."""
        for key, callback in reads:
            if self._readable(key):
                callback(None, self._storage.get(key))
            else:
                callback(NodeFailed(f"node {self.node_id} is being replaced and has not synced this key's range"), None)

    def scan_async(self, start, end, limit, deadline, callback):
        if not self._readable(start or b"\x00"):
            callback(NodeFailed(f"node {self.node_id} is being replaced and has not synced this range"), None)
            return
        callback(None, ReplicaPage(self._storage.scan(start, end, limit)))

    async def close(self):
        pass


class RemoteReplica:
    def __init__(self, node_id, link):
        self.node_id = node_id
        self.link = link
        self._writes = PeerChannel(node_id, link, "replica_write_batch")
        self._reads = PeerChannel(node_id, link, "replica_read_batch")
        self._scans = PeerChannel(node_id, link, "replica_scan_batch")

    def write_many_async(self, writes, deadline):
        self._writes.submit_many([(to_mutation(key, cell), len(key) + len(cell.value or b""), deadline, callback)
                                  for key, cell, callback in writes])

    def read_many_async(self, reads, deadline):
        self._reads.submit_many([(key, len(key), deadline, _converting(callback, lambda r: from_cell(r.cell)))
                                 for key, callback in reads])

    def scan_async(self, start, end, limit, deadline, callback):
        item = ttypes.KeyRange(start, end or b"", limit)
        self._scans.submit_many([(item, len(start), deadline,
                                  _converting(callback, lambda page: ReplicaPage(
                                      [(m.key, from_cell(m.cell)) for m in page.cells or []], bool(page.truncated))))])

    async def deliver(self, mutations, timeout):
        """Hinted writes, in order, in one call."""
        try:
            await self.link.call("deliver_hints", [to_mutation(k, c) for k, c in mutations], timeout=timeout)
        except ttypes.StorageFailure as exc:
            raise StorageError(f"node {self.node_id}: {exc.why}") from None
        except ttypes.InvalidRequest as exc:   # e.g. a hint stamped too far ahead of its clock, for now
            raise InvalidRequest(f"node {self.node_id} refused hints: {exc.why}") from None

    async def heartbeat(self, from_node, timeout):
        try:
            return await self.link.call("heartbeat", from_node, timeout=timeout)
        except ttypes.InvalidRequest as exc:   # it does not count us in its ring: to us, it is not up
            raise NodeUnavailable(f"node {self.node_id} refused our heartbeat: {exc.why}", sent=True) from None
        except NodeFailed as exc:   # nor is one that fails inside its heartbeat
            raise NodeUnavailable(str(exc), sent=True) from None

    async def close(self):
        self._writes.stop()
        self._reads.stop()
        self._scans.stop()
        await self.link.close()


def _written(writes, error, newer_held):
    for (_, _, callback), held in zip(writes, newer_held or [None] * len(writes)):
        callback(error, None if error else held)


def _converting(callback, convert):
    return lambda error, result: callback(error, None if error else convert(result))
