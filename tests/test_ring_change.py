"""Growing and shrinking the ring while it serves, through real nodes: add, decommission, removenode and move while
clients write and read at ONE and QUORUM (the chaos checker judges the history: nothing lost, nothing stale); after
each change every key sits on exactly its replicas of the new ring, none missing and none left over, counted in
every node's dump. Crashes mid-change (of the joining node, of a streaming source, of the tool) leave a change
that `ring resume` finishes or `ring cancel` undoes; a node that cleaned up and crashed does not bring the range
back."""
import shlex
import signal
import threading
import time

import pytest

from kvstore.core.config import read_cluster_file
from kvstore.core.ring import Ring
from kvstore.testing.chaos.checker import check
from kvstore.testing.chaos.workload import LEVELS, ChaosClient, chaos_keys
from kvstore.testing.localcluster import FAST_SETTINGS, Cluster, wait_for
from kvstore.testing.ringops import RingOps
from kvstore.testing.textkeys import text_keys
from kvstore.tools import processes

KEYS = text_keys(6000)       # with the test cluster's tokens (3f, 7f, bf, ff), all in (3f, 7f]: a loaded range
VALUE = b"v" * 100
NO_REPAIR = ("--repair-interval", "0")


def start(tmp_path, extra=()):
    c = Cluster(tmp_path, extra_args=FAST_SETTINGS + NO_REPAIR + tuple(extra))
    # ./server.sh starts the nodes it adds with the cluster's saved options: the test cluster's
    (tmp_path / "node.options").write_text("".join(shlex.quote(a) + "\n" for a in c.extra_args))
    c.start()
    with c.client(0) as kv:
        for first in range(0, len(KEYS), 2000):
            kv.mput({k: VALUE for k in KEYS[first:first + 2000]}, "ALL")
    return c


@pytest.fixture
def cluster(tmp_path):
    c = start(tmp_path)
    yield c
    c.close()


class Traffic:
    """Chaos clients on a few contended keys, at ONE and QUORUM, recording a history for the checker."""

    def __init__(self, cluster, clients=4):
        self.cluster, self.history, self._lock = cluster, [], threading.Lock()
        self.keys, self._stop, self._t0 = chaos_keys(8), threading.Event(), time.monotonic()
        self._clients = [ChaosClient(n, list(cluster.nodes), self.keys, 3, self._clock, self._record, self._stop,
                                     credentials=cluster.credentials) for n in range(clients)]

    def _clock(self):
        return time.monotonic() - self._t0

    def _record(self, entry):
        with self._lock:
            self.history.append(entry)

    def __enter__(self):
        for client in self._clients:
            client.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for client in self._clients:
            client.join(30)

    def findings(self):
        final = {}
        member = self.cluster.members()[0].node_id
        for key in self.keys:
            cell = self.cluster.call(member, "get", key, LEVELS["QUORUM"]).cell
            final[key.hex()] = (cell.value.decode(), cell.timestamp) if cell else None
        acknowledged = sum(1 for op in self.history if op["op"] == "write" and op["outcome"] == "ok")
        assert acknowledged > 50, f"the clients got only {acknowledged} writes through"
        return check(self.history, final)


def misplaced(cluster):
    """[(key, nodes missing it, nodes holding it that should not)] over every key any member holds."""
    ring, holders = Ring(cluster.members()), {}
    for node in cluster.members():
        for key in cluster.cells_on(node.node_id):
            holders.setdefault(key, set()).add(node.node_id)
    wrong = []
    for key, held in holders.items():
        should = set(ring.replica_ids(key))
        if held != should:
            wrong.append((key, sorted(should - held), sorted(held - should)))
    return wrong


def assert_exactly_placed(cluster, keys=KEYS):
    wait_for(lambda: not misplaced(cluster), 30, "every key on exactly its replicas")
    held = {key for node in cluster.members() for key in cluster.cells_on(node.node_id)}
    assert set(keys) <= held


def assert_all_readable(cluster, keys=KEYS):
    with cluster.client(level="QUORUM") as kv:
        for first in range(0, len(keys), 2000):
            got = kv.mget(keys[first:first + 2000])
            wrong = {k: v for k, v in got.items() if getattr(v, "value", None) != VALUE}
            assert len(got) == len(keys[first:first + 2000]) and not wrong, f"keys written at ALL read wrong: {wrong}"


def test_add_decommission_removenode_and_move_while_clients_write_and_read(cluster):
    c, ops = cluster, RingOps(cluster)
    from kvstore.client.client import Client
    follower = Client([(c.nodes[1].host, c.nodes[1].port)], credentials=c.credentials)   # it knows node 1 only
    assert follower.get(KEYS[0]).value == VALUE and follower.ring_epoch == 1
    with Traffic(c) as traffic:
        added = ops.add()   # no token: the middle key of the most loaded range, (3f, 7f]
        token = c.nodes[added].token
        assert b"\x3f" < token < b"\x7f" and "splitting it at its middle key" in ops.output, ops.output
        assert "streaming done" in ops.output and "done: ring epoch 5, 5 nodes" in ops.output, ops.output
        assert_exactly_placed(c)
        dropped = [line for line in ops.output.splitlines() if line.startswith("done:")][0]
        assert "keys on node 3" in dropped and " 0 keys on node 3" not in dropped, dropped
        c.crash(3)    # it dropped the ranges it lost; replayed after a crash, its log does not bring them back
        c.restart(3)
        assert_exactly_placed(c)
        follower.close()
        assert follower.get(KEYS[1]).value == VALUE and follower.ring_epoch == 5   # learned node 4 on connecting
        ops.must("decommission", 1)
        assert processes.find_node(c.node_dir(1)) is None and 1 in c.left
        assert follower.get(KEYS[2]).value == VALUE and follower.address != (c.nodes[1].host, c.nodes[1].port)
        follower.close()
        assert_exactly_placed(c)
        c.crash_and_notice(3)
        ops.must("removenode", 3)
        assert [n.node_id for n in c.members()] == [0, 2, added]
        assert_exactly_placed(c)
        ops.must("move", 0, "30")
        assert_exactly_placed(c)
    findings = traffic.findings()
    assert not any(findings.values()), findings
    assert_all_readable(c)
    assert [n.node_id for n in read_cluster_file(c.cluster_file)] == [0, 2, added]


def test_status_shows_the_ring_as_nodetool_does(cluster):
    c, ops = cluster, RingOps(cluster)
    added = ops.add()
    out = c.server_sh("status")
    assert out.returncode == 0 and "ring epoch 5" in out.stdout, out.stdout
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith("UN ")]
    assert [int(r[1]) for r in rows] == [0, 1, 2, 3, added]
    assert sum(int(r[5]) for r in rows) == 3 * len(KEYS)   # keys: each on 3 nodes
    out = c.server_sh("status", "--json")
    import json
    table = json.loads(out.stdout)
    assert table["epoch"] == 5 and table["change"] is None and len(table["nodes"]) == 5
    assert abs(sum(row["owns"] for row in table["nodes"]) - 300) < 0.5


def streaming(cluster, node):
    """Whether node is streaming now (False also when it does not answer)."""
    try:
        cluster.follow_ring()   # a node ./server.sh added is in the cluster file
        status = cluster.call(node, "repair_status")
    except Exception:
        return False
    return status.kind == "stream" and status.running and status.cells_in > 0


@pytest.fixture
def slow_cluster(tmp_path):
    c = start(tmp_path, ("--repair-rate-mb", "0.15"))   # a stream of the loaded range takes several seconds
    yield c
    c.close()


def test_crashes_of_the_joining_node_and_of_the_tool_mid_stream_then_resume(slow_cluster):
    c = slow_cluster
    tool = c.server_sh("add", wait=False)
    wait_for(lambda: streaming(c, 4), 60, "node 4 to stream")
    tool.send_signal(signal.SIGKILL)   # the node that ran the command is this tool: it is gone too
    tool.wait(10)
    processes.signal_node(c.node_dir(4), signal.SIGKILL)
    out = c.server_sh("ring", "show")
    assert "add of node 4, at step streaming" in out.stdout, out.stdout
    out = c.server_sh("ring", "resume")   # starts node 4 again, streams what is still missing, finishes
    assert out.returncode == 0 and "done: ring epoch 5, 5 nodes" in out.stdout, out.stdout + out.stderr
    c.follow_ring()
    assert_exactly_placed(c)
    assert_all_readable(c)


def stream_failed(cluster, node):
    try:
        cluster.follow_ring()   # a node ./server.sh added is in the cluster file
        status = cluster.call(node, "repair_status")
    except Exception:
        return False
    return status.kind == "stream" and bool(status.failed)


def test_a_crash_of_a_streaming_source_is_waited_for_and_the_stream_resumes(slow_cluster):
    c = slow_cluster
    tool = c.server_sh("decommission", "2", wait=False)
    gainers = (0, 1, 3)
    wait_for(lambda: any(streaming(c, i) for i in gainers), 60, "a node to stream from node 2")
    c.crash(2)   # the only source of what it hands over: the stream fails, and is started again until it is back
    wait_for(lambda: any(stream_failed(c, i) for i in gainers), 30, "a stream to fail on node 2's crash")
    c.restart(2, wait=False)
    out, _ = tool.communicate(timeout=300)
    assert tool.returncode == 0 and "node 2 left the ring and was stopped" in out, out
    assert "streaming again" in out, out
    c.follow_ring()
    assert_exactly_placed(c)
    assert_all_readable(c)


def test_cancel_goes_back_to_the_old_ring(cluster):
    c = cluster
    tool = c.server_sh("add", wait=False)
    wait_for(lambda: "add of node 4" in c.server_sh("ring", "show").stdout, 60, "the change to begin")
    tool.send_signal(signal.SIGKILL)
    tool.wait(10)
    out = c.server_sh("ring", "cancel")
    assert out.returncode == 0 and "cancelled: the ring is back to its 4 nodes" in out.stdout, out.stdout
    assert processes.find_node(c.node_dir(4)) is None
    c.follow_ring()
    assert [n.node_id for n in c.members()] == [0, 1, 2, 3]
    assert "stable, 4 nodes" in c.server_sh("ring", "show").stdout
    assert_exactly_placed(c)
    assert_all_readable(c)


def test_each_step_of_an_add_holds_its_invariant(cluster):
    """Stepped by hand, as `ring resume` would: write-both sends a write to the joining node as well (an ALL write
    waits for it) while reads use the old replicas; streaming fills it; read-new reads from it; stable stops writing
    to the replica that lost the range; cleanup drops it there."""
    import io
    from kvstore.core.config import NodeConfig, write_cluster_file
    from kvstore.storage.ring_file import RingFile
    from kvstore.tools import launcher as tool, ring_change
    c, out = cluster, io.StringIO()
    directory = tool.ClusterDirectory(c.directory)
    host, port, peer_port = c.hosts.add_address(4)
    fifth = NodeConfig(4, host, port, b"\x5f", peer_port)     # splits (3f, 7f]: (3f, 5f] moves from 3 to 4
    moving, later = b"\x50moving", b"\x50later"
    state = ring_change.newest_state(directory).begin("add", 4, c.members() + [fifth])
    ring_change._apply_all(directory, state, out, skip={4})
    write_cluster_file(c.cluster_file, state.all_nodes())
    c.node_dir(4).mkdir()
    RingFile(c.node_dir(4)).save(state)
    c.join(4)
    with c.client(0) as kv:
        kv.put(moving, b"1", level="ALL")
        assert c.cell_on(4, moving) is not None and c.cell_on(3, moving) is not None   # both sets have it
        assert [n.node_id for n in kv.endpoints(moving)] == [1, 2, 3]                    # reads: the old replicas
        assert c.cell_on(4, KEYS[0]) is None or KEYS[0] > b"\x5f"                        # not streamed yet
        state = state.advance()
        ring_change._apply_all(directory, state, out)
        ring_change._stream(directory, state, out)
        gained = [k for k in KEYS if b"\x3f" < k <= b"\x5f"]
        assert gained and all(c.cell_on(4, k) is not None for k in gained[:50] + gained[-50:])
        state = state.advance()
        ring_change._apply_all(directory, state, out)
        assert [n.node_id for n in kv.endpoints(moving)] == [4, 1, 2]                    # reads: the new replicas
        state = state.advance()
        ring_change._apply_all(directory, state, out)
        kv.put(later, b"2", level="ALL")
        assert c.cell_on(4, later) is not None and c.cell_on(3, later) is None           # 3 lost the range
        assert c.cell_on(3, moving) is not None                                          # until cleanup
        assert c.call(3, "cleanup") > 0 and c.cell_on(3, moving) is None
        for other in (0, 1, 2, 4):
            c.call(other, "cleanup")
        c.follow_ring()
    assert_exactly_placed(c)


def node_bytes(cluster):
    """{node id: bytes of keys and values it holds}, from every member's dump."""
    return {n.node_id: sum(len(k) + len(c.value or b"") for k, c in cluster.cells_on(n.node_id).items())
            for n in cluster.members()}


def assert_even(held):
    mean = sum(held.values()) / len(held)
    assert all(0.67 <= b / mean <= 1.5 for b in held.values()), {i: round(b / mean, 2) for i, b in held.items()}


def test_text_keys_spread_over_every_node_with_the_default_tokens(tmp_path):
    from kvstore.core.config import default_tokens
    c = Cluster(tmp_path, extra_args=FAST_SETTINGS + NO_REPAIR, tokens=default_tokens(4))
    try:
        c.start()
        keys = text_keys(20_000)
        with c.client(0) as kv:
            for first in range(0, len(keys), 4000):
                kv.mput({k: VALUE for k in keys[first:first + 4000]}, "ALL")
        assert_even(node_bytes(c))
    finally:
        c.close()


def test_balance_proposes_then_applies_tokens_that_even_out_a_skewed_ring(cluster):
    c = cluster   # the test tokens (3f, 7f, bf, ff) put the ASCII text keys in (3f, 7f]: node 0 holds few
    held = node_bytes(c)
    assert held[0] * 1.5 < sum(held.values()) / len(held)
    out = c.server_sh("balance")
    assert out.returncode == 0 and "3 moves would do it" in out.stdout, out.stdout + out.stderr
    assert "most / least loaded node" in out.stdout
    out = c.server_sh("balance", "--apply")
    assert out.returncode == 0 and out.stdout.rstrip().endswith("balanced"), out.stdout + out.stderr
    c.follow_ring()
    assert_even(node_bytes(c))
    assert_exactly_placed(c)
    assert "the ring is balanced: nothing to move" in c.server_sh("balance").stdout


def test_a_node_is_added_at_an_address_of_another_host(tmp_path):
    """Each node in a network namespace of its own (a host of its own, on a bridge): the new one too."""
    from kvstore.testing.netns import NetnsHosts, NetnsUnavailable
    try:
        hosts = NetnsHosts()
    except NetnsUnavailable as exc:
        pytest.skip(f"no network namespaces here: {exc}")
    c = Cluster(tmp_path, extra_args=FAST_SETTINGS + NO_REPAIR, hosts=hosts)
    try:
        c.start()
        with c.client(0) as kv:
            kv.mput({k: VALUE for k in KEYS[:2000]}, "ALL")
        added = RingOps(c).add()
        assert c.nodes[added].host == hosts.ip_of(added) != c.nodes[0].host
        assert_exactly_placed(c, KEYS[:2000])
        assert_all_readable(c, KEYS[:2000])
    finally:
        c.close()
