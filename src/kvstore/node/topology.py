"""How a node follows its ring: what it loads at start, how it catches up from its peers before it serves, and
what it changes when it adopts a new epoch (kvstore.cluster.membership): new peers get a link, a heartbeat and
a sync side; the coordinator plans with the new placement; the hash trees are cut to the new ranges and built
again."""
import asyncio
import logging

from kvstore.cluster.membership import Membership
from kvstore.cluster.replicas import RemoteReplica
from kvstore.net.peer_link import PeerLink
from kvstore.service.ring_calls import ring_of_peer
from kvstore.storage.ring_file import RingFile

log = logging.getLogger(__name__)


def load(data_dir, cluster_nodes):
    """(the RingFile, the RingState this node starts with: its own saved ring, else the cluster file's)."""
    ring_file = RingFile(data_dir)
    return ring_file, ring_file.load(cluster_nodes)


class Topology:
    def __init__(self, me, membership: Membership, peers, replicas, settings, secret, tls_client):
        """peers: {node_id: RemoteReplica} (shared with the hint delivery and the detector); replicas: the
        coordinator's {node_id: replica}."""
        self._me = me
        self.membership = membership
        self._peers = peers
        self._replicas = replicas
        self._settings = settings
        self._secret = secret
        self._tls = tls_client
        self._parts = []
        membership.fetch = self._fetch
        membership.on_change(self._changed)

    def connect(self, node):
        """A RemoteReplica of node (not yet registered)."""
        return RemoteReplica(node.node_id, PeerLink(node, self._settings.connect_timeout, self._secret, self._tls))

    def peers_of(self, placement):
        return {n.node_id: self.connect(n) for n in placement.nodes if n.node_id != self._me.node_id}

    def follow(self, coordinator, trees, storage, detector, sides, side_of, background):
        """What a new epoch changes: sides is the repair service's {node_id: RemoteSide}, side_of(peer) makes one."""
        self._parts = (coordinator, trees, storage, detector, sides, side_of, background)
        self.membership.planned_before = coordinator.planned_before

    def _changed(self, placement):
        coordinator, trees, storage, detector, sides, side_of, background = self._parts
        for node in placement.nodes:
            if node.node_id != self._me.node_id and node.node_id not in self._peers:
                peer = self.connect(node)
                self._peers[node.node_id] = self._replicas[node.node_id] = peer
                sides[node.node_id] = side_of(peer)
                detector.add(node.node_id)
                log.info("node %d (%s) joined this node's ring", node.node_id, node.address)
        coordinator.reshape(placement)
        if trees.reshape(placement) and not background.stopping:
            background.spawn(storage.build_trees(), "build-hash-trees")

    async def _fetch(self, node_id):
        return await ring_of_peer(self._peers[node_id].link, self._settings.request_timeout)

    async def catch_up(self, timeout):
        """Before serving: adopt the newest ring any peer holds (a node down during a change, or one just added,
        must not plan a request with an older epoch than the cluster's). Best effort within timeout."""
        async def ask(peer):
            try:
                return await ring_of_peer(peer.link, timeout)
            except Exception as exc:   # down, or an older node: the heartbeats will tell later
                log.debug("node %d did not tell its ring: %s", peer.node_id, exc)
                return None
        states = [s for s in await asyncio.gather(*(ask(p) for p in list(self._peers.values()))) if s is not None]
        newest = max(states, key=lambda s: s.epoch, default=None)
        if newest is not None and newest.epoch > self.membership.epoch:
            log.info("catching up: peers hold ring epoch %d, this node %d", newest.epoch, self.membership.epoch)
            await self.membership.adopt(newest)
