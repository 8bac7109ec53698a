"""Membership: this node's ring state, how it adopts a newer epoch, and what changes when it does.

Why one place: a new epoch changes where every request goes (the coordinator and the client service plan
with its Placement), which hash trees the node keeps (kvstore.cluster.range_trees, built again), and who its
peers are (a joining node gets a link, a heartbeat task, a sync side). A node adopts an epoch only once it is
durable in its ring file (kvstore.storage.ring_file), and never goes back to an older one.

An epoch reaches a node three ways: the operator's tool applies it to every node (`apply`, on the client
port, admin only), a heartbeat answer shows a peer holds a newer one (`heard`, then fetched from that peer
with the peer call fetch_ring), and a node starting catches up from its peers before it serves.

`apply` answers only once every request this node planned with an older epoch has ended (the coordinator
counts them), and at most DRAIN_TIMEOUTS request timeouts after it adopted the epoch (a request's deadline,
and one more for a write stamped again: none can run longer), so the tool that has every node's answer
knows no request anywhere still uses the epoch before (the condition of each next step:
kvstore.core.ring_state).
"""
import asyncio
import logging
import time

from kvstore.core.errors import ConfigError, InvalidRequest
from kvstore.core.ring_state import RingState

log = logging.getLogger(__name__)

DRAIN_TIMEOUTS = 2
DRAIN_POLL = 0.01   # seconds between looks at the requests still in flight


class Membership:
    def __init__(self, node_id, state, ring_file, disk, request_timeout, background):
        """state: the RingState loaded at start; ring_file: kvstore.storage.ring_file.RingFile; disk: the node's
        DiskWorker (the one place files are written while serving)."""
        self.node_id = node_id
        self.state = state
        self.placement = state.placement()
        self._file = ring_file
        self._disk = disk
        self._drain = request_timeout * DRAIN_TIMEOUTS
        self._background = background
        self._adopted_at = time.monotonic()
        self._listeners = []
        self._lock = asyncio.Lock()
        self._fetching = False
        self.fetch = None   # fetch(node_id) -> the RingState that peer holds (set by the node: a peer call)
        self.planned_before = lambda epoch: 0   # requests running planned before epoch (the coordinator's count)

    @property
    def epoch(self):
        return self.state.epoch

    async def cleaning(self):
        """Record, durably, that a cleanup runs at this epoch (kvstore.storage.ring_file: a node drops the ranges
        it does not hold at start only once it has cleaned up)."""
        await self._disk.run(self._file.save_cleaned, self.state.epoch)

    def is_peer(self, node_id):
        """True for another node of the ring (old or new, during a change)."""
        return node_id != self.node_id and any(n.node_id == node_id for n in self.placement.nodes)

    def on_change(self, listener):
        """listener(placement) runs on the loop each time this node adopts a new epoch, in the order added."""
        self._listeners.append(listener)

    async def adopt(self, state):
        """Make state this node's ring if it is newer (durable first); returns the epoch now held."""
        async with self._lock:
            if state.epoch <= self.state.epoch:
                return self.state.epoch
            await self._disk.run(self._file.save, state)
            old, self.state, self.placement = self.state, state, state.placement()
            self._adopted_at = time.monotonic()
            log.info("ring epoch %d -> %d: %s", old.epoch, state.epoch, describe(state))
            for listener in self._listeners:
                listener(self.placement)
            return state.epoch

    async def apply(self, text):
        """The admin call: adopt the state in text (to_json), then wait out every request planned before it."""
        try:
            state = RingState.from_json(text)
        except ConfigError as exc:
            raise InvalidRequest(str(exc)) from None
        if state.epoch < self.state.epoch:
            raise InvalidRequest(f"ring epoch {state.epoch} is older than the {self.state.epoch} node {self.node_id} "
                                 "holds: read the ring again (./server.sh status) and retry")
        await self.adopt(state)
        await self.drained()
        return self.state.epoch

    async def drained(self):
        """Returns once no request this node planned with an older epoch is still running."""
        deadline = self._adopted_at + self._drain
        while self.planned_before(self.state.epoch) and time.monotonic() < deadline:
            await asyncio.sleep(DRAIN_POLL)

    def heard(self, node_id, epoch):
        """A peer's heartbeat answer showed its epoch: fetch a newer ring from it, in the background, one fetch
        at a time (every peer shows a new epoch within one heartbeat round: one fetch, not one a peer)."""
        if epoch and epoch > self.state.epoch and self.fetch is not None and not self._fetching \
                and not self._background.stopping:
            self._fetching = True
            self._background.spawn(self._catch_up(node_id), f"ring-catch-up-{node_id}")

    async def _catch_up(self, node_id):
        try:
            state = await self.fetch(node_id)
        except Exception as exc:   # it went away meanwhile: the next heartbeat tries again
            log.info("could not fetch the ring from node %d: %s", node_id, exc)
            return
        finally:
            self._fetching = False
        await self.adopt(state)


def describe(state):
    if not state.changing:
        return f"stable, {len(state.nodes)} nodes"
    return f"{state.kind} of node {state.subject}, {state.stage}"
