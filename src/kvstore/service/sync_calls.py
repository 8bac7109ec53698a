"""The peer port's range-sync calls (sync_hashes, sync_entries, sync_cells, sync_read, sync_finished): a syncing node
reaching this node's replica (kvstore.cluster.sync_sides.LocalSide), with its errors mapped to the IDL's."""
from kvstore.cluster.sync_sides import from_idl_range, signed
from kvstore.net.wire import to_cell, to_mutation
from kvstore.service.peer_service import REPLICA_ERRORS
from kvstore_rpc import ttypes


class SyncCalls:
    def __init__(self, local_side):
        self._side = local_side

    async def sync_hashes(self, session, token_range, branches):
        with REPLICA_ERRORS:
            return [signed(h) for h in await self._side.hashes(session, from_idl_range(token_range), branches or [])]

    async def sync_entries(self, session, token_range, leaves):
        with REPLICA_ERRORS:
            entries, answered = await self._side.entries(session, from_idl_range(token_range), leaves or [])
            return ttypes.SyncEntries([ttypes.SyncEntry(k, t, signed(d)) for k, t, d in entries], answered)

    async def sync_cells(self, session, token_range, leaves):
        with REPLICA_ERRORS:
            cells, answered = await self._side.cells(session, from_idl_range(token_range), leaves or [])
            return ttypes.SyncCells([to_mutation(k, c) for k, c in cells], answered)

    async def sync_read(self, session, token_range, keys):
        with REPLICA_ERRORS:
            return [ttypes.ReadResult(to_cell(cell), [self._side.node_id], [])
                    for _, cell in await self._side.read(session, from_idl_range(token_range), keys or [])]

    async def sync_finished(self, session, token_range, since):
        with REPLICA_ERRORS:
            await self._side.finished(session, from_idl_range(token_range), since or 0)
