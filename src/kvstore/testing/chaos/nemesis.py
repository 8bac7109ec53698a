"""The nemesis: injects crashes, pauses, partitions, clock skew, lost disks and long outages into a running
cluster, one after another.

Each fault picks its targets (at most max_down nodes at once, so with the
default of 1 no key ever loses more than one replica), holds for a while, then
heals: a crashed node is restarted on its data, a paused one continued, a
partition removed, a skewed clock set right. Every fault is recorded with its
start and end.

A clock fault (the cluster's nodes need clocks of their own: Cluster(clocks=True))
steps the targets' wall clocks, half the time within the bound they enforce on
themselves (half of --max-clock-offset: up to SMALL_SKEW either way), half the
time beyond it (BIG_SKEW either way): the first must change nothing a client
sees, the second makes the node refuse to coordinate writes until it is set right.

A wipe crashes the targets and deletes their data directories (a lost disk), then starts each again as
./server.sh replace does; the next fault waits until it has synced every range (one replacement at a
time, as an operator would). An outage keeps the targets crashed for longer than the cluster's hint
window, so their peers drop the hints they held: only repair brings them up to date.

The ring changes (add, decommission, removenode, move, balance) run ./server.sh's change to its end
(kvstore.testing.ringops) while the clients go on: a node added at a new address, a member retired, a member
crashed and removed for good, a member's token moved between its neighbours', the ring balanced by its data
(balance --apply: several moves, or none). The ring keeps between MIN_MEMBERS and MAX_MEMBERS nodes (an add
when at the least, a decommission when at the most, whichever was drawn).
"""
import logging
import random
import threading

from kvstore.core.ring import Ring
from kvstore.testing.localcluster import ClusterError, wait_for
from kvstore.testing.ringops import RingOps

log = logging.getLogger(__name__)

HOLD = (1.0, 4.0)   # seconds a fault lasts
OUTAGE_BEYOND_WINDOW = (1.0, 3.0)   # seconds an outage lasts beyond the hint window
REPLACE_TIMEOUT = 120.0   # seconds a wiped node may take to sync every range
GAP = (0.5, 2.0)    # seconds between faults
MIN_MEMBERS, MAX_MEMBERS = 3, 6   # 3: RF, so every fault (one node at a time) still leaves a quorum
RING_CHANGES = ("add", "decommission", "removenode", "move", "balance")
SMALL_SKEW = 0.2    # seconds: within half of the default --max-clock-offset (0.5 s)
BIG_SKEW = (1.0, 10.0)


class Nemesis(threading.Thread):
    def __init__(self, cluster, kinds, max_down, seed, clock, record, stop, hint_window=None):
        super().__init__(name="nemesis", daemon=True)
        self._cluster = cluster
        self._kinds = kinds
        self._max_down = max_down
        self._random = random.Random(seed)
        self._clock = clock
        self._record = record
        self._stopping = stop
        self._hint_window = hint_window   # seconds (outages last longer)
        self.counts = {kind: 0 for kind in kinds}
        self.error = None
        self._ring = RingOps(cluster)

    def run(self):
        """Every kind once first, in a seeded order (a short run sees them all), then kinds drawn at random."""
        first = self._random.sample(self._kinds, len(self._kinds))
        try:
            while not self._stopping.wait(self._random.uniform(*GAP)):
                self._fault(first.pop(0) if first else self._random.choice(self._kinds))
        except Exception as exc:  # recorded and reported by the run, never silent
            log.exception("the nemesis failed")
            self.error = exc

    def _fault(self, kind):
        members = [n.node_id for n in self._cluster.members()]
        count = self._random.randint(1, self._max_down) if self._max_down > 1 else 1
        targets = sorted(self._random.sample(members, count))
        hold = self._random.uniform(*HOLD)
        event = {"op": "nemesis", "fault": kind, "nodes": targets, "start": self._clock()}
        if kind in RING_CHANGES:
            kind = self._change(kind, members, targets[0], event)
        elif kind == "crash":
            for i in targets:
                self._cluster.crash(i)
            self._stopping.wait(hold)
            for i in targets:
                self._cluster.restart(i, wait=False)
            for i in targets:
                self._cluster.wait_ready(i)
        elif kind == "pause":
            for i in targets:
                self._cluster.pause(i)
            self._stopping.wait(hold)
            for i in targets:
                self._cluster.resume(i)
        elif kind == "partition":
            others = [j for j in members if j not in targets]
            cut_off = self._random.sample(others, self._random.randint(1, len(others)))
            event["from"] = sorted(cut_off)
            for i in targets:
                self._cluster.hosts.partition(i, cut_off)
            self._stopping.wait(hold)
            self._cluster.hosts.heal()
        elif kind == "clock":
            event["skew"] = {str(i): round(self._skew(), 3) for i in targets}
            for i in targets:
                self._cluster.skew(i, event["skew"][str(i)])
            self._stopping.wait(hold)
            for i in targets:
                self._cluster.skew(i, 0)
        elif kind == "wipe":
            for i in targets:
                self._cluster.crash(i)
                self._cluster.wipe(i)
            self._stopping.wait(hold)
            for i in targets:
                self._cluster.replace(i, wait=False)
            for i in targets:
                self._cluster.wait_ready(i)
            for i in targets:
                wait_for(lambda i=i: self._cluster.syncing(i) == 0, REPLACE_TIMEOUT, f"node {i} to sync its ranges")
        elif kind == "outage":
            event["seconds"] = round(self._hint_window + self._random.uniform(*OUTAGE_BEYOND_WINDOW), 3)
            for i in targets:
                self._cluster.crash(i)
            self._stopping.wait(event["seconds"])
            for i in targets:
                self._cluster.restart(i, wait=False)
            for i in targets:
                self._cluster.wait_ready(i)
        else:
            raise ClusterError(f"unknown fault {kind!r}")
        self.counts[kind] = self.counts.get(kind, 0) + 1
        event["end"] = self._clock()
        self._record(event)

    def _change(self, kind, members, target, event):
        """Run one ring change to its end; the kind it was (an add at the ring's upper bound turns into a
        decommission, a decommission or removenode at its lower bound into an add)."""
        if kind == "add" and len(members) >= MAX_MEMBERS:
            kind = "decommission"
        elif kind in ("decommission", "removenode") and len(members) <= MIN_MEMBERS:
            kind = "add"
        event["fault"] = kind
        if kind == "add":
            event["nodes"] = [self._ring.add()]
        elif kind == "decommission":
            self._ring.must("decommission", target)
        elif kind == "removenode":   # a node dead for good: crashed, seen down, removed
            self._cluster.crash_and_notice(target)
            self._ring.must("removenode", target)
        elif kind == "balance":
            event["nodes"] = []
            self._ring.must("balance", "--apply")
        else:
            event["token"] = self._between_neighbours(target).hex()
            self._ring.must("move", target, event["token"])
        return kind

    def _between_neighbours(self, node_id):
        """A new token for node_id: a key between the tokens of the nodes before and after it, so the move shifts
        its range's start and end (and no token is taken twice)."""
        nodes = Ring(self._cluster.members()).nodes
        index = next(i for i, n in enumerate(nodes) if n.node_id == node_id)
        low, high = nodes[index - 1].token, nodes[index].token
        if low >= high:   # the first node's range wraps: move within (0, its token]
            low = b"\x00"
        width = max(len(low), len(high)) + 1
        a, b = int.from_bytes(low.ljust(width, b"\x00"), "big"), int.from_bytes(high.ljust(width, b"\x00"), "big")
        if b - a < 2:
            return high
        return self._random.randrange(a + 1, b).to_bytes(width, "big").rstrip(b"\x00") or high

    def _skew(self):
        """Seconds to step a clock: within the bound or beyond it, ahead or behind, as often."""
        sign = self._random.choice((-1, 1))
        if self._random.random() < 0.5:
            return sign * self._random.uniform(0.0, SMALL_SKEW)
        return sign * self._random.uniform(*BIG_SKEW)
