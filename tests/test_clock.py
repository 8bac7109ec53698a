"""Time you can trust: the hybrid clock never goes backwards, across restarts either; a session's writes are
ordered as it made them; a write that begins after another was acknowledged wins over it at an overlapping
level, whatever the coordinators' clocks say. Real nodes get clocks of their own through libfaketime."""
import os
import re
from pathlib import Path

import pytest

from kvstore.clock import RESERVE_AHEAD, Clock, ClockOffsetError
from kvstore.clockfile import ClockFile
from kvstore.errors import ConfigError
from kvstore.localcluster import FAKETIME_LIBRARY, FAST_SETTINGS, Cluster

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
    assert clock.now(floor=first + 3600 * 10**6, trusted=True) == first + 3600 * 10**6 + 1   # a peer's cell
    wall[0] = 2000.0
    assert clock.read() == 2000 * 10**6                  # expiry is judged by the wall clock


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


@pytest.fixture
def skewed(tmp_path):
    if not Path(FAKETIME_LIBRARY).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("libfaketime is missing: .ci/run installs the faketime package")
        pytest.skip("libfaketime is not installed (apt-get install faketime)")
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
    if not Path(FAKETIME_LIBRARY).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("libfaketime is missing: .ci/run installs the faketime package")
        pytest.skip("libfaketime is not installed (apt-get install faketime)")
    from kvstore.localcluster import wait_for
    from kvstore_rpc.ttypes import Unavailable
    c = Cluster(tmp_path / "off", clocks=True)   # the default bound: 0.5 s
    try:
        c.skew(3, +10)
        c.start()
        key = c.key_for([1, 2, 3])

        def refused():
            try:
                c.call(3, "put", key, b"from the future", 2, 0, 0)
            except Unavailable as exc:
                return exc.why
            return None
        wait_for(refused, 10, "node 3 to refuse writes")
        assert re.match(r"ClockOffset: node 3's clock is \+(9|10)\.\d{3} s from most of its peers', more than the "
                        r"0.5 s allowed \(--max-clock-offset\)", refused())
        assert c.call(0, "put", key, b"through node 0", 3, 0, 0).acknowledged   # ALL: node 3 is a replica
        assert c.call(3, "get", key, 2, 0).cell.value == b"through node 0"    # node 3 still reads
        offset = next(n.clock_offset for n in c.call(0, "describe_ring") if n.node_id == 3)
        assert 9.5e6 < offset < 10.5e6
        assert "this node's clock is +" in c.log(3) and "refuses to coordinate writes" in c.log(3)
        c.skew(3, 0)   # the clock is fixed: node 3 coordinates again
        wait_for(lambda: refused() is None, 15, "node 3 to coordinate writes again")
    finally:
        c.close()
