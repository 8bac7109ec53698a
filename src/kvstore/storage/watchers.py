"""What a replica tells of every change of a key's cell, and how they are built after a restart.

Why: range sync compares hash trees (kvstore.cluster.range_trees) and ring changes estimate bytes from a byte
sample (kvstore.storage.sample); both must always say what storage holds. Storage calls changed(key, old,
new) whenever a key's cell changes (a write merged, an expired value turned into a tombstone, a tombstone
purged, a key cleaned up). After a replay they are built from the cells in key order, a chunk per turn of the
loop (build), so a restart does not wait for them; until then a change of a key the build has not reached is
left to the build, which reads the key's cell as it is then.
"""
import asyncio
import logging

log = logging.getLogger(__name__)

CHUNK = 20_000   # keys built from in one turn of the loop (tens of milliseconds)


class Watchers:
    def __init__(self, *watchers):
        """watchers: objects with changed(key, old, new), begin_build(), add_built(items, done); None is left out.
        The first one's `generation` (how many builds it has begun) ends a build it has begun again since."""
        self._all = [w for w in watchers if w is not None]
        self._first = self._all[0] if self._all else None

    @property
    def generation(self):
        return getattr(self._first, "generation", 0)

    def changed(self, key, old, new):
        for watcher in self._all:
            watcher.changed(key, old, new)

    def begin_build(self):
        for watcher in self._all:
            watcher.begin_build()

    async def build(self, keys, cells, stopping, chunk=CHUNK):
        """Feed every watcher every cell, in key order (keys: the sorted key index; cells: key -> cell), `chunk`
        keys a turn of the loop, until done, stopping() is true, or a build began again (the ring changed:
        RangeTrees.reshape) and the new one's task goes on instead."""
        done, low, generation = False, b"", self.generation
        while not done and not stopping() and self.generation == generation:
            start = keys.bisect_right(low)
            batch = list(keys.islice(start, start + chunk))
            done = len(batch) < chunk
            items = [(key, cells[key]) for key in batch]
            for watcher in self._all:
                watcher.add_built(items, done)
            if batch:
                low = batch[-1]
            await asyncio.sleep(0)
        if done:
            log.info("hash trees and byte sample built: %d keys", len(cells))
