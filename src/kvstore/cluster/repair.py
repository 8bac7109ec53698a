"""Repair: range sync run over whole ranges, by the operator or on a schedule, and recorded when it is full.

Why: read repair and hints heal only the keys someone reads and the outages shorter than the hint window.
A repair syncs every key of a range between all its replicas (kvstore.cluster.sync). One runs at a time on a
node, over the ranges it was given, one range after another; its fields and `fraction()` say how far it is.

A repair of a range is full when every replica of it took part and finished: then each records durably
(kvstore.storage.repair_history) that every write stamped before the repair began, less `margin` (the writes
that may still have been on their way: twice the request timeout and the clocks' allowed offset), is on all
of them, and tombstones below that stamp may go once past gc grace. A range with a replica down is synced
between those up, and reported failed, not recorded.

The schedule (`interval` seconds, 0: off): each node repairs the ranges it is the first replica of, so each
range has one node that repairs it, every interval, with the first round a random part of an interval after
start (nodes started together do not repair together), at work at most half the time (AUTOMATIC_DUTY) and
within --repair-rate-mb. The owner of the task is the node: start() and stop().
"""
import asyncio
import logging
import random
import time

from kvstore.cluster.sync import Pace, SyncFailed, SyncStats, sync_range
from kvstore.cluster.sync_sides import session_for
from kvstore.core.errors import InvalidRequest

log = logging.getLogger(__name__)

AUTOMATIC_DUTY = 0.5   # an automatic repair is at work at most half the time: client traffic keeps the rest
KINDS = {"repair": "a repair", "automatic": "an automatic repair", "replace": "a replace",
         "stream": "a stream of the ranges this node gains"}


class RepairService:
    def __init__(self, node_id, trees, local, remotes, detector, clock, history, *, rate, interval, margin, grace):
        """local: this node's LocalSide; remotes: {node_id: RemoteSide} of the others; rate: bytes a second
        (0: unbounded); interval: seconds between scheduled repairs (0: none); margin, grace: seconds."""
        self.node_id = node_id
        self._trees = trees
        self._local = local
        self._remotes = remotes
        self._detector = detector
        self._clock = clock
        self._history = history
        self._pace, self._automatic_pace = Pace(rate), Pace(rate, duty=AUTOMATIC_DUTY)
        self.interval = interval
        self._margin_us = int(margin * 1e6)
        self._grace_us = int(grace * 1e6)
        self._task = None          # the repair running, if any
        self._sides = None         # a stream's {range: ids to sync with}
        self._schedule = None      # the scheduler's task
        self.kind, self.failed, self.ranges_total, self.ranges_done = "", [], 0, 0
        self.stats, self.started, self.ended = SyncStats(), 0.0, 0.0

    # ---- running ----

    def start(self, ranges, kind, on_full=None, sides=None):
        """Repair ranges (each held here; none: every range held here) in the background; InvalidRequest when a
        repair is already running. on_full(range): awaited after each range repaired in full. sides: {range: the
        ids to sync it with} instead of all its replicas (a stream: not recorded as a full repair)."""
        if self._task is not None and not self._task.done():
            raise InvalidRequest(f"{KINDS.get(self.kind, self.kind)} is already running on node {self.node_id} "
                                 f"({self.ranges_done} of {self.ranges_total} ranges done)")
        for token_range in ranges:
            self._trees.tree(token_range)   # InvalidRequest for a range not held here
        self._sides = sides
        self._task = asyncio.get_running_loop().create_task(self.run(list(ranges) or self._trees.held, kind, on_full),
                                                            name=f"{kind}-node{self.node_id}")
        self._task.add_done_callback(_log_failure)
        return self._task

    async def run(self, ranges, kind, on_full=None):
        """Repair ranges one after another; returns the failures (empty: every range was repaired in full)."""
        self.kind, self.failed, self.ranges_total, self.ranges_done = kind, [], len(ranges), 0
        self.stats, self.started, self.ended = SyncStats(), time.time(), 0.0
        log.info("%s of %d ranges starting", kind, len(ranges))
        try:
            for token_range in ranges:
                if await self.repair(token_range) and on_full is not None:
                    await on_full(token_range)
                self.ranges_done += 1
        finally:
            self.ended = time.time()
        log.info("%s done in %.1f s: %d ranges, %d keys compared, %d cells in, %d cells out, %d bytes sent%s",
                 kind, self.ended - self.started, len(ranges), self.stats.keys_compared, self.stats.cells_in,
                 self.stats.cells_out, self.stats.bytes_sent,
                 "; failed: " + "; ".join(self.failed) if self.failed else "")
        return self.failed

    async def repair(self, token_range):
        """Sync one range between all its replicas that are up; True when it was a full repair."""
        streaming = self._sides is not None and self.kind == "stream"
        ids = self._sides[token_range] if streaming else self._trees.replicas[token_range]
        down = [i for i in ids if i != self.node_id and not self._detector.is_up(i)]
        sides = [self._local] + [self._remotes[i] for i in ids if i != self.node_id and i not in down]
        if len(sides) < 2:
            self.failed.append(f"range {token_range}: every other replica is down ({_names(down)})")
            return False
        session = session_for(self.node_id, random.getrandbits(62))
        since = self._clock.read() - self._margin_us
        horizon, now = self._history.since(token_range), self._clock.earliest()

        def purgeable(key, cell):
            return cell.value is None and cell.timestamp < horizon and cell.expires + self._grace_us <= now
        try:
            pace = self._automatic_pace if self.kind == "automatic" else self._pace
            await sync_range(token_range, sides, session, self.stats, pace, purgeable)
        except SyncFailed as exc:
            self.failed.append(f"range {token_range}: {exc}")
            await self._finish(sides, session, token_range, 0)
            return False
        full = not down and await self._finish(sides, session, token_range, 0 if streaming else since)
        if down:
            await self._finish(sides, session, token_range, 0)
            self.failed.append(f"range {token_range}: {_names(down)} down (synced between the others only)")
        return full

    async def _finish(self, sides, session, token_range, since):
        """Tell every side the session is over (recording the repair when since > 0); False if one failed."""
        results = await asyncio.gather(*(side.finished(session, token_range, since) for side in sides),
                                       return_exceptions=True)
        failed = [f"node {side.node_id}: {r}" for side, r in zip(sides, results) if isinstance(r, Exception)]
        if failed and since:
            self.failed.append(f"range {token_range}: synced, but not recorded on every replica ({'; '.join(failed)})")
        return not failed

    @property
    def running(self):
        return self._task is not None and not self._task.done()

    def range_states(self):
        """[(range, replica ids, last full repair finished (µs), its since stamp, readable, keys held)]."""
        return [(r, self._trees.replicas[r], self._history.finished(r), self._history.since(r),
                 r not in self._trees.syncing, self._trees.keys_in(r)) for r in self._trees.held]

    def fraction(self):
        """How far the repair running (or last run) is, from 0 to 1: ranges done, and leaves of the one under way."""
        if not self.ranges_total:
            return 0.0
        within = self.stats.leaves_done / self.stats.leaves_total if self.stats.leaves_total else 0.0
        return min(1.0, (self.ranges_done + (0.0 if self.ranges_done == self.ranges_total else within))
                   / self.ranges_total)

    def horizon(self):
        """For compaction: a function of a key, the stamp below which its range's tombstones are on every replica."""
        since = {r: self._history.since(r) for r in self._trees.held}
        range_of = self._trees.range_of
        return lambda key: since.get(range_of(key), 0)

    # ---- the schedule ----

    def start_schedule(self, background):
        if self.interval > 0:
            self._schedule = background.spawn(self._scheduled(), f"repair-schedule-node{self.node_id}")

    async def _scheduled(self):
        await asyncio.sleep(random.uniform(0.5, 1.0) * self.interval)
        while True:
            mine = [r for r in self._trees.held if self._trees.replicas[r][0] == self.node_id]
            if mine and not self.running:
                try:
                    await self.start(mine, "automatic")
                except Exception:   # a background task's failure is logged, never silent
                    log.exception("automatic repair failed")
            await asyncio.sleep(self.interval)

    async def stop(self):
        """Stop the schedule and any repair running (a sync cut short is only a sync to run again)."""
        for task in (self._schedule, self._task):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait([task])


def _log_failure(task):
    if not task.cancelled() and task.exception() is not None:
        log.error("repair failed", exc_info=task.exception())


def _names(ids):
    return ", ".join(f"node {i}" for i in ids)
