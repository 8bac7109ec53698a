"""Write timestamps: a hybrid logical clock, in microseconds since the epoch.

A timestamp is the larger of the wall clock and one more than the largest
timestamp this node has issued or seen (in replicas' answers, in cells it
receives, in the floors clients send). So it never goes backwards when the
wall clock steps back, and a write stamped after this node saw a timestamp is
stamped above it, whatever the clocks say.

It never goes backwards across a restart either: the clock reserves ahead of
use. Before it issues a timestamp above its reservation, it makes durable (a
`reservation`, which writes a small file) a new bound RESERVE_AHEAD above it,
and a node starting up begins above the last bound it reserved. Why a
reservation and not recovery from the commit log: a coordinator stamps writes
for keys it does not hold, which never reach its own log; and asking the peers
at start would make a lone node wait for them. The cost is one small fsync
every RESERVE_AHEAD of issued time (10 s), and timestamps after a crash that
start up to 10 s ahead of the wall clock (they win over nothing they should not:
every later write is stamped above them too).

Judging time is another matter: whether a value has expired, or a hint is past
its window, is judged by `earliest()`, the earlier of this node's wall clock
and most of its peers' (as heartbeats measure it, `peer_offset`). A node whose
clock runs ahead judges by its peers', so its wrong clock never makes a value
expire or a hint drop early; one whose clock runs behind judges by its own,
late but never early.
"""
import threading
import time

RESERVE_AHEAD = 10_000_000   # microseconds reserved beyond the last timestamp issued
MAX_OFFSET = 500_000         # microseconds: the default --max-clock-offset (CockroachDB's)


class ClockOffsetError(ValueError):
    """A timestamp from elsewhere is further ahead of this clock than the offset it believes."""


class Clock:
    def __init__(self, wall=time.time, reservation=None, ahead=RESERVE_AHEAD, max_offset=MAX_OFFSET):
        """reservation: an object with load() -> the bound reserved before (0: none) and save(bound), which
        makes a new bound durable; None: nothing survives a restart (unit tests). max_offset: how far ahead
        of the wall clock (microseconds) a timestamp seen elsewhere, or a client's floor, may be believed."""
        self._wall = wall
        self.max_offset = max_offset
        self._reservation = reservation
        self._ahead = ahead
        self._reserved = reservation.load() if reservation is not None else 0
        self._last = self._reserved   # every timestamp issued before a restart is at or below it
        self._lock = threading.Lock()
        # This node's clock minus most of its peers' (seconds, + when ahead), as its failure detector measures
        # it; set once that exists (node.run). Until then: 0.
        self.peer_offset = lambda: 0.0

    def now(self, floor=0, trusted=False):
        """A timestamp greater than every one this clock issued or observed before, and than floor.
        ClockOffsetError when floor is more than max_offset ahead of the wall clock, unless trusted (a
        cell a peer holds: a far-ahead peer is the offset bound's business, not a client's)."""
        with self._lock:
            wall = int(self._wall() * 1_000_000)
            if floor > wall + self.max_offset and not trusted:
                raise ClockOffsetError(f"the timestamp {floor} is {(floor - wall) / 1e6:.3f} s ahead of this node's "
                                       f"clock, more than the {self.max_offset / 1e6:g} s it believes "
                                       "(--max-clock-offset)")
            stamp = max(wall, self._last + 1, floor + 1)
            if self._reservation is not None and stamp > self._reserved:
                self._reservation.save(stamp + self._ahead)   # durable before the stamp is used
                self._reserved = stamp + self._ahead
            self._last = stamp
            return stamp

    def observe(self, stamp):
        """A timestamp seen elsewhere: every one issued from now on is above it, unless it is more than
        max_offset ahead of the wall clock (then it is not believed, and False is returned)."""
        if not stamp or stamp <= self._last:
            return True
        if stamp > int(self._wall() * 1_000_000) + self.max_offset:
            return False
        with self._lock:
            self._last = max(self._last, stamp)
        return True

    def admits(self, stamp):
        """False for a timestamp more than max_offset ahead of this clock (what it issued, saw, or the wall
        clock): a replica refuses such a cell, which no correctly stamped write could overwrite for that long."""
        return stamp <= max(int(self._wall() * 1_000_000), self._last) + self.max_offset

    def read(self):
        """The wall clock, in microseconds: what heartbeats carry, for peers to measure offsets by."""
        return int(self._wall() * 1_000_000)

    def earliest(self):
        """The earlier of this node's wall clock and most of its peers', in microseconds: the now that expiry
        and the hint window are judged by. Issues nothing."""
        wall = self._wall()
        return int(min(wall, wall - self.peer_offset()) * 1_000_000)

    def latest(self):
        """The later of the two, in microseconds: when a hint was made (so its window starts no earlier than
        the cluster's clocks say)."""
        wall = self._wall()
        return int(max(wall, wall - self.peer_offset()) * 1_000_000)
