"""The coordinator: how one node serves a client's request for the whole ring.

A write (put, delete, expire, a batch): find each key's replicas; a key with
fewer alive than the level needs fails with Unavailable and writes nothing.
Otherwise stamp the cell, send it to every live remote replica through its
channel (a batch's keys for one replica go in one call), write the local
replica in this thread (a batch's local keys share one fsync), hint the
replicas that are down, and answer once `block_for` replicas acknowledged.
Replicas that fail or miss the deadline get a hint too, stored by a task of
the node's. Everything runs on the node's loop: a request sends, then awaits
its replicas' answers (responses.py) under its deadline.

A read: ask every live replica at once (at ONE, a node holding the key reads only
its own copy, unless a session asks for more), answer from the first `block_for`
answers with the newest cell (a tombstone or an expired cell reads as absent),
repairing the stale ones among them before answering (so a later QUORUM read
cannot see older data) and late ones in the background (repairing.py). With a session
timestamp the first answers do not reach, wait for every live replica, and
raise StaleRead if none has it. A scan walks the token ranges in byte order,
reads each from its replicas at the level and merges them (scanning.py).

Every request has one deadline, set when it arrives and passed down the fan-out.
"""
import asyncio
import logging
import time
from typing import NamedTuple

from kvstore.cell import Cell, reconcile, seconds_left, tombstone, visible
from kvstore.clock import ClockOffsetError, ClockTooFarOff, ReservationNeeded
from kvstore.consistency import block_for
from kvstore.errors import ClockOffset, ConnectFailed, InvalidRequest, StaleRead, StorageError, TimedOut, Unavailable
from kvstore.notation import show
from kvstore.responses import Responses, reasons
from kvstore.repairing import Repairing
from kvstore.scanning import Scanning
from kvstore.storage import FROM_THE_FUTURE

log = logging.getLogger(__name__)

REFUSED_AHEAD = "refused its timestamp: more than --max-clock-offset ahead of that node's clock"


class WriteOutcome(NamedTuple):
    timestamp: int
    acknowledged: list
    hinted: list


class ReadOutcome(NamedTuple):
    cell: Cell          # the newest visible cell; None when absent, deleted or expired
    answered: list
    repaired: list


class Coordinator(Scanning, Repairing):
    def __init__(self, local_id, ring, replicas, detector, hints, clock, timeout, background):
        """replicas: {node_id: LocalReplica or RemoteReplica} (see replicas.py); background: the node's
        kvstore.tasks.Background, which stores hints and repairs no request waits for."""
        self._background = background
        self._local_id = local_id
        self._ring = ring
        self._replicas = replicas
        self._detector = detector
        self._hints = hints
        self._clock = clock
        self._timeout = timeout

    def _plan(self, ids, level):
        """(live replica ids, the local one last: remote requests are queued before it runs; down replica ids;
        answers needed); Unavailable if too few are alive."""
        needed = block_for(level, len(ids))
        local, is_up = self._local_id, self._detector.is_up
        alive = [i for i in ids if i != local and is_up(i)]
        if local in ids:
            alive.append(local)
        if len(alive) < needed:
            raise Unavailable(len(alive), needed, level.name, len(ids))
        return alive, [i for i in ids if i not in alive], needed

    def _by_node(self, requests_by_key):
        """[(node_id, [request])] from [(live ids, make_request(node_id))]: the local node last."""
        grouped = {}
        for alive, request in requests_by_key:
            for node_id in alive:
                grouped.setdefault(node_id, []).append(request(node_id))
        return sorted(grouped.items(), key=lambda item: item[0] == self._local_id)

    # ---- writes ----

    # Every write takes a floor: the newest timestamp its client's session has seen (0: none). It is stamped
    # above it, so a session's writes are ordered as it made them, whichever coordinators they go through.

    async def put(self, key, value, level, ttl=0, floor=0):
        return _raise_or_return((await self.put_many([(key, value)], level, ttl, floor))[0])

    async def delete(self, key, level, floor=0):
        return _raise_or_return((await self._write_many([(key, tombstone(await self._stamp(floor)))], level))[0])

    async def put_many(self, items, level, ttl=0, floor=0):
        """[(key, value)] -> one WriteOutcome or error per key, in order (not atomic across keys)."""
        now = await self._stamp(floor)
        expires = now + int(ttl * 1_000_000) if ttl else 0
        return await self._write_many([(key, Cell(value, now, expires)) for key, value in items], level)

    async def expire(self, key, seconds, level, min_timestamp=0):
        """Redis EXPIRE -> (found, WriteOutcome or None): read, write back expiring (<= 0 deletes); not atomic."""
        current = (await self.get(key, level, min_timestamp)).cell
        if current is None:
            return False, None
        if seconds <= 0:
            return True, await self.delete(key, level, min_timestamp)
        now = await self._stamp(min_timestamp)
        write = (await self._write_many([(key, Cell(current.value, now, now + int(seconds * 1_000_000)))],
                                        level))[0]
        return True, _raise_or_return(write)

    async def ttl(self, key, level, min_timestamp=0):
        """Redis TTL: seconds left (rounded up), -1 when the key never expires, -2 when it does not exist."""
        return seconds_left((await self.get(key, level, min_timestamp)).cell, self._clock.earliest())

    async def _write_many(self, writes, level, again=True):
        """A replica that already holds a newer cell of a key says so in its acknowledgement (its timestamp).
        When one did, the write is stamped again above it and sent again before it is acknowledged (once:
        again=False), so a write that began after another was acknowledged at a level that overlaps this
        one's wins over it, whatever the coordinators' clocks said."""
        deadline = time.monotonic() + self._timeout
        outcomes, pending = [None] * len(writes), []
        for index, (key, cell) in enumerate(writes):
            try:
                alive, down, needed = self._plan(self._ring.replica_ids(key), level)
            except (Unavailable, InvalidRequest) as exc:
                outcomes[index] = exc
                continue
            pending.append((index, key, cell, alive, down, Responses(needed, len(alive))))
        for node_id, requests in self._by_node(
                (alive, lambda n, k=key, c=cell, r=responses: (k, c, self._write_done(n, k, c, r)))
                for _, key, cell, alive, _, responses in pending):
            self._replicas[node_id].write_many_async(requests, deadline)
        hinting = [(index, node_id, self._background.spawn(self._store_hint(node_id, key, cell), "store-hint"))
                   for index, key, cell, _, down, _ in pending for node_id in down]
        hinted = {index: [] for index, *_ in pending}
        for index, node_id, task in hinting:
            if await task:
                hinted[index].append(node_id)
        later = []   # (index, key, the write stamped again above the newer cell a replica holds)
        for index, key, cell, _, down, responses in pending:
            if await responses.wait(deadline):
                acked, _ = responses.snapshot()
                newer = max((held or 0 for _, held in acked), default=0)
                outcomes[index] = WriteOutcome(cell.timestamp, [node_id for node_id, _ in acked], hinted[index])
                if again and newer > cell.timestamp:
                    try:
                        later.append((index, key, cell._replace(timestamp=await self._stamp(newer))))
                    except (ClockOffset, ClockOffsetError) as exc:   # its clock stepped, or no correct node stamped it
                        holders = ", ".join(str(n) for n, held in acked if held == newer)
                        outcomes[index] = TimedOut(f"the write could not be stamped again above the newer cell node "
                                                   f"{holders} holds: {exc}", len(acked), responses.needed)
            else:
                acked, failures = responses.snapshot()
                outcomes[index] = _write_failure(self._local_id, level, len(acked), responses.needed, failures)
        if later:
            log.debug("%d writes stamped again above newer cells their replicas hold", len(later))
            for (index, _, _), outcome in zip(later, await self._write_many([(k, c) for _, k, c in later], level,
                                                                             False)):
                outcomes[index] = outcome
        return outcomes

    async def _stamp(self, floor=0):
        """A timestamp for a write (see kvstore.clock); ClockOffset when this node's clock is too far from its
        peers' to stamp one: it would stamp writes out of order, so it refuses them, by name."""
        try:
            while True:
                try:
                    return self._clock.now(floor)
                except ReservationNeeded as need:   # after an idle spell: one small fsync on the disk worker
                    error = await asyncio.shield(self._clock.renew(need.stamp))
                    if error is not None:
                        raise Unavailable(0, 1, message=f"Unavailable: node {self._local_id} cannot make its "
                                          f"clock's reservation durable ({error}); send the write to another node")
        except ClockTooFarOff as exc:
            raise ClockOffset(f"ClockOffset: node {self._local_id}'s clock is {exc.offset:+.3f} s from most of its "
                              f"peers', more than the {exc.allowed:g} s allowed (half of --max-clock-offset): it "
                              "coordinates no writes until its clock is fixed; send them to another node") from None

    def _write_done(self, node_id, key, cell, responses):
        """The callback of one write to one replica; a remote replica that missed it gets a hint."""
        def done(error, newer_held):
            if error is None and newer_held != FROM_THE_FUTURE:
                responses.ok(node_id, newer_held)   # 0 (None): this write is the replica's newest cell
                return
            if error is None:   # refused: this node checked its own clock, so that replica's is probably behind
                responses.fail(node_id, REFUSED_AHEAD)
            else:
                self._note_failure(node_id, error)
                responses.fail(node_id, str(error))
            if node_id != self._local_id:   # delivery backs off while a hint is refused
                self._background.spawn(self._store_hint(node_id, key, cell), "store-hint")
        return done

    def _note_failure(self, node_id, error):
        if isinstance(error, ConnectFailed):  # refused: it is down. A slow answer proves nothing.
            self._detector.mark_down(node_id, str(error))

    async def _store_hint(self, node_id, key, cell):
        """True once the hint is durable; False (logged) when it could not be stored: not reported as kept."""
        try:
            await self._hints.add(node_id, key, cell)
            return True
        except StorageError as exc:
            log.error("could not store a hint for node %d: %s", node_id, exc)
            return False

    # ---- reads ----

    async def get(self, key, level, min_timestamp=0):
        """The ReadOutcome of one key (get_many's steps, without a batch's bookkeeping: the hottest call)."""
        deadline = time.monotonic() + self._timeout
        self._clock.observe(min_timestamp)
        alive, responses = self._read_plan(key, level, min_timestamp)
        for node_id in alive:   # the local replica last
            self._replicas[node_id].read_many_async([(key, self._read_done(node_id, responses))], deadline)
        return await self._finish_read(key, level, responses, len(alive), deadline, min_timestamp)

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
        for node_id, requests in self._by_node(
                (alive, lambda n, k=key, r=responses: (k, self._read_done(n, r)))
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
        alive, _, needed = self._plan(self._ring.replica_ids(key), level)
        if needed == 1 and self._local_id in alive and not min_timestamp:
            alive = [self._local_id]   # ONE, and this node holds the key: its own copy answers, no RPC
        return alive, Responses(needed, len(alive))

    def _read_done(self, node_id, responses):
        def done(error, cell):
            if error is None:
                if isinstance(cell, Cell):   # a read's answer (a scan's is a page)
                    self._clock.observe(cell.timestamp)
                responses.ok(node_id, cell)
            else:
                self._note_failure(node_id, error)
                responses.fail(node_id, str(error))
        return done

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
                    f"StaleRead: no replica of {show(key)} that answered ({len(answers)} of {alive} alive"
                    f"{reasons(failures)}) has a write as new as this session's timestamp {min_timestamp}; "
                    f"the newest seen is {_timestamp(newest)}. The replica that took the write may be down: "
                    "retry later, or read at a higher level", min_timestamp, _timestamp(newest))
            needed = len(answers)
        repaired = await self._repair(key, newest, answers, needed, level, deadline, responses)
        used = {node_id for node_id, _ in answers}
        responses.when_complete(lambda everyone: self._repair_late(key, everyone, used, newest))
        # Only a cell that expires needs the cluster's now (a median over the peers' clocks) to be judged.
        now = self._clock.earliest() if newest is not None and newest.expires else 0
        return ReadOutcome(visible(newest, now), [node_id for node_id, _ in answers], repaired)


def _timestamp(cell):
    return 0 if cell is None else cell.timestamp


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
