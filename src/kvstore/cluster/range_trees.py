"""The hash trees of every token range this node holds, fed by its storage as writes are applied.

Why: range sync (kvstore.cluster.sync) compares replicas tree against tree, so the trees must always say
what storage holds. Storage calls changed(key, old, new) whenever a key's cell changes (a write merged, an
expired value turned into a tombstone, a tombstone purged). After replaying its log it builds the trees in
the background, in key order, a chunk per turn of the loop (Storage.build_trees), so that a restart does
not wait for them: until the build is done, a change of a key the build has not reached yet is left to
the build (which will read the key's cell as it is then), and the trees answer no sync (`building`). A
key outside every range this node holds (none today: the ring does not change while a node runs) is in no
tree. A node being replaced also keeps here the ranges it has not synced yet, whose keys it answers no reads of.
"""
from kvstore.core.errors import InvalidRequest
from kvstore.core.hashtree import TicTacTree


class RangeTrees:
    def __init__(self, ring, node_id):
        self._ring = ring
        ranges = ring.ranges()
        self._ranges = [r for r, _ in ranges]
        self._trees = [TicTacTree() if node_id in ids else None for _, ids in ranges]
        self._by_range = {r: tree for (r, _), tree in zip(ranges, self._trees) if tree is not None}
        self.replicas = {r: ids for r, ids in ranges if node_id in ids}
        self.held = list(self._by_range)    # the ranges this node holds, in token order
        self.syncing = set()   # held ranges not synced yet since this node's data was lost (kvstore.cluster.replace)
        self._built_to = None   # while the trees are being built: the last key added (b"": none yet)

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

    def range_of(self, key):
        """The range key falls in (held or not)."""
        return self._ranges[self._ring.owner_index(key)]
