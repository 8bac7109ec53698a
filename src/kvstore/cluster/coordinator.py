"""The coordinator: how one node serves a client's request for the whole ring.

A write (put, delete, expire, a batch): find each key's replicas; a key with
fewer alive than the level needs fails with Unavailable and writes nothing.
Otherwise stamp the cell, send it to every live replica (the local one through
the disk worker), hint the replicas that are down, and answer once
`block_for` replicas acknowledged (write.py). Everything runs on the node's
loop: a request sends, then awaits its replicas' answers (quorum.py) under
its deadline.

A read: ask every live replica at once (at ONE, a node holding the key reads only
its own copy, unless a session asks for more), answer from the first `block_for`
answers with the newest cell (a tombstone or an expired cell reads as absent),
repairing the stale ones among them before answering (so a later QUORUM read
cannot see older data) and late ones in the background (read_repair.py). With a session
timestamp the first answers do not reach, wait for every live replica, and
raise StaleRead if none has it. A scan walks the token ranges in byte order,
reads each from its replicas at the level and merges them (scan.py).

Every request has one deadline, set when it arrives and passed down the fan-out.
"""
import functools
import time
from typing import NamedTuple

from kvstore.cluster.fanout import Fanout
from kvstore.cluster.quorum import Responses, reasons
from kvstore.cluster.read_repair import ReadRepair
from kvstore.cluster.scan import Scanner
from kvstore.cluster.write import Writer
from kvstore.core.cell import Cell, reconcile, seconds_left, tombstone, visible
from kvstore.core.config import MAX_ANSWER_BYTES
from kvstore.core.errors import InvalidRequest, StaleRead, TimedOut, Unavailable
from kvstore.core.notation import show


def _counted(method):
    """A request counted in flight under the epoch it began with, until it ends."""
    @functools.wraps(method)
    async def counted(self, *args, **kwargs):
        epoch, in_flight = self._ring.epoch, self._in_flight
        in_flight[epoch] = in_flight.get(epoch, 0) + 1
        try:
            return await method(self, *args, **kwargs)
        finally:
            in_flight[epoch] -= 1
            if not in_flight[epoch]:
                del in_flight[epoch]
    return counted


class ReadOutcome(NamedTuple):
    cell: Cell          # the newest visible cell; None when absent, deleted or expired
    answered: list
    repaired: list


class Coordinator:
    def __init__(self, local_id, ring, replicas, detector, hints, clock, timeout, background,
                 readable=lambda key: True):
        """ring: the kvstore.core.ring_state.Placement requests are planned with (reshape: a new one, when the
        ring changes); replicas: {node_id: LocalReplica or RemoteReplica} (see replicas.py); background: the node's
        kvstore.core.tasks.Background, which stores hints and repairs no request waits for; readable(key): False
        while this node, being replaced, has not synced key's range (its own copy then never answers alone)."""
        self._local_id = local_id
        self._readable = readable
        self._ring = ring
        self._in_flight = {}   # epoch -> requests planned with it still running (Membership waits them out)
        self._replicas = replicas
        self._clock = clock
        self._timeout = timeout
        self._fanout = Fanout(local_id, detector, clock)
        self._writer = Writer(ring, replicas, self._fanout, hints, clock, timeout, background)
        self._repair = ReadRepair(local_id, replicas, self._writer, timeout, background)
        self._scanner = Scanner(ring, replicas, self._fanout, self._repair, clock, timeout)

    def planned_before(self, epoch):
        """How many requests still running were planned with an epoch older than epoch."""
        return sum(count for planned, count in self._in_flight.items() if planned < epoch)

    def reshape(self, placement):
        """Plan every request from now on with placement (a new ring epoch)."""
        self._ring = placement
        self._writer.reshape(placement)
        self._scanner.reshape(placement)

    # ---- writes ----

    # Every write takes a floor: the newest timestamp its client's session has seen (0: none). It is stamped
    # above it, so a session's writes are ordered as it made them, whichever coordinators they go through.

    @_counted
    async def put(self, key, value, level, ttl=0, floor=0):
        now = await self._writer.stamp(floor)
        return await self._writer.write_one(key, Cell(value, now, _expires(now, ttl)), level)

    @_counted
    async def delete(self, key, level, floor=0):
        return await self._writer.write_one(key, tombstone(await self._writer.stamp(floor)), level)

    @_counted
    async def put_many(self, items, level, ttl=0, floor=0):
        """[(key, value)] -> one WriteOutcome or error per key, in order (not atomic across keys)."""
        now = await self._writer.stamp(floor)
        expires = _expires(now, ttl)
        return await self._writer.write_many([(key, Cell(value, now, expires)) for key, value in items], level)

    @_counted
    async def expire(self, key, seconds, level, min_timestamp=0):
        """Redis EXPIRE -> (found, WriteOutcome or None): read, write back expiring (<= 0 deletes); not atomic."""
        current = (await self.get(key, level, min_timestamp)).cell
        if current is None:
            return False, None
        if seconds <= 0:
            return True, await self.delete(key, level, min_timestamp)
        now = await self._writer.stamp(min_timestamp)
        return True, await self._writer.write_one(key, Cell(current.value, now, _expires(now, seconds)), level)

    @_counted
    async def ttl(self, key, level, min_timestamp=0):
        """Redis TTL: seconds left (rounded up), -1 when the key never expires, -2 when it does not exist."""
        return seconds_left((await self.get(key, level, min_timestamp)).cell, self._clock.earliest())

    # ---- reads ----

    @_counted
    async def scan(self, start, end, limit, level, max_bytes=MAX_ANSWER_BYTES):
        """(items, resume key or None): the live keys in [start, end) at level; see Scanner.scan."""
        return await self._scanner.scan(start, end, limit, level, max_bytes)

    @_counted
    async def get(self, key, level, min_timestamp=0):
        """The ReadOutcome of one key (get_many's steps, without a batch's bookkeeping: the hottest call)."""
        deadline = time.monotonic() + self._timeout
        self._clock.observe(min_timestamp)
        alive, responses = self._read_plan(key, level, min_timestamp)
        for node_id in alive:   # the local replica last
            self._replicas[node_id].read_many_async([(key, self._fanout.read_done(node_id, responses))], deadline)
        return await self._finish_read(key, level, responses, len(alive), deadline, min_timestamp)

    @_counted
    async def get_many(self, keys, level, min_timestamps=None):
        """[key] -> one ReadOutcome or error per key, in order. min_timestamps: {key: session timestamp}."""
        deadline = time.monotonic() + self._timeout
        min_timestamps = min_timestamps or {}
        self._clock.observe(max(min_timestamps.values(), default=0))
        outcomes, pending = [None] * len(keys), []
        for index, key in enumerate(keys):
            try:
                alive, responses = self._read_plan(key, level, min_timestamps.get(key))
            except (Unavailable, InvalidRequest) as exc:
                outcomes[index] = exc
                continue
            pending.append((index, key, alive, responses))
        for node_id, requests in self._fanout.by_node(
                (alive, lambda n, k=key, r=responses: (k, self._fanout.read_done(n, r)))
                for _, key, alive, responses in pending):
            self._replicas[node_id].read_many_async(requests, deadline)
        for index, key, alive, responses in pending:
            try:
                outcomes[index] = await self._finish_read(key, level, responses, len(alive), deadline,
                                                          min_timestamps.get(key, 0))
            except (TimedOut, StaleRead) as exc:
                outcomes[index] = exc
        return outcomes

    def _read_plan(self, key, level, min_timestamp):
        """(the replicas to ask, the local one last; the Responses their answers go to)."""
        alive, _, needed = self._fanout.plan(self._ring.replica_ids(key), level)
        if needed == 1 and self._local_id in alive and not min_timestamp and self._readable(key):
            alive = [self._local_id]   # ONE, and this node holds the key: its own copy answers, no RPC
        return alive, Responses(needed, len(alive))

    async def _finish_read(self, key, level, responses, alive, deadline, min_timestamp):
        needed = responses.needed
        if not await responses.wait(deadline):
            answered, failures = responses.snapshot()
            raise TimedOut(f"{level.name} read needs {needed} replicas, {len(answered)} answered in time"
                           + reasons(failures), len(answered), needed)
        answers, _ = responses.snapshot()
        newest = reconcile(cell for _, cell in answers)
        if min_timestamp and _timestamp(newest) < min_timestamp:
            # Read-your-writes: the first answers are older than this session has seen; ask the rest.
            await responses.wait(deadline, needed=alive)
            answers, failures = responses.snapshot()
            newest = reconcile(cell for _, cell in answers)
            if _timestamp(newest) < min_timestamp:
                raise StaleRead(
                    f"no replica of {show(key, 60)} that answered ({len(answers)} of {alive} alive"
                    f"{reasons(failures)}) has a write as new as this session's timestamp {min_timestamp}; "
                    f"the newest seen is {_timestamp(newest)}. The replica that took the write may be down: "
                    "retry later, or read at a higher level", min_timestamp, _timestamp(newest))
            needed = len(answers)
        repaired = await self._repair.before_answer(key, newest, answers, needed, level, deadline, responses)
        used = {node_id for node_id, _ in answers}
        responses.when_complete(lambda everyone: self._repair.after_everyone(key, everyone, used, newest))
        # Only a cell that expires needs the cluster's now (a median over the peers' clocks) to be judged.
        now = self._clock.earliest() if newest is not None and newest.expires else 0
        return ReadOutcome(visible(newest, now), [node_id for node_id, _ in answers], repaired)


def _expires(now, seconds):
    """When a write stamped `now` expires, `seconds` later (microseconds); 0: it never does (no seconds)."""
    return now + int(seconds * 1_000_000) if seconds else 0


def _timestamp(cell):
    return 0 if cell is None else cell.timestamp


