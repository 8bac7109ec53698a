"""The hash trees of every token range this node holds, fed by its storage as writes are applied.

Why: range sync (kvstore.cluster.sync) compares replicas tree against tree, so the trees must always say
what storage holds. Storage calls changed(key, old, new) whenever a key's cell changes (a write merged, an
expired value turned into a tombstone, a tombstone purged) and rebuild(items) after replaying its log. A
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

    def changed(self, key, old, new):
        tree = self._trees[self._ring.owner_index(key)]
        if tree is not None:
            tree.change(key, old, new)

    def rebuild(self, items):
        """Trees of the cells (key, cell) a replay left in memory (grouped by range, then added in one pass)."""
        groups = [[] for _ in self._trees]
        index_of = self._ring.owner_index
        for item in items:
            groups[index_of(item[0])].append(item)
        for tree, group in zip(self._trees, groups):
            if tree is not None:
                tree.__init__()
                tree.add_all(group)

    def tree(self, token_range):
        """The tree of one range this node holds; InvalidRequest names the ranges it does hold."""
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
