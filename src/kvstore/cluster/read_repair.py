"""ReadRepair: a coordinator's read repair. Before a read answers, the stale replicas
among those it answers from are written the newest cell, until as many hold it as the level needs (so a later
read at that level cannot see older data); once every replica has answered, those still differing are
repaired in the background (a failed repair leaves a hint, like any write)."""
import asyncio
import logging
import time

from kvstore.core.cell import reconcile
from kvstore.core.errors import TimedOut
from kvstore.cluster.quorum import Responses, reasons

log = logging.getLogger(__name__)


class ReadRepair:
    def __init__(self, local_id, replicas, writer, timeout, background):
        """writer: the coordinator's Writer, whose write_done hints a replica the repair missed."""
        self._local_id = local_id
        self._replicas = replicas
        self._writer = writer
        self._timeout = timeout
        self._background = background

    async def before_answer(self, key, newest, answers, needed, level, deadline, read):
        """Write newest to the stale replicas among answers; wait until `needed` replicas hold it. read: the
        read's Responses: a replica that answers it late holding newest counts too (one whose clock is behind
        refuses the repair, and the read need not fail for it)."""
        stale = [node_id for node_id, cell in answers if cell != newest]
        if newest is None or not stale:
            return []
        log.debug("read repair of %r on nodes %s", key[:64], stale)
        responses = Responses(len(stale), len(stale))
        local = None   # this node's own repair: one disk write, always awaited, however many others hold it
        for node_id in sorted(stale, key=lambda i: i == self._local_id):
            done = self._writer.write_done(node_id, key, newest, responses)
            if node_id == self._local_id:
                local = asyncio.get_running_loop().create_future()
                done = _and_then(done, local)
            self._replicas[node_id].write_many_async([(key, newest, done)], deadline)
        holding = len(answers) - len(stale)
        if local is not None:
            await asyncio.wait([local], timeout=max(0.0, deadline - time.monotonic()))
        if not await responses.wait(deadline, needed=max(0, needed - holding)):
            repaired, failures = responses.snapshot()
            await read.wait(deadline, needed=read.expected)
            late = [node_id for node_id, cell in read.snapshot()[0] if cell == newest and node_id not in
                    {n for n, _ in answers}]
            if holding + len(repaired) + len(late) >= needed:
                return [node_id for node_id, _ in repaired]
            raise TimedOut(f"{level.name} read found stale replicas and could not repair enough of them in time"
                           + reasons(failures), holding + len(repaired), needed)
        repaired, _ = responses.snapshot()
        return [node_id for node_id, _ in repaired]

    def after_everyone(self, key, everyone, used, answered_newest):
        """Once every replica has answered (called by the last answer), repair those that differ from the newest
        cell of all, in a task of the node's. The answers the client got were repaired before it got them,
        unless a late answer is newer."""
        newest = reconcile(cell for _, cell in everyone)
        stale = [node_id for node_id, cell in everyone
                 if cell != newest and (node_id not in used or newest != answered_newest)]
        if stale:
            log.debug("background read repair of %r on nodes %s", key[:64], stale)
            self.in_background([(node_id, key, newest) for node_id in stale])

    def in_background(self, writes):
        """[(node_id, key, cell)], repaired by a task of the node's (a failure leaves a hint, like any write)."""
        if not self._background.stopping:
            self._background.spawn(self._repair_all(writes), "read-repair")

    async def _repair_all(self, writes):
        deadline = time.monotonic() + self._timeout
        responses = Responses(len(writes), len(writes))
        grouped = {}
        for node_id, key, cell in writes:
            grouped.setdefault(node_id, []).append((key, cell, self._writer.write_done(node_id, key, cell, responses)))
        for node_id, requests in grouped.items():
            self._replicas[node_id].write_many_async(requests, deadline)
        await responses.wait(deadline)


def _and_then(done, future):
    """done, then future completed: a write's callback that can also be awaited."""
    def both(error, result):
        done(error, result)
        if not future.done():
            future.set_result(None)
    return both
