"""The hash tree of a range: a write changes one leaf in O(1), the tree does not depend on the order cells
arrived in, and two trees differ exactly in the leaves whose cells differ."""
import random

from kvstore.core.cell import Cell, tombstone
from kvstore.core.hashtree import LEAVES_PER_BRANCH, TicTacTree, leaf_of
from kvstore.core.ring import Ring, TokenRange
from kvstore.core.config import even_tokens, make_cluster


def differing(mine, theirs):
    """The indexes where two equal-length lists of hashes differ."""
    return [i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b]


def tree_of(cells):
    tree = TicTacTree()
    for key, cell in cells:
        tree.change(key, None, cell)
    return tree


def test_the_tree_is_the_same_whatever_order_the_cells_came_in():
    cells = [(b"k%d" % i, Cell(b"v%d" % i, i + 1)) for i in range(2000)]
    shuffled = cells[:]
    random.Random(7).shuffle(shuffled)
    a, b = tree_of(cells), tree_of(shuffled)
    assert (a.root, a.branches, a.leaves, a.count) == (b.root, b.branches, b.leaves, b.count)
    assert a.root != 0 and a.count == 2000
    bulk = TicTacTree()   # the start-up rebuild's one pass makes the same tree
    bulk.add_all(shuffled)
    assert (bulk.root, bulk.branches, bulk.leaves, bulk.count) == (a.root, a.branches, a.leaves, a.count)


def test_a_change_moves_one_leaf_and_undoing_it_restores_the_tree():
    cells = [(b"k%d" % i, Cell(b"v", i + 1)) for i in range(500)]
    tree = tree_of(cells)
    before = (tree.root, list(tree.branches), list(tree.leaves))
    key, old = cells[42]
    new = tombstone(old.timestamp + 1)
    tree.change(key, old, new)
    assert differing(before[2], tree.leaves) == [leaf_of(key)]
    assert differing(before[1], tree.branches) == [leaf_of(key) // LEAVES_PER_BRANCH]
    assert key in tree.keys_in(leaf_of(key))
    tree.change(key, new, old)
    assert (tree.root, tree.branches, tree.leaves) == before
    tree.change(key, old, None)   # purged: gone from its leaf's keys too
    assert key not in tree.keys_in(leaf_of(key)) and tree.count == 499


def test_cells_that_differ_in_anything_differ_in_the_tree():
    base = Cell(b"v", 10)
    for other in (Cell(b"w", 10), Cell(b"v", 11), Cell(b"v", 10, expires=99), tombstone(10)):
        assert tree_of([(b"k", base)]).root != tree_of([(b"k", other)]).root


def test_a_ring_of_four_has_four_ranges_each_held_by_three_nodes():
    ring = Ring(make_cluster(4, tokens=even_tokens(4)))
    ranges = ring.ranges()
    assert [ids for _, ids in ranges] == [(0, 1, 2), (1, 2, 3), (2, 3, 0), (3, 0, 1)]
    first = ranges[0][0]
    assert first.start > first.end   # the range of the smallest token wraps
    assert b"\x00" in first and b"\xff\x01" in first and b"\x3f" in first and b"\x40" not in first
    assert TokenRange(b"\x3f", b"\x7f") == ranges[1][0] and b"user:1" in ranges[1][0]
    for key in (b"\x00", b"A", b"user:1", b"\xc0", b"\xff\xff"):
        assert sum(key in r for r, _ in ranges) == 1   # every key in exactly one range
        assert [ids for r, ids in ranges if key in r][0] == ring.replica_ids(key)


def test_trees_built_in_the_background_end_as_if_built_at_once_whatever_changed_meanwhile():
    from kvstore.cluster.range_trees import RangeTrees
    from kvstore.core.ring_state import RingState
    ring = RingState(1, tuple(make_cluster(4, tokens=even_tokens(4)))).placement()
    cells = {b"k%04d" % i: Cell(b"v", i + 1) for i in range(3000)}
    trees = RangeTrees(ring, 1)
    trees.begin_build()
    keys = sorted(cells)
    trees.add_built([(k, cells[k]) for k in keys[:1000]], done=False)
    assert trees.building
    for key in (keys[10], keys[2000]):   # one the build has added, one it has not reached
        new = tombstone(cells[key].timestamp + 1)
        trees.changed(key, cells[key], new)
        cells[key] = new
    trees.changed(b"k0000x", None, Cell(b"new", 5))   # a new key below the build's cursor
    cells[b"k0000x"] = Cell(b"new", 5)
    rest = sorted(k for k in cells if k > keys[999])
    trees.add_built([(k, cells[k]) for k in rest], done=True)
    assert not trees.building
    at_once = RangeTrees(ring, 1)
    at_once.begin_build()
    at_once.add_built(sorted(cells.items()), done=True)
    for token_range in trees.held:
        a, b = trees.tree(token_range), at_once.tree(token_range)
        assert (a.root, a.leaves, a.count) == (b.root, b.leaves, b.count)
