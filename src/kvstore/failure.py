"""The failure detector: which peers are up, by heartbeat.

Each peer is pinged every interval by a thread of its own. A peer is up once it
answers (or once it sends us a heartbeat, as a restarted node does when it
announces itself) and down once a ping fails or a request finds it refused.
Every sign of life calls on_alive(node_id), which is how hints get delivered.
Peers start as down until they are heard from.
"""
import logging
import statistics
import threading
import time

from kvstore.errors import NodeUnavailable

log = logging.getLogger(__name__)


class FailureDetector:
    def __init__(self, self_id, peers, interval, timeout, on_alive=lambda node_id: None, wall=time.time,
                 max_offset=None):
        """peers: {node_id: object with heartbeat(from_node, timeout)}; max_offset: seconds this node's clock
        may be from most of its peers' before clock_error() says so (None: never)."""
        self._self_id = self_id
        self._wall = wall
        self.max_offset = max_offset
        self._offsets = {}   # node id -> its clock minus ours, in seconds, from its last heartbeat answer
        self._off = False
        self._peers = peers
        self._interval = interval
        self._timeout = timeout
        self._on_alive = on_alive
        self._up = {node_id: None for node_id in peers}   # None: not reached yet (down, for is_up)
        self._generations = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._threads = []

    def is_up(self, node_id):
        return node_id == self._self_id or self._up.get(node_id, False)

    def mark_down(self, node_id, reason):
        with self._lock:
            was_up = self._up.get(node_id)
            self._up[node_id] = False
        if was_up is not False:   # once, when it goes down, or when it was never reached since start
            log.info("node %d is down: %s", node_id, reason)

    def mark_up(self, node_id, generation=None):
        if node_id not in self._up:
            return
        with self._lock:
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

    def ping_all(self):
        """One heartbeat round to every peer, in parallel; returns when all have answered or failed."""
        threads = [threading.Thread(target=self._ping, args=(node_id,), daemon=True) for node_id in self._peers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(self._timeout + 1.0)

    def _ping(self, node_id):
        sent = self._wall()
        try:
            reply = self._peers[node_id].heartbeat(self._self_id, timeout=self._timeout)
        except NodeUnavailable as exc:
            self.mark_down(node_id, str(exc))
        else:
            if getattr(reply, "clock", None):   # its clock against ours at the middle of the round trip
                self._offsets[node_id] = reply.clock / 1e6 - (sent + self._wall()) / 2
            self.mark_up(node_id, reply.generation)

    def offset(self, node_id):
        """node_id's clock minus ours, in seconds, as its last heartbeat answer showed (0.0: unknown, or us)."""
        return self._offsets.get(node_id, 0.0) if node_id != self._self_id else 0.0

    def own_offset(self):
        """This node's clock minus most of its peers' that are up (seconds, + when ahead): the median of what
        their heartbeats showed; 0.0 while none is."""
        offsets = [self._offsets[n] for n in list(self._offsets) if self._up.get(n)]
        return -statistics.median(offsets) if offsets else 0.0

    def clock_error(self):
        """None while this node's clock is within max_offset of most of the peers that are up; else how far
        off it is from them (seconds, + when ahead)."""
        offsets = [self._offsets[n] for n in list(self._offsets) if self._up.get(n)]
        if self.max_offset is None or not offsets:
            return None
        off = sum(abs(o) > self.max_offset for o in offsets) * 2 > len(offsets)
        mine = self.own_offset()
        if off != self._off:
            self._off = off
            log.log(logging.WARNING if off else logging.INFO, "this node's clock is %+.3f s from most of its peers "
                    "(the bound is %g s): %s", mine, self.max_offset,
                    "it refuses to coordinate writes until it is fixed" if off else "it coordinates writes again")
        return mine if off else None

    def start(self):
        """Announce ourselves with one round now, then keep pinging every interval."""
        self.ping_all()
        for node_id in self._peers:
            thread = threading.Thread(target=self._loop, args=(node_id,), name=f"heartbeat-{node_id}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _loop(self, node_id):
        while not self._stopped.wait(self._interval):
            try:
                self._ping(node_id)
            except Exception:  # a background thread's failure is logged, never silent
                log.exception("heartbeat to node %d failed unexpectedly", node_id)

    def stop(self):
        self._stopped.set()
