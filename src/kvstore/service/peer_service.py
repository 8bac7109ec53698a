"""The internode service (Internode, on the peer port): what other nodes call on this one.

Coordinators write to and read from this replica, the failure detector sends
heartbeats, and hint hand-off delivers the writes a coordinator held while
this node was down. One method per IDL method: validate, apply to storage, map
errors to the IDL's. None of it is reachable from the client port.
"""
import logging

from kvstore.core import errors
from kvstore.core.config import MAX_ANSWER_BYTES, entry_bytes
from kvstore.net.codec import Later
from kvstore.service.client_service import MAX_SCAN_LIMIT, check_key
from kvstore.net.wire import from_cell, to_cell, to_mutation
from kvstore.storage.store import FROM_THE_FUTURE
from kvstore_rpc import ttypes

log = logging.getLogger(__name__)

MAX_SCAN_RANGES = 128   # ranges in one replica_scan_batch (a coordinator's batch holds at most channels.MAX_BATCH)


class AnswerBudget:
    """What one answer may still hold: MAX_ANSWER_BYTES, but always its first entry."""

    def __init__(self, limit=MAX_ANSWER_BYTES):
        self._left = limit
        self._empty = True

    def take(self, key, value):
        """True when key and value fit (and are now counted); False once the answer is full."""
        size = entry_bytes(key, value)
        if size > self._left and not self._empty:
            return False
        self._left -= size
        self._empty = False
        return True


class InternodeHandler:
    def __init__(self, node_id, generation, storage, hints, detector, settings, membership, clock,
                 readable=lambda key: True):
        """generation: when this node process started (microseconds): a new one tells peers it restarted;
        membership: kvstore.cluster.membership.Membership (a heartbeat from a node not in its ring is refused; the
        answer carries its epoch); readable(key):
        False while this node, being replaced, has not synced key's range (reads of it are refused)."""
        self._node_id = node_id
        self._readable = readable
        self._membership = membership
        self._clock = clock
        self._generation = generation
        self._storage = storage
        self._hints = hints
        self._detector = detector
        self._settings = settings

    def _check_key(self, key):
        check_key(key, self._settings.max_key_bytes)

    def _check_readable(self, key):
        if not self._readable(key):
            raise errors.InvalidRequest(f"node {self._node_id} is being replaced and has not synced this key's "
                                        "range yet: it answers no reads of it")

    async def replica_write(self, mutation):
        with REPLICA_ERRORS:
            await self._apply_all([self._check_mutation(mutation)])

    def replica_read(self, key):
        with REPLICA_ERRORS:
            self._check_key(key)
            self._check_readable(key)
            return ttypes.ReadResult(to_cell(self._storage.get(key)), [self._node_id], [])

    def replica_write_batch(self, mutations):
        """The batch's answers, settled from the disk worker's completion (the hottest call: no coroutine, no
        task, no future; see Storage.apply_all_then)."""
        with REPLICA_ERRORS:
            checked = [self._check_mutation(m) for m in mutations or []]

        def start(settle):
            def done(error, answers):
                if error is None:
                    settle(None, answers)
                    return
                try:
                    with REPLICA_ERRORS:
                        raise error
                except Exception as mapped:
                    settle(mapped, None)
            self._storage.apply_all_then(checked, done)
        return Later(start)

    def replica_scan_batch(self, ranges):
        with REPLICA_ERRORS:
            ranges = ranges or []
            if len(ranges) > MAX_SCAN_RANGES:
                raise errors.InvalidRequest(f"a scan batch of {len(ranges)} ranges is over the limit of "
                                            f"{MAX_SCAN_RANGES}")
            pages, budget = [], AnswerBudget()
            for request in ranges:
                if request is None or request.start is None or not request.limit or request.limit < 0:
                    raise errors.InvalidRequest("a range needs a start and a positive limit")
                self._check_readable(request.start or b"\x00")
                limit = min(request.limit, MAX_SCAN_LIMIT)
                cells, truncated = [], False
                for key, cell in self._storage.scan(request.start, request.end_key or None, limit):
                    if not budget.take(key, cell.value):
                        truncated = True
                        break
                    cells.append(to_mutation(key, cell))
                pages.append(ttypes.ReplicaPage(cells, truncated))
            return pages

    def replica_read_batch(self, keys):
        with REPLICA_ERRORS:
            for key in keys or []:
                self._check_key(key)
                self._check_readable(key)
            answers, budget = [], AnswerBudget()
            for key in keys or []:
                cell = self._storage.get(key)
                if not budget.take(key, cell.value if cell is not None else None):
                    break   # the answer is full: the caller asks again for the keys after the last answered
                answers.append(ttypes.ReadResult(to_cell(cell), [self._node_id], []))
            return answers

    async def deliver_hints(self, mutations):
        with REPLICA_ERRORS:
            await self._apply_all([self._check_mutation(m) for m in mutations or []])

    async def _apply_all(self, mutations):
        """Apply, or InvalidRequest naming the cells refused as from the future (the others are applied)."""
        refused = (await self._storage.apply_all(mutations)).count(FROM_THE_FUTURE)
        if refused:
            raise errors.InvalidRequest(f"{refused} of {len(mutations)} cells refused: stamped more than "
                                        f"--max-clock-offset ahead of node {self._node_id}'s clock (taken once "
                                        "its clock gets there; the others were applied)")

    def _check_mutation(self, mutation):
        if mutation is None or mutation.cell is None or mutation.cell.timestamp is None:
            raise errors.InvalidRequest("a mutation needs a key, a cell and a timestamp")
        self._check_key(mutation.key)
        self._clock.observe(mutation.cell.timestamp)   # a cell seen: this node stamps later writes above it
        return mutation.key, from_cell(mutation.cell)

    def heartbeat(self, from_node):
        if not self._membership.is_peer(from_node):
            log.warning("refusing a heartbeat from node %s: not another node of this ring (%s)", from_node,
                        ", ".join(str(n.node_id) for n in self._membership.placement.nodes))
            raise ttypes.InvalidRequest(why=f"node {from_node} is not another node of this node's ring: check that "
                                            "every node has the same cluster file")
        self._detector.mark_up(from_node)
        return ttypes.Heartbeat(self._node_id, self._generation, self._clock.read(), self._clock.newest(),
                                self._membership.epoch)


class ReplicaErrors:
    """`with REPLICA_ERRORS:` raises a replica's errors as the IDL's, for every call on the peer port (its range
    syncs' too: kvstore.service.sync_calls) (a class, not a generator: it is entered
    on every internode call)."""
    __slots__ = ()

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, traceback):
        if isinstance(exc, errors.StorageError):
            log.error("replica write failed: %s", exc)
            raise ttypes.StorageFailure(why=str(exc)) from None
        if isinstance(exc, errors.InvalidRequest):
            raise ttypes.InvalidRequest(why=str(exc)) from None
        return False


REPLICA_ERRORS = ReplicaErrors()
