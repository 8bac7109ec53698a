"""The replicas a range sync compares, seen alike: this node's own (LocalSide) and another node's (RemoteSide).

Why one shape: the node that runs a sync is itself one of the range's replicas, and compares all of them
the same way (kvstore.cluster.sync); the peer port's sync calls are the LocalSide of the node they reach.

Each side answers, for one range: its hash-tree hashes (branches, or the leaves of some branches), the
(key, timestamp, digest) entries of some leaves (whole leaves, within the answer budget), cells by key
(through the replica read call, budgeted), and takes cells through the normal replica write path
(durable in the commit log before it counts). A range takes one sync session at a time on each node
(RangeLeases): a second is refused, naming the first, until the first finishes or goes quiet for
LEASE_SECONDS (a sync whose runner crashed frees its ranges by itself), unless the second is run by the
same node: a node runs one sync of a range at a time, so its older session is one it lost in a crash.
"""
import time

from kvstore.core.config import MAX_ANSWER_BYTES
from kvstore.core.errors import InvalidRequest, StorageError
from kvstore.core.hashtree import BRANCHES, LEAVES, digest
from kvstore.core.ring import TokenRange
from kvstore.net.wire import from_cell, to_mutation
from kvstore.storage.store import FROM_THE_FUTURE
from kvstore_rpc import ttypes

LEASE_SECONDS = 10.0
SESSION_BITS = 40   # a session is its runner's node id above SESSION_BITS random bits (session_for)


def session_for(node_id, random_bits):
    """A sync session's number: which node runs it, and which of its syncs it is."""
    return (node_id + 1) << SESSION_BITS | (random_bits & ((1 << SESSION_BITS) - 1))
ENTRY_BYTES = 24   # what one entry costs beyond its key (timestamp, digest, field headers)


class RangeLeases:
    """Which sync session holds each range on this node."""

    def __init__(self, clock=time.monotonic):
        self._held = {}   # TokenRange -> (session, last used)
        self._clock = clock

    def take(self, token_range, session):
        now = self._clock()
        held = self._held.get(token_range)
        if (held is not None and held[0] != session and now - held[1] < LEASE_SECONDS
                and held[0] >> SESSION_BITS != session >> SESSION_BITS):
            raise InvalidRequest(f"range {token_range} is already being synced (session {held[0]}): one sync of a "
                                 "range at a time")
        self._held[token_range] = (session, now)

    def release(self, token_range, session):
        if self._held.get(token_range, (None,))[0] == session:
            del self._held[token_range]


class LocalSide:
    """This node's replica of its ranges, for a sync run here or called from a peer."""

    def __init__(self, node_id, trees, storage, leases, history, disk):
        self.node_id = node_id
        self._trees = trees
        self._storage = storage
        self._leases = leases
        self._history = history
        self._disk = disk

    async def hashes(self, session, token_range, branches):
        tree = self._tree(session, token_range)
        if not branches:
            return list(tree.branches)
        if len(branches) > BRANCHES or any(not 0 <= b < BRANCHES for b in branches):
            raise InvalidRequest(f"branches are numbered 0 to {BRANCHES - 1}, at most {BRANCHES} in one call")
        return [h for b in branches for h in tree.leaf_hashes(b)]

    async def entries(self, session, token_range, leaves):
        """([(key, timestamp, digest)], how many of the leaves asked for they cover)."""
        tree = self._tree(session, token_range)
        if not leaves or len(leaves) > LEAVES or any(not 0 <= leaf < LEAVES for leaf in leaves):
            raise InvalidRequest(f"leaves are numbered 0 to {LEAVES - 1}, 1 to {LEAVES} in one call")
        found, left, answered = [], MAX_ANSWER_BYTES, 0
        for leaf in leaves:
            keys = tree.keys_in(leaf)
            size = sum(len(k) + ENTRY_BYTES for k in keys)
            if answered and size > left:
                break
            for key in keys:
                cell = self._storage.get(key)
                if cell is not None:
                    found.append((key, cell.timestamp, digest(key, cell)))
            left -= size
            answered += 1
        return found, answered

    async def cells(self, session, token_range, leaves):
        """([(key, cell)] of every key in whole leaves, how many of the leaves asked for they cover)."""
        tree = self._tree(session, token_range)
        if not leaves or len(leaves) > LEAVES or any(not 0 <= leaf < LEAVES for leaf in leaves):
            raise InvalidRequest(f"leaves are numbered 0 to {LEAVES - 1}, 1 to {LEAVES} in one call")
        found, left, answered, get = [], MAX_ANSWER_BYTES, 0, self._storage.get
        for leaf in leaves:
            cells = [(key, get(key)) for key in tree.keys_in(leaf)]
            size = sum(len(k) + len(c.value or b"") + ENTRY_BYTES for k, c in cells if c is not None)
            if answered and size > left:
                break
            found.extend(item for item in cells if item[1] is not None)
            left -= size
            answered += 1
        return found, answered

    async def read(self, session, token_range, keys):
        """[(key, cell or None)] for a prefix of keys (at least one) that fits in the answer budget."""
        self._tree(session, token_range)
        found, left = [], MAX_ANSWER_BYTES
        for key in keys:
            if key not in token_range:
                raise InvalidRequest(f"a key asked for is not in range {token_range}")
            cell = self._storage.get(key)
            left -= len(key) + len(cell.value or b"") + ENTRY_BYTES if cell is not None else len(key)
            if found and left < 0:
                break
            found.append((key, cell))
        return found

    async def write(self, items):
        """Apply cells (key, cell) through the write path: durable before this returns."""
        answers = await self._storage.apply_all(items)
        refused = answers.count(FROM_THE_FUTURE)
        if refused:
            raise InvalidRequest(f"node {self.node_id} refused {refused} cells stamped ahead of its clock")

    async def finished(self, session, token_range, since):
        try:
            if since > 0:
                records = self._history.recorded(token_range, since, int(time.time() * 1e6))
                await self._disk.run(self._history.save, records)
        finally:
            self._leases.release(token_range, session)

    def _tree(self, session, token_range):
        if not session:
            raise InvalidRequest("a range sync names its session (a number other than 0)")
        tree = self._trees.tree(token_range)
        self._leases.take(token_range, session)
        return tree


class RemoteSide:
    """Another node's replica, over its peer link."""

    def __init__(self, node_id, link, timeout):
        self.node_id = node_id
        self._link = link
        self._timeout = timeout

    async def hashes(self, session, token_range, branches):
        return [h % 2**64 for h in await self._call("sync_hashes", session, _idl(token_range), branches)]

    async def entries(self, session, token_range, leaves):
        answer = await self._call("sync_entries", session, _idl(token_range), leaves)
        return [(e.key, e.timestamp, e.digest % 2**64) for e in answer.entries or []], answer.leaves

    async def cells(self, session, token_range, leaves):
        answer = await self._call("sync_cells", session, _idl(token_range), leaves)
        return [(m.key, from_cell(m.cell)) for m in answer.cells or []], answer.leaves

    async def read(self, session, token_range, keys):
        answers = await self._call("sync_read", session, _idl(token_range), keys)
        if not answers:
            raise StorageError(f"node {self.node_id} answered no keys of a read")
        return [(key, from_cell(a.cell)) for key, a in zip(keys, answers)]

    async def write(self, items):
        answers = await self._call("replica_write_batch", [to_mutation(k, c) for k, c in items])
        refused = list(answers or []).count(FROM_THE_FUTURE)
        if refused:
            raise InvalidRequest(f"node {self.node_id} refused {refused} cells stamped ahead of its clock")

    async def finished(self, session, token_range, since):
        await self._call("sync_finished", session, _idl(token_range), since)

    async def holds_any(self, token_range):
        """Whether this replica holds any cell of the range (a tombstone counts), by a scan of one cell: it
        needs no tree, so a node still building its trees answers too."""
        start, end = token_range.start + b"\x00", token_range.end + b"\x00"
        pieces = [(start, end)] if token_range.start < token_range.end else [(start, b""), (b"", end)]
        pages = await self._call("replica_scan_batch", [ttypes.KeyRange(s, e, 1) for s, e in pieces])
        return any(page.cells for page in pages or [])

    async def _call(self, method, *args):
        try:
            return await self._link.call(method, *args, timeout=self._timeout)
        except (ttypes.InvalidRequest, ttypes.StorageFailure) as exc:
            raise InvalidRequest(f"node {self.node_id}: {exc.why}") from None


def _idl(token_range):
    return ttypes.TokenRange(token_range.start, token_range.end)


def from_idl_range(value):
    """A TokenRange from the IDL's; InvalidRequest when a bound is missing."""
    if value is None or value.start_token is None or value.end_token is None:
        raise InvalidRequest("a token range needs a start and an end")
    return TokenRange(value.start_token, value.end_token)


def signed(value):
    """A 64-bit digest as the IDL's i64."""
    return value - 2**64 if value >= 2**63 else value
