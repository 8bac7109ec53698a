"""The two kinds of replica a coordinator writes to and reads from.

Both take a request and a callback(error, result) and never make the caller
wait for a peer. LocalReplica is this node's own storage: it runs the request
in the caller's thread (never an RPC to itself) and calls back before
returning. RemoteReplica is another node: requests go through its channels
(coalesced into batches) and are called back from the channel's thread. This is
also where our types and the IDL's meet for internode calls.
"""
from kvstore.cell import Cell
from kvstore.channels import PeerChannel
from kvstore.errors import StorageError
from kvstore_rpc import ttypes


class LocalReplica:
    def __init__(self, node_id, storage):
        self.node_id = node_id
        self._storage = storage

    def write_async(self, key, cell, deadline, callback):
        try:
            self._storage.apply(key, cell)
        except StorageError as exc:
            callback(exc, None)
        else:
            callback(None, None)

    def read_async(self, key, deadline, callback):
        callback(None, self._storage.get(key))

    def close(self):
        pass


class RemoteReplica:
    def __init__(self, node_id, pool):
        self.node_id = node_id
        self._pool = pool
        self._writes = PeerChannel(node_id, pool, "replica_write_batch")
        self._reads = PeerChannel(node_id, pool, "replica_read_batch")

    def write_async(self, key, cell, deadline, callback):
        self._writes.submit(to_mutation(key, cell), len(key) + len(cell.value), deadline, callback)

    def read_async(self, key, deadline, callback):
        self._reads.submit(key, len(key), deadline,
                           lambda error, result: callback(error, None if error else from_cell(result.cell)))

    def deliver(self, mutations, timeout):
        """Hinted writes, in order, in one call (hint delivery runs in a thread of its own)."""
        try:
            self._pool.call("deliver_hints", [to_mutation(k, c) for k, c in mutations], timeout=timeout)
        except ttypes.StorageFailure as exc:
            raise StorageError(f"node {self.node_id}: {exc.why}") from None

    def heartbeat(self, from_node, timeout):
        return self._pool.call("heartbeat", from_node, timeout=timeout)

    def close(self):
        self._writes.stop()
        self._reads.stop()
        self._pool.close()


def to_mutation(key, cell):
    return ttypes.Mutation(key=key, cell=to_cell(cell))


def to_cell(cell):
    return None if cell is None else ttypes.Cell(value=cell.value, timestamp=cell.timestamp)


def from_cell(cell):
    return None if cell is None else Cell(cell.value, cell.timestamp)
