"""The failure detector: which peers are up, by heartbeat.

Each peer is pinged every interval by a task of its own. A peer is up once it
answers (or once it sends us a heartbeat, as a restarted node does when it
announces itself) and down once a ping fails or a request finds it refused.
Every sign of life calls on_alive(node_id), which is how hints get delivered.
Peers start as down until they are heard from.

Heartbeat answers also carry the peer's clock. Each is kept against this node's
monotonic clock (the peer's clock minus ours at the middle of the round trip),
so offsets() reflects a step of this node's own wall clock at once, and a
peer's at its next heartbeat. What to do about an offset is the clock's
business (kvstore.core.clock); a node that has just started waits (bounded) until it
has measured most of its peers' clocks before it serves (clocks_measured), so
that the first write it coordinates is judged too.
"""
import asyncio
import logging
import time

from kvstore.core.errors import NodeUnavailable

log = logging.getLogger(__name__)


class FailureDetector:
    def __init__(self, self_id, peers, interval, timeout, on_alive=lambda node_id: None, wall=time.time,
                 monotonic=time.monotonic, on_clock=lambda clock, newest: None, on_epoch=lambda node_id, epoch: None):
        """peers: {node_id: object with the coroutine heartbeat(from_node, timeout)}; on_clock(its clock, the
        newest stamp it issued or saw; microseconds): called with each peer's, once its offset is measured.
        Runs on the node's loop."""
        self._self_id = self_id
        self._wall = wall
        self._monotonic = monotonic
        self._on_clock = on_clock
        self._on_epoch = on_epoch   # on_epoch(node id, the ring epoch its heartbeat answer showed)
        self._anchored = {}   # node id -> its clock minus our monotonic clock (seconds), from its last answer
        self._peers = peers
        self._interval = interval
        self._timeout = timeout
        self._on_alive = on_alive
        self._up = {node_id: None for node_id in peers}   # None: not reached yet (down, for is_up)
        self._generations = {}
        self._tasks = []
        self._background = None
        self._measured = asyncio.Event()   # set once most peers have been up and shown their clocks

    def is_up(self, node_id):
        return node_id == self._self_id or self._up.get(node_id, False)

    def mark_down(self, node_id, reason):
        was_up = self._up.get(node_id)
        self._up[node_id] = False
        if was_up is not False:   # once, when it goes down, or when it was never reached since start
            log.info("node %d is down: %s", node_id, reason)

    def mark_up(self, node_id, generation=None):
        if node_id not in self._up:
            return
        was_up = self._up[node_id]
        self._up[node_id] = True
        restarted = generation is not None and self._generations.get(node_id, generation) != generation
        if generation is not None:
            self._generations[node_id] = generation
        if not was_up:
            log.info("node %d is up", node_id)
        elif restarted:
            log.info("node %d restarted", node_id)
        self._on_alive(node_id)

    async def ping_all(self):
        """One heartbeat round to every peer, in parallel; returns when all have answered or failed."""
        await asyncio.gather(*(self._ping(node_id) for node_id in self._peers))

    async def _ping(self, node_id):
        sent = self._monotonic()
        try:
            reply = await self._peers[node_id].heartbeat(self._self_id, timeout=self._timeout)
        except NodeUnavailable as exc:
            self.mark_down(node_id, str(exc))
        else:
            if getattr(reply, "clock", None):   # its clock against ours at the middle of the round trip
                self._anchored[node_id] = reply.clock / 1e6 - (sent + self._monotonic()) / 2
                self._on_clock(reply.clock, getattr(reply, "newest_stamp", None) or 0)
            self._on_epoch(node_id, getattr(reply, "ring_epoch", None) or 0)
            self.mark_up(node_id, reply.generation)
            if not self._measured.is_set() and len(self.offsets()) * 2 > len(self._peers):
                self._measured.set()   # the clock now judges this node's by most of its peers' clocks

    def offsets(self, wall=None):
        """{node id: its clock minus ours, in seconds} for the peers that are up and have shown their clock;
        wall: our wall clock (seconds) to measure against, when the caller has read it already."""
        ours = (self._wall() if wall is None else wall) - self._monotonic()
        return {node_id: anchored - ours for node_id, anchored in list(self._anchored.items())
                if self._up.get(node_id)}

    async def clocks_measured(self, timeout):
        """True once most peers' clocks have been measured, as the clock judges this node's by them (at once if
        they have been, or if there are no peers); False if not within timeout seconds. The heartbeat tasks keep
        trying meanwhile."""
        if not self._peers or self._measured.is_set():
            return True
        try:
            await asyncio.wait_for(self._measured.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def offset(self, node_id):
        """node_id's clock minus ours, in seconds, as its last heartbeat answer showed (0.0: unknown, or us)."""
        anchored = self._anchored.get(node_id)
        if anchored is None or node_id == self._self_id:
            return 0.0
        return anchored - (self._wall() - self._monotonic())

    async def start(self, background):
        """Announce ourselves with one round now, then keep pinging every interval, in tasks of background
        (the node's kvstore.core.tasks.Background)."""
        self._background = background
        await self.ping_all()
        self._tasks = [background.spawn(self._loop(node_id), f"heartbeat-{node_id}") for node_id in self._peers]

    def add(self, node_id):
        """A peer that joined the ring (it is already in peers): down until heard from, pinged from now on."""
        if node_id in self._up:
            return
        self._up[node_id] = None
        if self._background is not None and not self._background.stopping:
            self._tasks.append(self._background.spawn(self._loop(node_id), f"heartbeat-{node_id}"))

    async def _loop(self, node_id):
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._ping(node_id)
            except Exception:  # a background task's failure is logged, never silent
                log.exception("heartbeat to node %d failed unexpectedly", node_id)

    async def stop(self):
        """Stop pinging (a ping in progress is cancelled) and await the heartbeat tasks."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
