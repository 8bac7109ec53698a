"""Writer: a coordinator's write path. Stamp, fan out to every live replica, hint the
ones that are down or miss the deadline, wait for the level's acknowledgements, and stamp again above a
newer cell that a replica says it holds.

A write's cell is sent to each live remote replica through its channel (a batch's keys for one replica go
in one call) and applied to the local replica through the disk worker (a batch's local keys share one fsync):
a single key's write goes to its first remote replica, then to the local one, then to the others; a batch's
go to the local replica last. Replicas that are down, fail, or miss the deadline get a hint, stored by a task
of the node's; a hint that could not be stored is not reported as kept. A replica that already holds a newer
cell of a key says so in its acknowledgement (its timestamp): the write is then stamped again above it and
sent again before it is acknowledged (once), so a write that began after another was acknowledged at a level
that overlaps this one's wins over it, whatever the coordinators' clocks said.
"""
import asyncio
import logging
import time
from typing import NamedTuple

from kvstore.core.clock import ClockOffsetError, ClockTooFarOff, ReservationNeeded
from kvstore.core.errors import ClockOffset, InvalidRequest, StorageError, TimedOut, Unavailable
from kvstore.cluster.quorum import reasons
from kvstore.storage.store import FROM_THE_FUTURE

log = logging.getLogger(__name__)

REFUSED_AHEAD = "refused its timestamp: more than --max-clock-offset ahead of that node's clock"


class WriteOutcome(NamedTuple):
    timestamp: int
    acknowledged: list
    hinted: list


class Writer:
    def __init__(self, ring, replicas, fanout, hints, clock, timeout, background):
        """ring: the kvstore.core.ring_state.Placement writes are planned with (reshape: a new one); replicas:
        {node_id: LocalReplica or RemoteReplica}; background: the node's kvstore.core.tasks.Background,
        which stores the hints no request waits for."""
        self._ring = ring
        self._replicas = replicas
        self._fanout = fanout
        self._local_id = fanout.local_id
        self._hints = hints
        self._clock = clock
        self._timeout = timeout
        self._background = background

    def reshape(self, placement):
        self._ring = placement

    async def write_one(self, key, cell, level, again=True):
        """One key's WriteOutcome, or its error raised: _write_many's steps without a batch's bookkeeping (the
        hottest write)."""
        deadline = time.monotonic() + self._timeout
        alive, down, responses = self._fanout.plan_write(self._ring.write_groups(key), level)
        for node_id in _local_second(alive, self._local_id):
            self._replicas[node_id].write_many_async([(key, cell, self.write_done(node_id, key, cell, responses))],
                                                     deadline)
        hinting = [(node_id, self._background.spawn(self._store_hint(node_id, key, cell), "store-hint"))
                   for node_id in down]
        hinted = [node_id for node_id, task in hinting if await task]
        outcome, again_above = await self._acknowledged(cell, level, responses, hinted, deadline, again)
        if again_above is not None:
            log.debug("a write stamped again above a newer cell its replicas hold")
            outcome = await self.write_one(key, again_above, level, False)
        return _raise_or_return(outcome)

    async def write_many(self, writes, level, again=True):
        """[(key, cell)] -> one WriteOutcome or error per key, in order; a batch's writes to one replica go in
        one call (and, on the replica, one fsync)."""
        deadline = time.monotonic() + self._timeout
        outcomes, pending = [None] * len(writes), []
        for index, (key, cell) in enumerate(writes):
            try:
                alive, down, responses = self._fanout.plan_write(self._ring.write_groups(key), level)
            except (Unavailable, InvalidRequest) as exc:
                outcomes[index] = exc
                continue
            pending.append((index, key, cell, alive, down, responses))
        for node_id, requests in self._fanout.by_node(
                (alive, lambda n, k=key, c=cell, r=responses: (k, c, self.write_done(n, k, c, r)))
                for _, key, cell, alive, _, responses in pending):
            self._replicas[node_id].write_many_async(requests, deadline)
        hinting = [(index, node_id, self._background.spawn(self._store_hint(node_id, key, cell), "store-hint"))
                   for index, key, cell, _, down, _ in pending for node_id in down]
        hinted = {index: [] for index, *_ in pending}
        for index, node_id, task in hinting:
            if await task:
                hinted[index].append(node_id)
        later = []   # (index, key, the write stamped again above the newer cell a replica holds)
        for index, key, cell, _, _, responses in pending:
            outcomes[index], again_above = await self._acknowledged(cell, level, responses, hinted[index], deadline,
                                                                    again)
            if again_above is not None:
                later.append((index, key, again_above))
        if later:
            log.debug("%d writes stamped again above newer cells their replicas hold", len(later))
            for (index, _, _), outcome in zip(later, await self.write_many([(k, c) for _, k, c in later], level,
                                                                             False)):
                outcomes[index] = outcome
        return outcomes

    async def _acknowledged(self, cell, level, responses, hinted, deadline, again):
        """(the write's WriteOutcome or error, None; or, when again and a replica acknowledged holding a newer
        cell of the key, the write stamped again above it, to be sent again before it is acknowledged).

        That is how a write that began after another was acknowledged at a level that overlaps this one's wins
        over it, whatever the coordinators' clocks said."""
        if not await responses.wait(deadline):
            acked, failures = responses.snapshot()
            return _write_failure(self._local_id, level, len(acked), responses.needed, failures), None
        acked, _ = responses.snapshot()
        outcome = WriteOutcome(cell.timestamp, [node_id for node_id, _ in acked], hinted)
        newer = max((held or 0 for _, held in acked), default=0)
        if not again or newer <= cell.timestamp:
            return outcome, None
        try:
            return outcome, cell._replace(timestamp=await self.stamp(newer))
        except (ClockOffset, ClockOffsetError) as exc:   # its clock stepped, or no correct node stamped it
            holders = ", ".join(str(n) for n, held in acked if held == newer)
            return TimedOut(f"the write could not be stamped again above the newer cell node {holders} holds: "
                            f"{exc}", len(acked), responses.needed), None

    async def stamp(self, floor=0):
        """A timestamp for a write (see kvstore.core.clock); ClockOffset when this node's clock is too far from its
        peers' to stamp one: it would stamp writes out of order, so it refuses them, by name."""
        try:
            while True:
                try:
                    return self._clock.now(floor)
                except ReservationNeeded as need:   # after an idle spell: one small fsync on the disk worker
                    error = await asyncio.shield(self._clock.renew(need.stamp))
                    if error is not None:
                        raise Unavailable(0, 1, message=f"node {self._local_id} cannot make its clock's "
                                          f"reservation durable ({error}); send the write to another node") from None
        except ClockTooFarOff as exc:
            raise ClockOffset(f"ClockOffset: node {self._local_id}'s clock is {exc.offset:+.3f} s from most of its "
                              f"peers', more than the {exc.allowed:g} s allowed (half of --max-clock-offset): it "
                              "coordinates no writes until its clock is fixed; send them to another node") from None

    def write_done(self, node_id, key, cell, responses):
        """The callback of one write to one replica; a remote replica that missed it gets a hint."""
        def done(error, newer_held):
            if error is None and newer_held != FROM_THE_FUTURE:
                responses.ok(node_id, newer_held)   # 0 (None): this write is the replica's newest cell
                return
            if error is None:   # refused: this node checked its own clock, so that replica's is probably behind
                responses.fail(node_id, REFUSED_AHEAD)
            else:
                self._fanout.note_failure(node_id, error)
                responses.fail(node_id, str(error))
            if node_id != self._local_id:   # delivery backs off while a hint is refused
                self._background.spawn(self._store_hint(node_id, key, cell), "store-hint")
        return done

    async def _store_hint(self, node_id, key, cell):
        """True once the hint is durable; False (logged) when it could not be stored: not reported as kept."""
        try:
            await self._hints.add(node_id, key, cell)
            return True
        except StorageError as exc:
            log.error("could not store a hint for node %d: %s", node_id, exc)
            return False


def _local_second(alive, local_id):
    """alive (the local replica last) in the order a single write goes out: the first remote replica, then the
    local one, then the others. A quorum of a write whose coordinator holds the key is its own append and the
    first remote answer; the append waits for the disk worker to wake, so it is queued before the next remote
    call is encoded and sent, not after."""
    if len(alive) > 2 and alive[-1] == local_id:
        return [alive[0], local_id, *alive[1:-1]]
    return alive


def _raise_or_return(outcome):
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def _write_failure(local_id, level, acked, needed, failures):
    """TimedOut: the write may or may not have been applied; it names replicas that refused its timestamp as
    too far ahead of their clocks."""
    message = (f"{level.name} write needs {needed} acknowledgements, got {acked}{reasons(failures)}; "
               "the write may or may not have been applied (replicas that missed it will get a hint)")
    refused = sorted(node_id for node_id, why in failures.items() if why == REFUSED_AHEAD)
    if refused:
        message += (f". Clock offset: node {', '.join(map(str, refused))}'s clock is behind node {local_id}'s "
                    f"by more than --max-clock-offset (or node {local_id}'s ahead): see ./server.sh status")
    return TimedOut(message, acked, needed)
