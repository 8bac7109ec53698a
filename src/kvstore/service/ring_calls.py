"""The ring's calls: the operator's (ring_state, ring_apply, ring_stream, cleanup; role admin, on the client
port) and the peers' (fetch_ring, on the peer port), translated to kvstore.cluster.membership's and the
repair service's, with their errors mapped to the IDL's."""
import logging

from kvstore.core import errors
from kvstore.core.ring_state import RingState
from kvstore_rpc import ttypes

log = logging.getLogger(__name__)


class RingCalls:
    def __init__(self, node_id, membership, repairs, trees, storage):
        self._node_id = node_id
        self._membership = membership
        self._repairs = repairs
        self._trees = trees
        self._storage = storage

    def ring_state(self):
        return self._membership.state.to_json()

    fetch_ring = ring_state   # the same answer, to a peer

    async def ring_apply(self, state):
        try:
            return await self._membership.apply(state or "")
        except errors.InvalidRequest as exc:
            raise ttypes.InvalidRequest(why=str(exc)) from None
        except errors.StorageError as exc:
            raise ttypes.InvalidRequest(why=f"node {self._node_id} could not save the ring: {exc}") from None

    def ring_stream(self, epoch):
        """Sync each range this node gains from the replicas losing it (for a removenode, whose leaving node is
        dead: from every old replica that survives), in the background (kind "stream")."""
        state = self._membership.state
        if epoch != state.epoch or not state.changing:
            doing = "a change in progress" if state.changing else "no change"
            raise ttypes.InvalidRequest(
                why=f"node {self._node_id} holds ring epoch {state.epoch} ({doing}), not {epoch}")
        placement, sides = self._membership.placement, {}
        for token_range, old in placement.gains(self._node_id):
            new = placement.new.replica_ids(token_range.end)
            losing = [i for i in old if i not in new]
            if state.kind == "removenode":   # the node losing it is gone: every old replica that survives
                losing = [i for i in old if i != state.subject]
            sides[token_range] = [self._node_id, *losing]
        if not sides:
            return
        try:
            self._repairs.start(list(sides), "stream", sides=sides)
        except errors.InvalidRequest as exc:
            raise ttypes.InvalidRequest(why=str(exc)) from None

    async def cleanup(self):
        state = self._membership.state
        if state.changing:
            raise ttypes.InvalidRequest(why=f"a {state.kind} of node {state.subject} is in progress (epoch "
                                            f"{state.epoch}, {state.stage}): node {self._node_id} may hold ranges "
                                            "it is gaining; cleanup waits until the change is over")
        try:
            await self._membership.cleaning()
            return await self._storage.cleanup(self._trees.holds)
        except errors.StorageError as exc:
            raise ttypes.StorageFailure(why=str(exc)) from None


async def ring_of_peer(link, timeout):
    """The RingState a peer holds (its peer call fetch_ring)."""
    return RingState.from_json(await link.call("fetch_ring", timeout=timeout), source="a peer's ring state")
