"""How a node's repairs are put together: its replica as a sync side, its peers as remote sides, the repair
service with the node's settings, the replacement of a node that lost its data, and the peer port's sync
calls (kvstore.cluster.repair, kvstore.cluster.replace, kvstore.cluster.sync)."""
from kvstore.cluster.repair import RepairService
from kvstore.cluster.replace import Replacement
from kvstore.cluster.sync_sides import LocalSide, RangeLeases, RemoteSide
from kvstore.service.sync_calls import SyncCalls
from kvstore.storage.replace_marker import ReplaceMarker

SYNC_CALL_TIMEOUTS = 5   # a sync call may take this many request timeouts (a leaf's entries, a batch of cells)


def remote_side(peer, settings):
    """The sync side of a peer (a RemoteReplica)."""
    return RemoteSide(peer.node_id, peer.link, settings.request_timeout * SYNC_CALL_TIMEOUTS)


def build(node_id, trees, storage, history, disk, peers, detector, clock, settings, data_dir):
    """(RepairService, SyncCalls, Replacement, {node_id: RemoteSide}) of one node; peers: {node_id: RemoteReplica}.
    """
    local = LocalSide(node_id, trees, storage, RangeLeases(), history, disk)
    remotes = {i: remote_side(peer, settings) for i, peer in peers.items()}
    margin = 2 * settings.request_timeout + settings.max_clock_offset
    repairs = RepairService(node_id, trees, local, remotes, detector, clock, history, rate=settings.repair_rate,
                            interval=settings.repair_interval, margin=margin, grace=settings.gc_grace)
    replacement = Replacement(node_id, trees, repairs, remotes, detector, ReplaceMarker(data_dir), disk)
    return repairs, SyncCalls(local), replacement, remotes
