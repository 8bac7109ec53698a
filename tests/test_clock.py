"""Time you can trust: the hybrid clock never goes backwards, across restarts either; a session's writes are
ordered as it made them; a write that begins after another was acknowledged wins over it at an overlapping
level, whatever the coordinators' clocks say. Real nodes get clocks of their own through libfaketime."""
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from kvstore.core.cell import Cell
from kvstore.core.clock import RESERVE_AHEAD, Clock, ClockOffsetError, ClockTooFarOff
from kvstore.storage.clockfile import ClockFile
from kvstore.storage.commitlog import CommitLog
from kvstore.core.errors import ConfigError
from kvstore.cluster.failure import FailureDetector
from kvstore.storage.hints import HintStore
from kvstore.testing.fakeclock import FAKETIME_LIBRARY
from kvstore.testing.localcluster import FAST_SETTINGS, Cluster, wait_for
from kvstore.storage.store import FROM_THE_FUTURE, Storage
from looptools import on_loop, workers

SKEW = 5   # seconds, as in the case that lost acknowledged QUORUM writes


def test_the_clock_stamps_above_what_it_saw_and_above_a_floor_within_the_offset_it_believes():
    wall = [1000.0]
    clock = Clock(wall=lambda: wall[0], max_offset=10_000_000)
    first = clock.now()
    assert first == 1000 * 10**6
    assert clock.observe(first + 7_000_000)              # a cell from a clock 7 s ahead: believed
    assert clock.now() == first + 7_000_001
    assert clock.now(floor=first + 9_000_000) == first + 9_000_001
    assert not clock.observe(first + 3600 * 10**6)       # an hour ahead: not believed
    with pytest.raises(ClockOffsetError, match="3600.000 s ahead of this node's clock, more than the 10 s"):
        clock.now(floor=first + 3600 * 10**6)
    assert clock.now() == first + 9_000_002              # the refused floor did not move the clock
    again = Clock(wall=lambda: wall[0], max_offset=10_000_000)
    again.heard(first + 5_000_000)                       # a peer's heartbeat, its clock 5 s ahead: believed
    assert again.now() == first + 5_000_001
    wall[0] = 2000.0
    assert clock.read() == 2000 * 10**6                  # what heartbeats carry: the wall clock
    assert clock.newest() == first + 9_000_002           # and the newest stamp it issued or saw
    wiped = Clock(wall=lambda: wall[0] - 1000, max_offset=10_000_000)   # a replaced node, its wall clock behind
    wiped.heard(wall[0] * 10**6, newest=clock.newest())  # a peer's heartbeat: its clock, its newest stamp
    assert wiped.now() < clock.newest()                  # an ordinary node takes no stamp from a heartbeat...
    wiped.catching_up = True                             # ...but one that lost its clock's reservation does
    wiped.heard(wall[0] * 10**6, newest=clock.newest())
    assert wiped.now() > clock.newest()                  # it stamps above every stamp its peers hold


class Peers:
    """What the failure detector tells a clock: each peer's clock minus ours, in seconds."""
    def __init__(self, offsets):
        self.values = offsets

    def offsets(self, wall=None):
        return dict(self.values)


def test_expiry_and_hint_windows_are_judged_by_the_earlier_of_this_clock_and_its_peers():
    clock = Clock(wall=lambda: 1000.0)
    clock.peers = Peers({1: -120.0, 2: -120.0})           # this clock runs 2 minutes ahead of its peers'
    assert (clock.earliest(), clock.latest()) == (880 * 10**6, 1000 * 10**6)
    clock.peers = Peers({1: +120.0, 2: +120.0})           # 2 minutes behind them
    assert (clock.earliest(), clock.latest()) == (1000 * 10**6, 1120 * 10**6)


@on_loop
async def test_a_clock_that_jumps_ahead_of_its_peers_drops_no_hint_early(tmp_path):
    wall = [1000.0]
    clock = Clock(wall=lambda: wall[0])
    async with workers() as (disk, _):
        store = HintStore(tmp_path, 60, disk, clock=clock)
        store.load()
        await store.add(1, b"k", Cell(b"v", 1))
        wall[0] += 120                                       # the wall clock jumps 2 minutes; the peers' do not
        clock.peers = Peers({1: -120.0})
        assert [h.key for h in await store.pending(1)] == [b"k"]
        clock.peers = Peers({})                              # (judged by this clock alone, it would be dropped)
        assert await store.pending(1) == []
    store.close()


@on_loop
async def test_a_step_of_this_nodes_own_clock_stops_it_stamping_on_the_very_next_write(caplog):
    """No heartbeat comes between the step and the write: offsets are kept against the monotonic clock."""
    caplog.set_level("INFO")
    wall, monotonic = [1000.0], [50.0]

    class Peer:
        async def heartbeat(self, from_node, timeout):
            return SimpleNamespace(clock=int((monotonic[0] + 950) * 1e6), generation=1)   # a good clock
    detector = FailureDetector(0, {1: Peer(), 2: Peer()}, 1.0, 1.0, wall=lambda: wall[0],
                               monotonic=lambda: monotonic[0])
    await detector.ping_all()
    clock = Clock(wall=lambda: wall[0], max_offset=500_000)
    clock.peers = detector
    clock.now()
    wall[0] += 5
    monotonic[0] += 0.001
    with pytest.raises(ClockTooFarOff, match=r"this node's clock is \+4.999 s from most of its peers', more than "
                                             r"the 0.25 s allowed \(half of --max-clock-offset\)"):
        clock.now()
    assert "refuses to coordinate writes until it is fixed" in caplog.text
    wall[0] -= 5                                         # set right again: it stamps again, above what it issued
    assert clock.now() > 1000 * 10**6 and "it coordinates writes again" in caplog.text


@on_loop
async def test_a_replica_refuses_a_cell_stamped_beyond_the_offset_it_believes(tmp_path):
    wall = [1000.0]
    async with workers() as (disk, background):
        storage = Storage(CommitLog(tmp_path / "c.log"), disk, background,
                          clock=Clock(wall=lambda: wall[0], max_offset=500_000))
        storage.load()
        soon, later = Cell(b"soon", 1000_400_000), Cell(b"later", 1000_600_000)
        assert await storage.apply_all([(b"a", soon), (b"b", later)]) == [0, FROM_THE_FUTURE]
        assert storage.get(b"a") == soon and storage.get(b"b") is None
        wall[0] += 1                                         # its clock got there: now it is taken
        assert await storage.apply_all([(b"b", later)]) == [0]
    storage.close()


def test_a_restarted_clock_set_back_stamps_above_everything_it_issued_before(tmp_path):
    wall = [5000.0]
    clock = Clock(wall=lambda: wall[0], reservation=ClockFile(tmp_path))
    issued = [clock.now() for _ in range(3)]
    wall[0] += 30                                        # past the reservation: a new one is made first
    issued.append(clock.now())
    assert int((tmp_path / "clock").read_text()) == issued[-1] + RESERVE_AHEAD
    wall[0] -= 60                                        # the node crashes; its clock is set back a minute
    again = Clock(wall=lambda: wall[0], reservation=ClockFile(tmp_path))
    assert again.now() > max(issued)


def test_a_damaged_reservation_stops_the_node_with_the_fix(tmp_path):
    (tmp_path / "clock").write_text("garbage")
    with pytest.raises(ConfigError, match="clock is damaged|holds the clock's reservation"):
        Clock(reservation=ClockFile(tmp_path))


def need_faketime():
    if not Path(FAKETIME_LIBRARY).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("libfaketime is missing: .ci/run installs the faketime package")
        pytest.skip("libfaketime is not installed (apt-get install faketime)")


@pytest.fixture
def skewed(tmp_path):
    need_faketime()
    # Clocks 10 s apart are within the offset these nodes are told to believe.
    c = Cluster(tmp_path / "skewed", clocks=True, extra_args=FAST_SETTINGS + ("--max-clock-offset", "15"))
    yield c
    c.close()


def read_all(cluster, i, key):
    return cluster.call(i, "get", key, 3, 0).cell   # ALL: every replica's newest


def test_a_coordinator_restarted_with_its_clock_set_back_does_not_lose_a_quorum_write(skewed):
    skewed.skew(0, +SKEW)
    skewed.start()
    key = skewed.key_for([0, 1, 2])
    first = skewed.call(0, "put", key, b"v1", 2, 0)
    skewed.crash(0)
    skewed.skew(0, -SKEW)
    skewed.restart(0)
    second = skewed.call(0, "put", key, b"v2", 2, 0)
    fresh = skewed.call(0, "put", skewed.key_for([1, 2, 3]), b"other", 2, 0)   # no replica held anything
    assert second.timestamp > first.timestamp and fresh.timestamp > first.timestamp
    for i in (0, 1, 2, 3):
        assert skewed.call(i, "get", key, 2, 0).cell.value == b"v2"
    assert read_all(skewed, 1, key).value == b"v2"


@pytest.mark.parametrize("ahead_first", [True, False], ids=["fast-then-slow", "slow-then-fast"])
def test_a_sessions_writes_are_ordered_through_coordinators_whose_clocks_differ(skewed, ahead_first):
    skewed.skew(1, +SKEW if ahead_first else -SKEW)
    skewed.skew(2, -SKEW if ahead_first else +SKEW)
    skewed.start()
    key = skewed.key_for([0, 1, 3])
    with skewed.client(1) as kv:
        stamps = []
        for n, node in enumerate((1, 2, 1, 2)):   # at ONE: only the session's floor orders them
            kv.use(skewed.nodes[node].address)
            stamps.append(kv.put(key, b"w%d" % n, level="ONE").timestamp)
        assert stamps == sorted(stamps) and len(set(stamps)) == 4
    skewed.wait_all_see_all()
    assert read_all(skewed, 0, key).value == b"w3"


def test_a_quorum_write_that_begins_after_another_was_acknowledged_wins_whatever_the_clocks(skewed):
    skewed.skew(1, +SKEW)
    skewed.skew(2, -SKEW)
    skewed.start()
    key = skewed.key_for([0, 1, 3])
    with skewed.client(1, session=False) as first, skewed.client(2, session=False) as second:
        early = first.put(key, b"first", level="QUORUM")
        late = second.put(key, b"second", level="QUORUM")    # through the slow clock, after the first's ack
    assert late.timestamp > early.timestamp
    for i in range(4):
        assert skewed.call(i, "get", key, 2, 0).cell.value == b"second"


def test_a_session_floor_from_the_future_is_refused_and_does_not_move_the_clock(shared_cluster):
    from kvstore_rpc.ttypes import InvalidRequest
    year_2100 = 4_102_444_800 * 10**6
    with pytest.raises(InvalidRequest, match=r"the session's timestamp is refused: .* s ahead of this node's clock, "
                                             r"more than the 0.5 s it believes \(--max-clock-offset\)"):
        shared_cluster.call(0, "put", b"future-floor", b"x", 2, 0, year_2100)
    written = shared_cluster.call(0, "put", b"future-floor", b"now", 2, 0, 0)
    assert written.timestamp < year_2100 // 2      # the clock did not jump


def test_a_node_whose_clock_is_far_off_refuses_to_coordinate_writes_and_its_peers_serve_on(tmp_path):
    need_faketime()
    from kvstore_rpc.ttypes import Unavailable
    c = Cluster(tmp_path / "off", clocks=True)   # the default bound: 0.5 s
    try:
        c.skew(3, +10)
        c.start()
        key = c.key_for([1, 2, 3])
        # Until node 3 has heard most of its peers' clocks it cannot know its own is off (a write it stamps
        # then is refused by its replicas, as "Timestamps and clocks" says): wait until it has.
        wait_for(lambda: sum(n.node_id != 3 and n.up and (n.clock_offset or 0) < -9e6
                             for n in c.call(3, "describe_ring")) >= 2, 10, "node 3 to measure its peers' clocks")

        def refused():
            try:
                c.call(3, "put", key, b"from the future", 2, 0, 0)
            except Unavailable as exc:
                return exc.why
            return None
        wait_for(refused, 10, "node 3 to refuse writes")
        assert re.match(r"ClockOffset: node 3's clock is \+(9|10)\.\d{3} s from most of its peers', more than the "
                        r"0.25 s allowed \(half of --max-clock-offset\)", refused())
        with c.client(3) as kv:   # the client library takes the write to another node
            assert kv.put(key, b"through the library", level="QUORUM").acknowledged
            assert kv.address != c.nodes[3].address
        assert c.call(0, "put", key, b"through node 0", 3, 0, 0).acknowledged   # ALL: node 3 is a replica
        assert c.call(3, "get", key, 2, 0).cell.value == b"through node 0"    # node 3 still reads
        offset = next(n.clock_offset for n in c.call(0, "describe_ring") if n.node_id == 3)
        assert 9.5e6 < offset < 10.5e6
        assert "this node's clock is +" in c.log(3) and "refuses to coordinate writes" in c.log(3)
        shown = c.run_tool("inspector.py", "--cluster", c.cluster_file).stdout   # each node's offset from its peers'
        assert re.search(r"node 3 .* clock \+(9|10)\.\d{3} s from its peers'", shown)
        assert re.search(r"node 0 .* clock [+-]0\.\d{3} s from its peers'", shown)
        c.skew(3, 0)   # the clock is fixed: node 3 coordinates again
        wait_for(lambda: refused() is None, 15, "node 3 to coordinate writes again")
    finally:
        c.close()


def test_a_node_started_before_its_peers_stamps_no_write_until_it_has_judged_its_clock(tmp_path):
    """Node 3, 10 s ahead, starts alone: its first heartbeat round reaches no peer. A write sent to it then waits
    until it has measured its peers' clocks, and is refused, instead of being stamped 10 s ahead into its own
    replica, where it would beat the acknowledged write that follows it."""
    need_faketime()
    from kvstore_rpc.ttypes import Unavailable
    c = Cluster(tmp_path / "early", clocks=True, node_args={3: ("--request-timeout", "20")})   # waits up to 10 s
    try:
        c.skew(3, +10)
        c.start(only=[3])
        key = c.key_for([1, 2, 3])

        def put_early():
            try:
                return c.call(3, "put", key, b"stamped 10 s ahead", 1, 0, 0, timeout=30)   # ONE
            except Unavailable as exc:
                return exc.why
        with ThreadPoolExecutor(1) as pool:
            early = pool.submit(put_early)
            c.start(only=[0, 1, 2])
            why = early.result(30)
        assert isinstance(why, str) and why.startswith("ClockOffset: node 3's clock is +"), why
        assert "most peers did not answer" not in c.log(3)   # it served once it had heard them, not at its deadline
        later = c.call(0, "put", key, b"acknowledged later", 1, 0, 0)   # ONE, through a correct clock
        assert later.acknowledged
        c.wait_all_see_all()
        assert read_all(c, 0, key).value == b"acknowledged later"
    finally:
        c.close()


def test_a_node_that_hears_too_few_peers_serves_after_half_its_request_timeout_and_says_so(tmp_path):
    c = Cluster(tmp_path / "alone").start(only=[0])   # its peers never start
    try:
        key = c.key_for([0, 1, 2])
        assert c.call(0, "put", key, b"alone", 1, 0, 0).acknowledged   # ONE: its own replica
        assert c.call(0, "get", key, 1, 0).cell.value == b"alone"
        assert "most peers did not answer within 1 s of starting: serving with this node's clock checked" in c.log(0)
    finally:
        c.close()


def test_a_cell_from_the_future_is_refused_by_a_replica_and_by_hint_delivery(shared_cluster):
    from kvstore.net.blocking import Connection
    from kvstore_rpc import Internode
    from kvstore_rpc.ttypes import Cell as WireCell, InvalidRequest, Mutation
    node, now = shared_cluster.nodes[1], int(time.time() * 1e6)
    an_hour_ahead = now + 3600 * 10**6
    with Connection(node.host, node.peer_port, 2.0, service=Internode, secret=shared_cluster.secret) as peer:
        answers = peer.call("replica_write_batch", ([Mutation(b"future-cell", WireCell(b"later", an_hour_ahead, 0)),
                                                     Mutation(b"present-cell", WireCell(b"now", now, 0))],), 5)
        assert answers == [FROM_THE_FUTURE, 0]
        with pytest.raises(InvalidRequest, match=r"1 of 1 cells refused: stamped more than --max-clock-offset ahead "
                                                 r"of node 1's clock"):
            peer.call("deliver_hints", ([Mutation(b"future-hint", WireCell(b"later", an_hour_ahead, 0))],), 5)
    assert shared_cluster.cell_on(1, b"future-cell") is None and shared_cluster.cell_on(1, b"future-hint") is None
    assert shared_cluster.cell_on(1, b"present-cell").value == b"now"
    assert re.search(r"refused 1 cells stamped up to 3(599|600)\.\d+ s ahead of this node.s clock",
                     shared_cluster.log(1))


def test_a_clock_that_jumps_ahead_expires_nothing_early_drops_no_hint_and_its_writes_are_refused(tmp_path):
    """Node 0's clock jumps 2 minutes ahead: it still reads a value with a minute to live and still delivers a
    hint made within the minute's window. Node 3 (told to believe any clock) jumps ahead: its writes are
    refused by their replicas, by name."""
    need_faketime()
    from kvstore_rpc.ttypes import TimedOut
    c = Cluster(tmp_path / "ahead", clocks=True, extra_args=FAST_SETTINGS + ("--hint-window", "60"),
                node_args={3: ("--max-clock-offset", "3600")})
    try:
        c.start()
        hinted, expiring = c.key_for([0, 1, 2]), c.key_for([0, 1, 3])
        c.crash_and_notice(2)
        assert c.call(0, "put", hinted, b"for node 2", 1, 0, 0).hinted == [2]
        c.call(1, "put", expiring, b"a minute to live", 2, 60, 0)
        c.skew(0, +120)

        def offset_seen_by_0(i):
            return next(n.clock_offset for n in c.call(0, "describe_ring") if n.node_id == i)
        wait_for(lambda: offset_seen_by_0(1) < -100e6 and offset_seen_by_0(3) < -100e6, 10,
                 "node 0 to measure its clock against its peers'")
        assert c.call(0, "get", expiring, 1, 0).cell.value == b"a minute to live"   # at ONE: node 0's own copy
        assert 50 <= c.call(0, "ttl", expiring, 1, 0) <= 60
        c.restart(2)
        wait_for(lambda: c.cell_on(2, hinted) is not None, 15, "node 0 to deliver its hint to node 2")
        assert "older than the hint window" not in c.log(0)

        c.skew(0, 0)
        c.skew(3, +60)
        wait_for(lambda: next(n.clock_offset for n in c.call(1, "describe_ring") if n.node_id == 3) > 50e6, 10,
                 "node 1 to measure node 3's clock")
        with pytest.raises(TimedOut, match=r"ONE write needs 1 acknowledgements, got 0 .*refused its timestamp.*"
                                           r"Clock offset: node 0, 1, 2's clock is behind node 3's"):
            c.call(3, "put", c.key_for([0, 1, 2], b"f"), b"from the future", 1, 0, 0)
        assert all(c.cell_on(i, c.key_for([0, 1, 2], b"f")) is None for i in range(4))

        # Node 3's own copy holds a cell from the future. A write of that key through node 0 cannot win over it
        # and says so; node 0's clock is not moved to it, so its other writes are stamped and taken as before.
        held = c.key_for([1, 2, 3], b"f")
        assert c.call(3, "put", held, b"from the future", 1, 0, 0).acknowledged == [3]
        with pytest.raises(TimedOut, match=r"above the newer cell node 3 holds: the timestamp \d+ is \d+\.\d{3} s "
                                           r"ahead of this node's clock, more than the 0.5 s it believes"):
            c.call(0, "put", held, b"through node 0", 3, 0, 0)   # ALL: node 3's answer is among those awaited
        written = c.call(0, "put", c.key_for([0, 1, 2], b"g"), b"after it", 2, 0, 0)
        assert len(written.acknowledged) >= 2 and written.timestamp < (time.time() + 1) * 1e6
    finally:
        c.close()
