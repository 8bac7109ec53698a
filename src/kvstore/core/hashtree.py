"""A hash tree of one token range's cells, kept up to date as writes land (Riak's TicTac trees).

Why: two replicas of a range must find what they disagree on without reading every cell. Each key
falls in one of LEAVES leaves by a hash of the key alone; a leaf's hash is the XOR of a 64-bit digest
of every (key, cell) in it, so a write changes its leaf in O(1): XOR the old cell's digest out and the
new one's in. Leaves are grouped in BRANCHES branches (the XOR of their leaves), and the root is the
XOR of everything. Two replicas compare branches, then the leaves of the branches that differ, then
the (key, timestamp, digest) entries of the leaves that differ: only those keys move.

The digest covers the whole cell as its commit-log record encodes it (key, kind, timestamp, expiry,
value), so two cells that differ in anything differ in their digest. Each leaf also keeps the set of
its keys, so the entries of one leaf are found without a scan of the range. Pure: no I/O.
"""
import hashlib
import zlib

from kvstore.core.cell import encode_mutation

BRANCHES = 64
LEAVES_PER_BRANCH = 64
LEAVES = BRANCHES * LEAVES_PER_BRANCH


def leaf_of(key):
    """The leaf a key falls in, the same on every node (crc32 is fixed; Python's hash() is not)."""
    return zlib.crc32(key) % LEAVES


def digest(key, cell):
    """A 64-bit digest of one (key, cell); 0 for no cell."""
    if cell is None:
        return 0
    return int.from_bytes(hashlib.blake2b(encode_mutation(key, cell), digest_size=8).digest(), "big")


class TicTacTree:
    __slots__ = ("leaves", "branches", "root", "_keys", "count")

    def __init__(self):
        self.leaves = [0] * LEAVES
        self.branches = [0] * BRANCHES
        self.root = 0
        self._keys = {}     # leaf -> set of its keys (only leaves that hold any)
        self.count = 0      # keys in the tree

    def change(self, key, old, new):
        """key's cell went from old to new (either None: absent)."""
        leaf = leaf_of(key)
        delta = digest(key, old) ^ digest(key, new)
        self.leaves[leaf] ^= delta
        self.branches[leaf // LEAVES_PER_BRANCH] ^= delta
        self.root ^= delta
        if old is None and new is not None:
            self._keys.setdefault(leaf, set()).add(key)
            self.count += 1
        elif new is None and old is not None:
            keys = self._keys.get(leaf)
            if keys is not None:
                keys.discard(key)
                self.count -= 1

    def leaf_hashes(self, branch):
        """The LEAVES_PER_BRANCH leaf hashes of one branch."""
        start = branch * LEAVES_PER_BRANCH
        return self.leaves[start:start + LEAVES_PER_BRANCH]

    def keys_in(self, leaf):
        """The keys of one leaf (a copy, sorted)."""
        return sorted(self._keys.get(leaf, ()))


def differing(mine, theirs, offset=0):
    """Indexes (plus offset) where two equal-length lists of hashes differ."""
    return [offset + i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b]
