"""Replacing a node that lost its data, through real nodes and ./server.sh: a wiped node refuses to start as a new
one; `replace` brings it back empty, and while it syncs no ONE read anywhere answers "not found" for a key it
lacks and QUORUM reads stay correct; a crash part-way resumes; afterwards it holds what its peers hold."""
import shlex
import threading

import pytest

from kvstore.storage.replace_marker import REPLACE_FILE
from kvstore.testing.localcluster import Cluster, FAST_SETTINGS, wait_for

SLOW_SYNC = ("--repair-rate-mb", "0.4", "--repair-interval", "0")   # a replace of KEYS takes several seconds
KEYS = [b"P%06d" % i for i in range(12_000)]   # all in range (3f, 7f]: replicas 1, 2, 3
VALUE = b"v" * 100



def syncing(cluster, i):
    """How many ranges node i has not synced yet (None when it does not answer)."""
    try:
        return sum(not r.readable for r in cluster.call(i, "repair_status").ranges)
    except Exception:
        return None


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path, extra_args=FAST_SETTINGS + SLOW_SYNC)
    # ./server.sh starts nodes with the cluster's saved options: the same as the test cluster's
    (tmp_path / "node.options").write_text("".join(shlex.quote(a) + "\n" for a in FAST_SETTINGS + SLOW_SYNC))
    c.start()
    with c.client(1) as kv:
        for start in range(0, len(KEYS), 4000):
            kv.mput({k: VALUE for k in KEYS[start:start + 4000]}, "ALL")
    yield c
    c.close()


def lose(cluster, i):
    cluster.crash_and_notice(i)
    cluster.wipe(i)


def test_a_wiped_node_refuses_to_start_as_a_new_one_and_replace_refuses_a_node_with_data(cluster):
    c = cluster
    lose(c, 3)
    out = c.server_sh("restart", "3")
    assert out.returncode == 1
    assert "lost its data" in out.stderr and "./server.sh replace 3" in out.stderr, out.stderr
    out = c.server_sh("replace", "2")   # running
    assert out.returncode == 1 and "node 2 is running" in out.stderr
    c.crash_and_notice(2)
    out = c.server_sh("replace", "2")   # its data is still there
    assert out.returncode == 1 and "holds node 2's data" in out.stderr
    c.restart(2)


def test_while_a_replaced_node_syncs_no_read_misses_a_key_and_it_ends_holding_every_cell(cluster):
    c = cluster
    lose(c, 3)
    replace = c.server_sh("replace", "3", wait=False)
    wait_for(lambda: syncing(c, 3), 30, "node 3 to start syncing")
    misses, reads, stop = [], [0], threading.Event()

    def read_through(node, level):
        with c.client(node) as kv:
            i = 0
            while not stop.is_set():
                key = KEYS[(i * 7919) % len(KEYS)]
                value = kv.get(key, level)
                if value is None or value.value != VALUE:
                    misses.append((node, level, key, value))
                reads[0] += 1
                i += 1
    readers = [threading.Thread(target=read_through, args=args) for args in ((3, "ONE"), (0, "ONE"), (3, "QUORUM"))]
    for reader in readers:
        reader.start()
    try:
        wait_for(lambda: syncing(c, 3) == 0, 120, "node 3 to sync every range")
        assert reads[0] > 100   # they read while it synced
    finally:
        stop.set()
        for reader in readers:
            reader.join(30)
    output, _ = replace.communicate(timeout=60)
    assert replace.returncode == 0, output
    assert "replace complete" in output and "ranges synced" in output
    assert not misses, misses[:5]
    assert c.cells_on(3) == c.cells_on(1) == c.cells_on(2)
    with c.client(3) as kv:   # an ordinary node now: its own copy answers ONE
        assert kv.get(KEYS[5], "ONE").value == VALUE


def test_a_replace_cut_short_by_a_crash_resumes_where_it_was(cluster):
    c = cluster
    lose(c, 3)
    replace = c.server_sh("replace", "3", wait=False)
    wait_for(lambda: syncing(c, 3) and c.call(3, "repair_status").cells_in > 1000, 30, "the sync to be under way")
    assert c.server_sh("crash", "3").returncode == 0   # server.sh started it: server.sh crashes it
    replace.communicate(timeout=30)
    c.restart(3)   # a plain restart: the marker it kept says what is left, and it answers no reads of it
    assert syncing(c, 3) >= 1
    wait_for(lambda: syncing(c, 3) == 0, 120, "node 3 to finish syncing")
    wait_for(lambda: not (c.node_dir(3) / REPLACE_FILE).exists(), 10, "node 3 to remove its replace marker")
    assert c.cells_on(3) == c.cells_on(1)
