"""Write timestamps: a hybrid logical clock, in microseconds since the epoch.

A timestamp is the larger of the wall clock and one more than the largest
timestamp this node has issued or seen (in replicas' answers, in cells it
receives, in the floors clients send, in its peers' heartbeats). So it never
goes backwards when the wall clock steps back, and a write stamped after this
node saw a timestamp is stamped above it, whatever the clocks say.

It never goes backwards across a restart either: the clock reserves ahead of
use. Before it issues a timestamp above its reservation, it makes durable (a
`reservation`, which writes a small file) a new bound `ahead` above it, and a
node starting up begins above the last bound it reserved. Why a reservation
and not recovery from the commit log: a coordinator stamps writes for keys it
does not hold, which never reach its own log; and asking the peers at start
would make a lone node wait for them. A node reserves half of max_offset
ahead (0.25 s), so that its first timestamps after a crash are no further
ahead of the wall clock than its peers believe. On the node's loop the file is
written by the disk worker (save_later): renewed once half of the reservation
is used, so a steady stream of stamps never waits for it, and a stamp after an
idle spell waits for one small fsync (ReservationNeeded; the coordinator
awaits renew()). Without save_later (tools, tests) a stamp that needs a new
reservation saves it on the spot, RESERVE_AHEAD (10 s) ahead.

The clock also enforces the bound on its own offset (as CockroachDB's nodes
do): `peers` (the failure detector) measures this node's clock against each
peer's, and while it is more than half of max_offset from most of them, now()
refuses to stamp (ClockTooFarOff), so the node coordinates no writes. Half, as
CockroachDB's nodes keep within a fraction of theirs: then no two nodes that
stamp writes are more than max_offset apart, and a cell further than that
ahead of a replica's clock (which it refuses) was stamped by no correct node.
The check and the stamp read the wall clock once, together: a clock that steps
is caught on the write it steps under.

Judging time is another matter: whether a value has expired, or a hint is past
its window, is judged by `earliest()`, the earlier of this node's wall clock
and most of its peers'. A node whose clock runs ahead judges by its peers', so
its wrong clock never makes a value expire or a hint drop early; one whose
clock runs behind judges by its own, late but never early.
"""
import logging
import statistics
import threading
import time

log = logging.getLogger(__name__)

RESERVE_AHEAD = 10_000_000   # microseconds reserved beyond the last timestamp issued
MAX_OFFSET = 500_000         # microseconds: the default --max-clock-offset (CockroachDB's)


class ClockOffsetError(ValueError):
    """A timestamp from elsewhere is further ahead of this clock than the offset it believes."""


class ClockTooFarOff(Exception):
    """This node's clock is further from most of its peers' than the offset allowed: it stamps nothing."""

    def __init__(self, offset, allowed):
        super().__init__(f"this node's clock is {offset:+.3f} s from most of its peers', more than the "
                         f"{allowed:g} s allowed (half of --max-clock-offset)")
        self.offset = offset
        self.allowed = allowed


class ReservationNeeded(Exception):
    """No stamp until the reservation is renewed: await renew(stamp), then ask again."""

    def __init__(self, stamp):
        super().__init__("the clock's reservation must be renewed first")
        self.stamp = stamp


class _NoPeers:
    def offsets(self, wall=None):
        return {}


class Clock:
    def __init__(self, wall=time.time, reservation=None, ahead=RESERVE_AHEAD, max_offset=MAX_OFFSET):
        """reservation: an object with load() -> the bound reserved before (0: none) and save(bound), which
        makes a new bound durable; None: nothing survives a restart (unit tests). max_offset: how far ahead
        of the wall clock (microseconds) a timestamp seen elsewhere, or a client's floor, may be believed,
        and twice how far this clock may be from most of its peers' before it stamps nothing."""
        self._wall = wall
        self.max_offset = max_offset
        self._reservation = reservation
        self._ahead = ahead
        self._reserved = reservation.load() if reservation is not None else 0
        self._last = self._reserved   # every timestamp issued before a restart is at or below it
        self._lock = threading.Lock()
        # An object with offsets(wall) -> {peer: its clock minus ours (seconds)} for the peers up: the failure
        # detector, set once it exists (node.run).
        self.peers = _NoPeers()
        # save_later(bound, done): starts making reservation.save(bound) durable off the node's loop and returns
        # a future of its error (None: done), which is done only once done(that error) has run on the loop;
        # None: a stamp that needs a reservation saves it on the spot.
        self.save_later = None
        self._renewal = None
        self._off = False   # as last logged
        self.catching_up = False   # see heard()

    def offset_error(self, wall=None):
        """None while this clock is within half of max_offset of most of its peers' that are up (or none is);
        else how far off it is from them (seconds, + when ahead). Logs each change."""
        offsets = list(self.peers.offsets(wall).values())
        bound = self.max_offset / 2e6
        off = bool(offsets) and sum(abs(o) > bound for o in offsets) * 2 > len(offsets)
        if not off and not self._off:   # the common case, on every stamp: no median to take
            return None
        mine = _own_offset(offsets)
        if off != self._off:
            self._off = off
            log.log(logging.WARNING if off else logging.INFO, "this node's clock is %+.3f s from most of its peers "
                    "(the bound is %g s): %s", mine, bound,
                    "it refuses to coordinate writes until it is fixed" if off else "it coordinates writes again")
        return mine if off else None

    def heard(self, peer_clock, newest=0):
        """A peer's clock (microseconds) from its heartbeat: observed, as any timestamp seen, and this clock's
        offset from its peers checked again (so a change is logged without waiting for a write). The newest
        stamp the peer issued or saw is observed too while `catching_up` (a node starting on a data directory
        that lost its clock's reservation, until it serves): only then, so that one clock's leap does not
        travel from node to node by heartbeat."""
        self.observe(peer_clock)
        if self.catching_up:
            self.observe(newest)
        self.offset_error()

    def now(self, floor=0):
        """A timestamp greater than every one this clock issued or observed before, and than floor.
        ClockOffsetError when floor (a client's session floor, or a newer cell a replica holds) is more than
        max_offset ahead of this clock: no correct node stamped it, and stamping above it would move this
        clock there; ClockTooFarOff when this clock is too far from its peers' to stamp anything."""
        with self._lock:
            seconds = self._wall()
            off = self.offset_error(seconds)
            if off is not None:
                raise ClockTooFarOff(off, self.max_offset / 2e6)
            wall = int(seconds * 1_000_000)
            if not self._within_offset(floor, wall):
                raise ClockOffsetError(f"the timestamp {floor} is {(floor - wall) / 1e6:.3f} s ahead of this node's "
                                       f"clock, more than the {self.max_offset / 1e6:g} s it believes "
                                       "(--max-clock-offset)")
            stamp = max(wall, self._last + 1, floor + 1)
            if self._reservation is not None and stamp > self._reserved:
                if self.save_later is not None:   # the caller awaits renew(stamp) and asks again
                    raise ReservationNeeded(stamp)
                self._reservation.save(stamp + self._ahead)   # durable before the stamp is used
                self._reserved = stamp + self._ahead
            elif self.save_later is not None and self._renewal is None and stamp > self._reserved - self._ahead // 2:
                self.renew(stamp)   # ahead of need, off the loop: a steady stream of stamps never waits for it
            self._last = stamp
            return stamp

    def renew(self, stamp):
        """The reservation renewed to `ahead` above stamp, off the loop (save_later): a future, done once it is
        durable (one renewal at a time: the one under way, if any)."""
        if self._renewal is None:
            bound = stamp + self._ahead
            self._renewal = self.save_later(bound, lambda error: self._renewed(bound, error))
        return self._renewal

    def reserve(self):
        """Reserve `ahead` above now (before the node serves, so that its first stamps wait for no file)."""
        with self._lock:
            if self._reservation is not None:
                bound = max(self._reserved, int(self._wall() * 1_000_000)) + self._ahead
                self._reservation.save(bound)
                self._reserved = bound

    def save_reservation(self, bound):
        """Make bound the reservation, durably (off the loop: save_later runs this on the disk worker)."""
        self._reservation.save(bound)

    def _renewed(self, bound, error=None):
        """A renewal made durable (or not: the next stamp that needs one tries again)."""
        with self._lock:
            self._renewal = None
            if error is None:
                self._reserved = max(self._reserved, bound)
            else:
                log.error("could not renew the clock's reservation: %s", error)

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
        return self._within_offset(stamp, int(self._wall() * 1_000_000))

    def _within_offset(self, stamp, wall):
        """The one bound that a replica admits a cell by and that a write is stamped above a floor by (wall: the
        wall clock in microseconds)."""
        return stamp <= max(wall, self._last) + self.max_offset

    def newest(self):
        """The newest timestamp this clock issued or observed (its heartbeats tell peers)."""
        return self._last

    def read(self):
        """The wall clock, in microseconds: what heartbeats carry, for peers to measure offsets by."""
        return int(self._wall() * 1_000_000)

    def earliest(self):
        """The earlier of this node's wall clock and most of its peers', in microseconds: the now that expiry
        and the hint window are judged by. Issues nothing."""
        wall = self._wall()
        return int(min(wall, wall - self._peer_offset(wall)) * 1_000_000)

    def latest(self):
        """The later of the two, in microseconds: when a hint was made (so its window starts no earlier than
        the cluster's clocks say)."""
        wall = self._wall()
        return int(max(wall, wall - self._peer_offset(wall)) * 1_000_000)

    def _peer_offset(self, wall):
        return _own_offset(list(self.peers.offsets(wall).values()))


def _own_offset(offsets):
    """This clock minus most of its peers' (seconds, + when ahead), from their clocks minus ours: the median;
    0.0 with none up."""
    return -statistics.median(offsets) if offsets else 0.0
