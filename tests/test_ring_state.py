"""The ring as versioned state, without processes: each step's epoch and placement (where a moving key's writes
and reads go), a write's level in both replica sets, the state's checks on disk and on the wire, and cleanup that
a replayed log does not undo."""
import asyncio

import pytest

from kvstore.cluster.fanout import Fanout
from kvstore.cluster.quorum import BothResponses
from kvstore.core.cell import Cell
from kvstore.core.config import NodeConfig, even_tokens, make_cluster
from kvstore.core.consistency import Level
from kvstore.core.errors import ConfigError, InvalidRequest, Unavailable
from kvstore.core.ring import Ring
from kvstore.core.ring_state import READ_NEW, STREAMING, WRITE_BOTH, RingState
from kvstore.storage.commitlog import CommitLog
from kvstore.storage.ring_file import RingFile
from kvstore.storage.store import Storage
from looptools import on_loop, workers

NODES = tuple(make_cluster(4, tokens=even_tokens(4)))         # tokens 3f, 7f, bf, ff
FIFTH = NodeConfig(4, "127.0.0.1", 9004, b"\x5f", 9104)       # splits (3f, 7f] at 5f
MOVING = b"\x50"    # in (3f, 5f]: replicas 1, 2, 3 before; 4, 1, 2 after
STAYING = b"\x90"   # in (7f, bf]: replicas 2, 3, 0 before and after


def add_fifth():
    return RingState(1, NODES).begin("add", 4, NODES + (FIFTH,))


def test_a_change_is_four_epochs_and_ends_stable_on_the_new_ring():
    state = add_fifth()
    stages = [state.stage]
    while state.changing:
        state = state.advance()
        stages.append(state.stage)
    assert stages == [WRITE_BOTH, STREAMING, READ_NEW, "stable"] and state.epoch == 5
    assert [n.node_id for n in state.nodes] == [0, 1, 2, 3, 4] and not state.target


def test_a_second_change_is_refused_naming_the_one_in_progress_and_cancel_goes_back():
    state = add_fifth().advance()
    with pytest.raises(InvalidRequest, match=r"add of node 4 is in progress \(epoch 3, streaming\).*ring resume"):
        state.begin("decommission", 2, NODES[:2] + NODES[3:])
    back = state.cancel()
    assert back.epoch == 4 and not back.changing and back.nodes == NODES
    with pytest.raises(InvalidRequest, match="no ring change"):
        back.advance()


def test_a_moving_key_is_written_to_both_sets_and_read_from_the_old_until_streaming_is_done():
    state = add_fifth()
    placement = state.placement()
    assert placement.write_groups(MOVING) == ((1, 2, 3), (4, 1, 2))
    assert placement.write_groups(STAYING) == ((2, 3, 0),)
    assert placement.replica_ids(MOVING) == (1, 2, 3)
    assert state.advance().placement().replica_ids(MOVING) == (1, 2, 3)              # streaming: still old
    assert state.advance().advance().placement().replica_ids(MOVING) == (4, 1, 2)    # read-new
    stable = state.advance().advance().advance().placement()
    assert stable.write_groups(MOVING) == ((4, 1, 2),) and stable.replica_ids(MOVING) == (4, 1, 2)


def test_elementary_ranges_cover_every_key_once_and_say_who_gains_what():
    placement = add_fifth().placement()
    ranges = placement.ranges()
    assert len(ranges) == 5
    for key in (b"\x00", MOVING, b"\x5f", b"\x60", b"\x7f", b"\xc0", b"\xff\x01"):
        inside = [ids for r, ids in ranges if key in r]
        assert len(inside) == 1 and inside[0][0] == Ring(NODES).replica_ids(key)
    assert [(str(r), old) for r, old in placement.gains(4)] == [
        ("(ff, 3f]", (0, 1, 2)), ("(3f, 5f]", (1, 2, 3)), ("(bf, ff]", (3, 0, 1))]
    # node 3 loses (3f, 5f] (it stays a replica of (5f, 7f]); nothing is gained twice
    assert placement.gains(3) == [] and (3 not in placement.ranges()[1][1][1])
    assert add_fifth().joining(4) and not add_fifth().joining(3)
    assert add_fifth().node_state(4) == "J" and add_fifth().node_state(1) == "N"


def test_a_write_needs_its_level_in_the_old_set_and_in_the_new():
    both = BothResponses([(frozenset({1, 2, 3}), 2), (frozenset({4, 1, 2}), 2)], expected=4)
    both.ok(3)
    both.ok(4)
    assert not both._enough(both.needed)     # one in each set: not a quorum of either
    both.ok(1)
    assert both._enough(both.needed)         # 1, 3 of the old; 1, 4 of the new

    class AllUpBut:
        def __init__(self, *down):
            self.down = down

        def is_up(self, node_id):
            return node_id not in self.down
    fanout = Fanout(0, AllUpBut(2, 4), None)
    with pytest.raises(Unavailable):   # the new set {4, 1, 2} has one node up: no quorum there
        fanout.plan_write(((1, 2, 3), (4, 1, 2)), Level.QUORUM)
    alive, down, responses = Fanout(1, AllUpBut(), None).plan_write(((1, 2, 3), (4, 1, 2)), Level.QUORUM)
    assert alive == [2, 3, 4, 1] and down == [] and isinstance(responses, BothResponses)


def test_the_state_is_checked_before_it_is_believed(tmp_path):
    state = add_fifth()
    assert RingState.from_json(state.to_json()) == state
    for bad in ("", "{}", "[1]", state.to_json().replace('"write-both"', '"sideways"'),
                state.to_json().replace('"5f"', '"zz"'), state.to_json().replace('"5f"', '"3f"'),
                '{"epoch": 0, "nodes": [], "stage": "stable", "kind": "", "subject": -1, "target": [], "done": []}',
                "x" * (2 << 20)):
        with pytest.raises(ConfigError):
            RingState.from_json(bad)
    ring_file = RingFile(tmp_path)
    assert ring_file.load(NODES) == RingState(1, NODES)   # no file: the cluster file's ring is epoch 1
    ring_file.save(state)
    assert ring_file.load(NODES) == state
    ring_file.path.write_text("{not json")
    with pytest.raises(ConfigError, match="ring.json"):
        ring_file.load(NODES)


@on_loop
async def test_cleanup_drops_what_the_node_no_longer_holds_and_a_replay_does_not_bring_it_back(tmp_path):
    """ScyllaDB #4734: cleaned data came back from the commit log after an unclean restart. The load drops it
    again, whatever the log still holds."""
    path, mine = tmp_path / "c.log", (lambda key: key < b"\x80")
    async with workers() as (disk, background):
        storage = Storage(CommitLog(path), disk, background)
        storage.load()
        await storage.apply_all([(b"\x10", Cell(b"kept", 1)), (b"\x90", Cell(b"gone", 1))])
        assert await storage.cleanup(mine) == 1 and storage.get(b"\x90") is None
        await storage.apply(b"\x91", Cell(b"late", 2))   # a late write planned with an older epoch
    storage.close()
    async with workers() as (disk, background):   # as after a crash: the log holds \x91
        replayed = Storage(CommitLog(path), disk, background)
        replayed.load()
        assert replayed.get(b"\x91") is not None
        replayed.close()
    async with workers() as (disk, background):
        again = Storage(CommitLog(path), disk, background)
        again.load(holds=mine)
        assert again.get(b"\x91") is None and again.get(b"\x90") is None and again.get(b"\x10").value == b"kept"
        again.close()
    await asyncio.sleep(0)


def test_the_byte_sample_is_the_same_on_every_replica_and_estimates_a_range_without_a_scan():
    from kvstore.storage.sample import SAMPLE_BYTES, ByteSample, entry_size
    from kvstore.testing.textkeys import text_keys
    cells = {key: Cell(b"v" * 100, 1) for key in text_keys(20_000)}
    built, written = ByteSample(), ByteSample()
    built.begin_build()
    built.add_built(sorted(cells.items()), done=True)      # as after a restart
    for key, cell in cells.items():                          # as the writes came
        written.changed(key, None, cell)
    everything = (b"\xff" * 8, b"\xff" * 8)                  # a range that wraps all the way round
    assert built.entries(everything) == written.entries(everything)
    true = sum(entry_size(k, c) for k, c in cells.items())
    assert 0.85 < built.estimate(everything) / true < 1.15 and len(built) < len(cells) / 10
    half = (b"a", b"m")
    true_half = sum(entry_size(k, c) for k, c in cells.items() if b"a" < k <= b"m")
    assert 0.8 < built.estimate(half) / true_half < 1.2
    big = b"big-value-key"
    written.changed(big, None, Cell(b"x" * SAMPLE_BYTES, 2))   # a large cell is always sampled, as itself
    assert (big, SAMPLE_BYTES + len(big) + 64) in written.entries(everything)
    written.changed(big, Cell(b"x" * SAMPLE_BYTES, 2), None)
    assert big not in dict(written.entries(everything))
