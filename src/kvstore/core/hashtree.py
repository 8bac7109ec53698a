"""A hash tree of one token range's cells, kept up to date as writes land (Riak's TicTac trees).

Why: two replicas of a range must find what they disagree on without reading every cell. Each key
falls in one of LEAVES leaves by a hash of the key alone; a leaf's hash is the XOR of a 64-bit digest
of every (key, cell) in it, so a write changes its leaf in O(1): XOR the old cell's digest out and the
new one's in. Leaves are grouped in BRANCHES branches (the XOR of their leaves), and the root is the
XOR of everything. Two replicas compare branches, then the leaves of the branches that differ, then
the (key, timestamp, digest) entries of the leaves that differ: only those keys move.

The digest covers the whole cell: xxHash3 of the key and value seeded with the timestamp, XOR an odd
multiple of (expiry, kind), so two cells that differ in anything differ in their digest (the multiple
is one-to-one, and a change of timestamp reseeds the hash). xxHash is fixed across machines, unlike
Python's hash(), and cheap enough for every write. Each leaf also keeps the set of its keys, so the
entries of one leaf are found without a scan of the range. Pure: no I/O.
"""
from xxhash import xxh3_64_intdigest

BRANCHES = 64
LEAVES_PER_BRANCH = 64
LEAVES = BRANCHES * LEAVES_PER_BRANCH


MASK = 2**64 - 1
_ODD = 0x9E3779B97F4A7C15   # multiplying by an odd number mod 2^64 is one-to-one


def leaf_of(key):
    """The leaf a key falls in, the same on every node."""
    return xxh3_64_intdigest(key) % LEAVES


def digest(key, cell):
    """A 64-bit digest of one (key, cell); 0 for no cell."""
    if cell is None:
        return 0
    value, timestamp, expires = cell
    return xxh3_64_intdigest(key + (value or b""), seed=timestamp & MASK) ^ (
        ((expires << 1 | (value is None)) * _ODD) & MASK)


class TicTacTree:
    __slots__ = ("leaves", "branches", "root", "_keys", "count")

    def __init__(self):
        self.leaves = [0] * LEAVES
        self.branches = [0] * BRANCHES
        self.root = 0
        self._keys = [set() for _ in range(LEAVES)]   # each leaf's keys
        self.count = 0      # keys in the tree

    def change(self, key, old, new):
        """key's cell went from old to new (either None: absent)."""
        leaf = leaf_of(key)
        delta = digest(key, old) ^ digest(key, new)
        self.leaves[leaf] ^= delta
        self.branches[leaf // LEAVES_PER_BRANCH] ^= delta
        self.root ^= delta
        if old is None and new is not None:
            self._keys[leaf].add(key)
            self.count += 1
        elif new is None and old is not None:
            self._keys[leaf].discard(key)
            self.count -= 1

    def add_all(self, items):
        """Add (key, cell) of keys not in the tree yet: change(key, None, cell) for each, in one pass (the
        rebuild at start-up, for millions of cells)."""
        leaves, keys, hash64 = self.leaves, self._keys, xxh3_64_intdigest
        for key, (value, timestamp, expires) in items:
            leaf = hash64(key) % LEAVES
            leaves[leaf] ^= hash64(key + (value or b""), seed=timestamp & MASK) ^ (
                ((expires << 1 | (value is None)) * _ODD) & MASK)
            keys[leaf].add(key)
            self.count += 1
        for branch in range(BRANCHES):
            folded = 0
            for leaf_hash in self.leaf_hashes(branch):
                folded ^= leaf_hash
            self.branches[branch] = folded
        root = 0
        for branch_hash in self.branches:
            root ^= branch_hash
        self.root = root

    def leaf_hashes(self, branch):
        """The LEAVES_PER_BRANCH leaf hashes of one branch."""
        start = branch * LEAVES_PER_BRANCH
        return self.leaves[start:start + LEAVES_PER_BRANCH]

    def keys_in(self, leaf):
        """The keys of one leaf (a copy, sorted)."""
        return sorted(self._keys[leaf])

