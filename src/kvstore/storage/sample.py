"""A small sample of this replica's keys, weighted by size, to estimate a range's bytes and where to split it
without a scan (FoundationDB's byte sample).

Why deterministic: a key is in the sample when a hash of the key falls below its cell's size over SAMPLE_BYTES,
so every replica holding the same cell samples the same key, and a restart rebuilds the same sample from the
cells (built in the background with the hash trees: Storage.build_trees). A sampled key stands for
max(its size, SAMPLE_BYTES) bytes: the estimate of a range's bytes is the sum over its sampled keys, unbiased
whatever the sizes (a large cell is always sampled and counts as itself). A 100-byte entry is sampled about
once in 30, so the sample takes a few percent of the memory of the keys.
"""
import xxhash
from sortedcontainers import SortedDict

SAMPLE_BYTES = 4000        # an entry this large or larger is always sampled
ENTRY_OVERHEAD = 64        # what a cell costs beyond its key and value (stamps, framing)
_SEED = 0x6b7673616d706c65  # "kvsample": not the hash trees' digest, so the two do not correlate
_SCALE = 1 << 64


def entry_size(key, cell):
    return len(key) + len(cell.value or b"") + ENTRY_OVERHEAD


def weight(key, cell):
    """The bytes key stands for in the sample (0: not sampled)."""
    if cell is None:
        return 0
    size = entry_size(key, cell)
    if size >= SAMPLE_BYTES:
        return size
    return SAMPLE_BYTES if xxhash.xxh3_64_intdigest(key, _SEED) * SAMPLE_BYTES < size * _SCALE else 0


class ByteSample:
    def __init__(self):
        self._weights = SortedDict()   # sampled key -> the bytes it stands for
        self._built_to = None          # while being built: the last key added (see RangeTrees, which it follows)

    def changed(self, key, old, new):
        if self._built_to is not None and key > self._built_to:
            return   # the build has not reached it
        w = weight(key, new)
        if w:
            self._weights[key] = w
        elif old is not None:
            self._weights.pop(key, None)

    def begin_build(self):
        self._weights.clear()
        self._built_to = b""

    def add_built(self, items, done):
        for key, cell in items:
            w = weight(key, cell)
            if w:
                self._weights[key] = w
        self._built_to = None if done else (items[-1][0] if items else self._built_to)

    def __len__(self):
        return len(self._weights)

    def entries(self, token_range):
        """[(key, bytes it stands for)] of the sampled keys in token_range, in key order (a wrapping range: the keys
        above its start, then those up to its end)."""
        start, end = token_range
        if start < end:
            return list(self._between(start, end))
        return list(self._between(start, None)) + list(self._between(None, end))

    def estimate(self, token_range):
        """The bytes this replica holds in token_range, estimated from the sample."""
        return sum(w for _, w in self.entries(token_range))

    def _between(self, low, high):
        """(key, weight) for low < key <= high (None: no bound)."""
        keys = self._weights.irange(low, high, inclusive=(False, True))
        return ((k, self._weights[k]) for k in keys)
