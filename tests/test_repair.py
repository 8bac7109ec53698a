"""Repair through real nodes: a replica down past the hint window converges with no client reads; a sync of
a range that differs in one key moves about one cell; a tombstone stays until a full repair of its range
came after it, so a value deleted while a replica was away never comes back; an interrupted repair starts
over and finishes; ./server.sh repair says what it did, and fails naming a range it could not repair."""
import subprocess
import time

import pytest

from kvstore.core.ring import TokenRange
from kvstore.testing.localcluster import Cluster, FAST_SETTINGS, wait_for
from kvstore.core.config import CHECKOUT
from kvstore_rpc.ttypes import Cell, Mutation
from kvstore_rpc import ttypes

HINT_WINDOW = 1.0
GRACE = 2.0
RANGE = TokenRange(b"\x3f", b"\x7f")   # in a 4-node test cluster: replicas 1, 2, 3; node 1 repairs it on schedule


def keys(prefix, count):
    """Keys in RANGE (their first byte, "P" to "W", is in it)."""
    return [prefix + b"%06d" % i for i in range(count)]



def run_repair(cluster, *argv):
    return subprocess.run(["python3", "src/launcher.py", "--data-dir", str(cluster.directory), "repair", *argv],
                          cwd=CHECKOUT, capture_output=True, text=True, timeout=120)


def repaired(cluster, node, token_range=RANGE):
    """Node's RangeState of token_range."""
    status = cluster.call(node, "repair_status")
    return next(r for r in status.ranges if (r.token_range.start_token, r.token_range.end_token) == tuple(token_range))


def test_a_replica_down_past_the_hint_window_converges_by_itself_with_no_reads(tmp_path):
    c = Cluster(tmp_path, extra_args=FAST_SETTINGS + ("--hint-window", str(HINT_WINDOW), "--repair-interval", "3"))
    c.start()
    try:
        written = keys(b"P", 300)
        with c.client(0) as kv:
            kv.mput({k: b"before" for k in written}, "ALL")
            c.crash_and_notice(3)
            kv.mput({k: b"after" for k in written[:200]}, "QUORUM")
            for key in written[200:250]:
                kv.delete(key, "QUORUM")
        time.sleep(HINT_WINDOW + 0.5)   # the hints for node 3 are now past their window: dropped, not delivered
        c.restart(3)
        wait_for(lambda: c.cells_on(3) == c.cells_on(1) == c.cells_on(2), 20,
                 "node 3 to hold every cell nodes 1 and 2 hold")
        on_3 = c.cells_on(3)
        assert [on_3[k].value for k in written[:200]] == [b"after"] * 200
        assert all(on_3[k].value is None for k in written[200:250])
        assert "dropping" in c.log(1) + c.log(0) + c.log(2)   # it was a repair, not a hint, that healed it
        out = c.run_tool("inspector.py", "--cluster", c.cluster_file)
        assert out.returncode == 0, out.stderr
        assert "repaired 20" in out.stdout   # the inspector shows when each range was last repaired
    finally:
        c.close()


@pytest.fixture(scope="module")
def manual(tmp_path_factory):
    """No schedule (repairs only when a test asks), a short hint window and gc grace."""
    c = Cluster(tmp_path_factory.mktemp("repair"), extra_args=FAST_SETTINGS + (
        "--hint-window", str(HINT_WINDOW), "--gc-grace-seconds", str(GRACE), "--repair-interval", "0"))
    c.start()
    yield c
    c.close()


def repair_on(cluster, node, token_range=RANGE):
    cluster.call(node, "repair", [ttypes.TokenRange(*token_range)])
    wait_for(lambda: not cluster.call(node, "repair_status").running, 60, f"node {node}'s repair to end")
    return cluster.call(node, "repair_status")


def test_a_range_of_100000_keys_that_differs_in_one_moves_about_one_cell(manual):
    c = manual
    written = keys(b"Q", 100_000)
    with c.client(1) as kv:
        for start in range(0, len(written), 5000):
            kv.mput({k: b"v" * 20 for k in written[start:start + 5000]}, "ALL")
    status = repair_on(c, 1)
    assert not status.failed and status.cells_in == status.cells_out == 0
    assert status.bytes_sent <= 2 * 64 * 8   # identical replicas: the branch hashes alone cross
    newer = Cell(b"newer", c.cell_on(1, written[777]).timestamp + 1)
    c.call(2, "replica_write", Mutation(written[777], newer))
    status = repair_on(c, 1)
    assert not status.failed
    assert (status.cells_in, status.cells_out) == (1, 1)   # node 2's cell to node 1, then to node 3
    assert status.keys_compared <= 100   # one leaf's keys: about 100,000 / 4096
    assert status.bytes_sent < 10_000, status.bytes_sent   # of about 3 MB of data in the range
    assert all(c.cell_on(i, written[777]) == newer for i in (1, 2, 3))


def test_a_value_deleted_while_a_replica_was_away_past_gc_grace_does_not_come_back(manual):
    c = manual
    key = b"S-zombie"
    with c.client(0) as kv:
        kv.put(key, b"alive", "ALL")
        c.crash_and_notice(3)
        deleted = kv.delete(key, "QUORUM")
    time.sleep(max(GRACE, HINT_WINDOW) + 0.5)   # past gc grace, and the hint for node 3 past its window
    for i in (1, 2):   # past grace, but no full repair of its range since: the tombstone stays
        c.call(i, "compact")
        assert c.cell_on(i, key) == Cell(None, deleted.timestamp, deleted.timestamp)
    c.restart(3)
    assert c.cell_on(3, key).value == b"alive"   # the replica that missed the delete
    out = run_repair(c)
    assert out.returncode == 0 and "repair complete" in out.stdout, out.stdout + out.stderr
    assert c.cell_on(3, key) == Cell(None, deleted.timestamp, deleted.timestamp)
    with c.client(0) as kv:
        assert kv.get(key, "ALL") is None

    def purged_everywhere():   # once a full repair began after it (less its margin), it may go everywhere
        repair_on(c, 1)
        for i in (1, 2, 3):
            c.call(i, "compact")
        return all(c.cell_on(i, key) is None for i in (1, 2, 3))
    wait_for(purged_everywhere, 30, "the tombstone to be purged on every replica")
    assert repaired(c, 3).repaired_since > deleted.timestamp
    with c.client(0) as kv:
        assert kv.get(key, "ALL") is None


def left_behind(cluster, node, written, value):
    """Node misses the writes of `written` (at QUORUM, while it is down past the hint window), then is back."""
    cluster.crash_and_notice(node)
    with cluster.client(0) as kv:
        for start in range(0, len(written), 5000):
            kv.mput({k: value for k in written[start:start + 5000]}, "QUORUM")
    time.sleep(HINT_WINDOW + 0.5)   # its hints are past their window: dropped, not delivered
    cluster.restart(node)


def repair_under_way(cluster, node):
    cluster.call(node, "repair", [ttypes.TokenRange(*RANGE)])
    wait_for(lambda: cluster.call(node, "repair_status").cells_out > 0, 30, "the repair to be under way")


def test_a_repair_cut_short_by_a_crash_of_either_side_starts_over_and_loses_nothing(manual):
    c = manual
    written = keys(b"T", 20_000)
    left_behind(c, 3, written, b"x" * 100)
    repair_under_way(c, 1)
    c.crash_and_notice(1)   # the node running it
    c.restart(1)
    status = repair_on(c, 1)   # its new session takes over the ranges its lost one held
    assert not status.failed, status.failed
    on = [c.cells_on(i) for i in (1, 2, 3)]
    assert on[0] == on[1] == on[2]
    assert all(on[2][k].value == b"x" * 100 for k in written)
    # The other side: the replica receiving the cells crashes mid-way.
    more = keys(b"U", 40_000)
    left_behind(c, 3, more, b"y" * 100)
    repair_under_way(c, 1)
    c.crash_and_notice(3)
    wait_for(lambda: not c.call(1, "repair_status").running, 30, "the repair to end")
    assert c.call(1, "repair_status").failed   # said, not recorded as a full repair
    c.restart(3)
    status = repair_on(c, 1)
    assert not status.failed, status.failed
    on = [c.cells_on(i) for i in (1, 2, 3)]
    assert on[0] == on[1] == on[2] and all(on[2][k].value == b"y" * 100 for k in more)


def test_server_sh_repair_names_a_range_it_cannot_repair_and_exits_non_zero(manual):
    c = manual
    c.crash_and_notice(3)
    try:
        out = run_repair(c)
        assert out.returncode == 1, out.stdout + out.stderr
        assert "repair incomplete" in out.stdout and "node 3 down" in out.stdout
        assert out.stdout.count("node 3 down") == 3   # the three ranges node 3 holds
        out = run_repair(c, "0")
        assert out.returncode == 1 and "(those node 0 holds)" in out.stdout
    finally:
        c.restart(3)
    out = run_repair(c)
    assert out.returncode == 0 and "repair complete" in out.stdout, out.stdout
    assert "ranges 4/4 (100%)" in out.stdout and "keys compared" in out.stdout


def test_a_range_takes_one_sync_at_a_time_and_a_restarted_runner_takes_over_its_own(manual):
    from kvstore.cluster.sync_sides import session_for
    c = manual
    idl = ttypes.TokenRange(*RANGE)
    first, other, again = session_for(0, 1), session_for(2, 1), session_for(0, 2)
    assert len(c.call(1, "sync_hashes", first, idl, [])) == 64
    with pytest.raises(ttypes.InvalidRequest, match=r"already being synced \(session \d+\): one sync of a range"):
        c.call(1, "sync_hashes", other, idl, [])
    assert len(c.call(1, "sync_hashes", again, idl, [])) == 64   # node 0 again: its older session was lost
    c.call(1, "sync_finished", again, idl, 0)
    assert len(c.call(1, "sync_hashes", other, idl, [])) == 64   # free once finished
    c.call(1, "sync_finished", other, idl, 0)
    with pytest.raises(ttypes.InvalidRequest, match="is not one this node holds"):
        c.call(0, "sync_hashes", first, idl, [])   # node 0 holds no part of (3f, 7f]
