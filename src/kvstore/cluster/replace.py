"""Replacing a node that lost its data: it takes writes at once, answers no reads of a range until that range
is synced from all its other replicas, and is an ordinary node once every range is.

Why: a node whose disk was replaced comes back empty; answering ONE reads from it would return "not found"
for keys its peers acknowledged, which is data loss from the client's side. So a node that starts on an empty
data directory asks its peers first (refuse_if_lost): if they hold data of the ranges it holds, it was not a
new node but a lost one, and it refuses to start without --replace, saying so (before it listens, so that
nothing mistakes it for a node that started). With --replace (and after a
crash part-way, from the marker it keeps, kvstore.storage.replace_marker), its ranges start "syncing"
(kvstore.cluster.range_trees: no reads of them), and it repairs each of them with all their replicas,
again until each has been repaired in full, marking each readable as it is done.

Its clock: a replaced node lost the reservation that kept its clock above what it had stamped; before it
serves, it has heard every live peer's heartbeat, which carries the newest stamp each has issued or seen
(kvstore.core.clock.heard), and it stamps above those.
"""
import asyncio
import logging

from kvstore.core.errors import ConfigError, KVStoreError

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0   # between passes over the ranges not synced yet (a replica down, a range busy)


class Replacement:
    def __init__(self, node_id, trees, repairs, remotes, detector, marker, disk):
        self._node_id = node_id
        self._trees = trees
        self._repairs = repairs
        self._remotes = remotes
        self._detector = detector
        self._marker = marker
        self._disk = disk
        self._background = None

    def begin(self, replace, fresh, data_dir):
        """At start-up, before the node serves: the ranges still to sync (a replace asked for, or one a crash
        interrupted). ConfigError when --replace is given for a data directory that holds data."""
        pending = self._marker.load(self._trees.held)
        if replace and pending is None:
            if not fresh:
                raise ConfigError(f"--replace starts a node on an empty data directory, and {data_dir} holds node "
                                  f"{self._node_id}'s data: start it without --replace (./server.sh restart "
                                  f"{self._node_id}), or delete the directory to replace the node")
            pending = set(self._trees.held)
            self._marker.save(pending)
        self._trees.syncing = set(pending or ())
        if pending:
            log.info("being replaced: %d ranges to sync from their other replicas before this node answers reads "
                     "of them", len(pending))
        return self._trees.syncing

    async def refuse_if_lost(self, data_dir, timeout):
        """On an empty data directory without --replace, before the node listens: ConfigError if a peer holds data
        of a range this node holds (this node lost its data); nothing if none does, or none answers in timeout."""
        asked = [(node_id, token_range) for token_range in self._trees.held
                 for node_id in self._trees.replicas[token_range] if node_id in self._remotes]
        answers = await asyncio.gather(*(asyncio.wait_for(self._holds_data(node_id, token_range), timeout)
                                         for node_id, token_range in asked), return_exceptions=True)
        holders = sorted({node_id for (node_id, _), holds in zip(asked, answers) if holds is True})
        if holders:
            raise ConfigError(
                f"the data directory {data_dir} is empty, but {_holders(holders)} data of the "
                f"ranges node {self._node_id} holds: this node lost its data, and answering reads now would answer "
                f"'not found' for what they acknowledged. Start it with ./server.sh replace {self._node_id} (or "
                "--replace): it syncs its ranges before it answers reads of them")

    async def _holds_data(self, node_id, token_range):
        try:
            return await self._remotes[node_id].holds_any(token_range)
        except KVStoreError as exc:
            log.info("could not ask node %d whether it holds data of range %s: %s", node_id, token_range, exc)
            return None

    def start(self, background):
        """Sync the ranges not synced yet, in a task of background (the node's), which ends it when it stops."""
        if self._trees.syncing:
            self._background = background
            background.spawn(self._run(), f"replace-node{self._node_id}")

    async def _run(self):
        while self._trees.syncing and not self._background.stopping:
            try:
                await self._repairs.start(sorted(self._trees.syncing), "replace", on_full=self._synced)
            except KVStoreError as exc:   # another repair runs here: wait for it
                log.debug("replace waits: %s", exc)
            except Exception:   # logged, never silent; the ranges left are tried again
                log.exception("replace: a pass over the ranges not synced yet failed")
            if self._trees.syncing:
                await asyncio.sleep(RETRY_SECONDS)
        if self._trees.syncing:
            return   # stopping: what is left stays in the marker, for the next start
        await self._disk.run(self._marker.remove)
        log.info("replace complete: every range synced from its replicas; an ordinary node from now on")

    async def _synced(self, token_range):
        self._trees.syncing.discard(token_range)
        await self._disk.run(self._marker.save, set(self._trees.syncing))
        log.info("range %s synced: reads of it answered from now on (%d ranges to go)", token_range,
                 len(self._trees.syncing))


def _holders(ids):
    return f"node {ids[0]} holds" if len(ids) == 1 else f"nodes {', '.join(map(str, ids))} hold"
