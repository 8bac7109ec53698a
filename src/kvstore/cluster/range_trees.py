"""The hash trees of every token range this node holds, fed by its storage as writes are applied.

Why: range sync (kvstore.cluster.sync) compares replicas tree against tree, so the trees must always say
what storage holds. Storage calls changed(key, old, new) whenever a key's cell changes (a write merged, an
expired value turned into a tombstone, a tombstone purged). After replaying its log it builds the trees in
the background, in key order, a chunk per turn of the loop (Storage.build_trees), so that a restart does
not wait for them: until the build is done, a change of a key the build has not reached yet is left to
the build (which will read the key's cell as it is then), and the trees answer no sync (`building`). A
key outside every range this node holds is in no tree. The ranges are the elementary ranges of the ring's
placement (kvstore.core.ring_state: during a change, cut at every token of the old ring and the new); when
the ring changes, reshape() starts empty trees for the new ranges, built again the same way. A node being
replaced also keeps here the ranges it has not synced yet, whose keys it answers no reads of.
"""
from kvstore.core.errors import InvalidRequest
from kvstore.core.hashtree import TicTacTree


class RangeTrees:
    def __init__(self, placement, node_id):
        """placement: a kvstore.core.ring_state.Placement."""
        self._node_id = node_id
        self.syncing = set()   # held ranges not synced yet since this node's data was lost (kvstore.cluster.replace)
        self._built_to = None   # while the trees are being built: the last key added (b"": none yet)
        self.generation = 0     # how many builds have begun: a build of an older one stops (Storage.build_trees)
        self._shape(placement)

    def _shape(self, placement):
        self._ring = placement
        held = dict(placement.held_by(self._node_id))
        self._ranges = [r for r, _ in placement.ranges()]
        self._trees = [TicTacTree() if r in held else None for r in self._ranges]
        self._by_range = {r: tree for r, tree in zip(self._ranges, self._trees) if tree is not None}
        self.replicas = held     # {held range: its replica ids, the old ring's first}
        self.held = list(self._by_range)    # the ranges this node holds, in token order

    def reshape(self, placement):
        """Trees for the ranges of a new placement, empty until built again (Storage.build_trees); True when they
        must be built (False: the same ranges as before, whose trees are kept)."""
        if [r for r, _ in placement.ranges()] == self._ranges and dict(placement.held_by(self._node_id)).keys() \
                == self._by_range.keys():
            self._ring, self.replicas = placement, dict(placement.held_by(self._node_id))
            return False
        self._shape(placement)
        self.begin_build()
        return True

    def changed(self, key, old, new):
        if self._built_to is not None and key > self._built_to:
            return   # the build has not reached it: it will add the key's cell as it is then
        tree = self._trees[self._ring.owner_index(key)]
        if tree is not None:
            tree.change(key, old, new)

    def begin_build(self):
        """Empty trees, to be built from the cells in key order (add_built), before they answer any sync."""
        for tree in self._by_range.values():
            tree.__init__()
        self._built_to = b""
        self.generation += 1

    def add_built(self, items, done):
        """The next cells (key, cell) of the build, in key order (grouped by range, then added in one pass);
        done: they were the last."""
        if not items and not done:
            return
        groups = [[] for _ in self._trees]
        index_of = self._ring.owner_index
        for item in items:
            groups[index_of(item[0])].append(item)
        for tree, group in zip(self._trees, groups):
            if tree is not None and group:
                tree.add_all(group)
        self._built_to = None if done else items[-1][0]

    @property
    def building(self):
        return self._built_to is not None

    def tree(self, token_range):
        """The tree of one range this node holds; InvalidRequest names the ranges it does hold, or says the
        trees are still being built."""
        if self._built_to is not None:
            raise InvalidRequest("this node is still building the hash trees of its ranges (it started a moment "
                                 "ago): a sync of them waits until it is done")
        tree = self._by_range.get(token_range)
        if tree is None:
            raise InvalidRequest(f"range {token_range} is not one this node holds: it holds "
                                 + ", ".join(map(str, self.held)))
        return tree

    def readable(self, key):
        """False while key's range is still syncing: this replica may lack what its peers acknowledged."""
        return not self.syncing or self._ranges[self._ring.owner_index(key)] not in self.syncing

    def keys_in(self, token_range):
        """How many keys of a held range the tree counts (fewer while it is being built)."""
        return self._by_range[token_range].count

    def holds(self, key):
        """True when key is in a range this node holds (old ring or new, during a change)."""
        return self._trees[self._ring.owner_index(key)] is not None

    def range_of(self, key):
        """The range key falls in (held or not)."""
        return self._ranges[self._ring.owner_index(key)]
