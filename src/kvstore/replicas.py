"""The two kinds of replica a coordinator writes to and reads from.

LocalReplica is this node's own storage, called directly (never an RPC to
itself); RemoteReplica is another node through its connection pool. Both offer
write, read and deliver with the same contract, so the coordinator does not
care which it holds. This is where our types and the IDL's meet for internode
calls.
"""
from kvstore.cell import Cell
from kvstore.errors import StorageError
from kvstore_rpc import ttypes


class LocalReplica:
    def __init__(self, node_id, storage):
        self.node_id = node_id
        self._storage = storage

    def write(self, key, cell, timeout):
        self._storage.apply(key, cell)

    def read(self, key, timeout):
        return self._storage.get(key)

    def deliver(self, mutations, timeout):
        self._storage.apply_all(mutations)


class RemoteReplica:
    def __init__(self, node_id, pool):
        self.node_id = node_id
        self._pool = pool

    def write(self, key, cell, timeout):
        try:
            self._pool.call("replica_write", to_mutation(key, cell), timeout=timeout)
        except ttypes.StorageFailure as exc:
            raise StorageError(f"node {self.node_id}: {exc.why}") from None

    def read(self, key, timeout):
        return from_cell(self._pool.call("replica_read", key, timeout=timeout).cell)

    def deliver(self, mutations, timeout):
        try:
            self._pool.call("deliver_hints", [to_mutation(k, c) for k, c in mutations], timeout=timeout)
        except ttypes.StorageFailure as exc:
            raise StorageError(f"node {self.node_id}: {exc.why}") from None

    def heartbeat(self, from_node, timeout):
        return self._pool.call("heartbeat", from_node, timeout=timeout)


def to_mutation(key, cell):
    return ttypes.Mutation(key=key, cell=to_cell(cell))


def to_cell(cell):
    return None if cell is None else ttypes.Cell(value=cell.value, timestamp=cell.timestamp)


def from_cell(cell):
    return None if cell is None else Cell(cell.value, cell.timestamp)
