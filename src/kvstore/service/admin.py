"""The operator's calls on one node's replica (role admin, on the client port): dump it for the
inspector, compact it now (as nodetool compact), repair its ranges and say how a repair goes."""
import time

import logging

from kvstore.core import errors
from kvstore.core.config import MAX_ANSWER_BYTES
from kvstore.service.client_service import MAX_SCAN_LIMIT
from kvstore.net.wire import to_mutation
from kvstore.cluster.scan_pages import Page
from kvstore.cluster.sync_sides import from_idl_range
from kvstore_rpc import ttypes

log = logging.getLogger(__name__)

DUMP_CHUNK = 1000   # cells a dump page takes from storage at a time while it fills by bytes


MAX_SAMPLE_ENTRIES = 100_000   # in one byte_sample answer (a few MB at most)


class AdminCalls:
    def __init__(self, node_id, storage, hints, repairs, sample):
        """sample: the replica's kvstore.storage.sample.ByteSample."""
        self._sample = sample
        self._node_id = node_id
        self._storage = storage
        self._hints = hints
        self._repairs = repairs

    def repair(self, ranges):
        try:
            self._repairs.start([from_idl_range(r) for r in ranges or []], "repair")
        except errors.InvalidRequest as exc:
            raise ttypes.InvalidRequest(why=str(exc)) from None

    def repair_status(self):
        r = self._repairs
        ranges = [ttypes.RangeState(ttypes.TokenRange(t.start, t.end), list(ids), finished, since, readable, keys,
                                    self._sample.estimate(t))
                  for t, ids, finished, since, readable, keys in r.range_states()]
        elapsed = ((r.ended or time.time()) - r.started) if r.started else 0.0
        s = r.stats
        return ttypes.RepairStatus(self._node_id, r.kind, r.running, r.ranges_total, r.ranges_done, s.keys_compared,
                                   s.cells_in, s.cells_out, s.bytes_sent, list(r.failed), int(r.started * 1e6),
                                   elapsed, ranges, r.fraction())

    def byte_sample(self, token_range):
        if token_range is None:
            raise ttypes.InvalidRequest(why="byte_sample needs a token range")
        entries = self._sample.entries(from_idl_range(token_range))
        step = -(-len(entries) // MAX_SAMPLE_ENTRIES)   # thinned: each entry kept stands for `step` of them
        return [ttypes.SampledKey(key, sum(w for _, w in entries[i:i + step])) for i, (key, _) in
                enumerate(entries) if i % step == 0] if entries else []

    async def compact(self):
        try:
            return await self._storage.compact()
        except errors.StorageError as exc:
            log.error("compaction failed: %s", exc)
            raise ttypes.StorageFailure(why=str(exc)) from None

    def dump(self, key, start=None, limit=None):
        if limit is not None and limit < 0:
            raise ttypes.InvalidRequest(why=f"a dump's limit is a count of cells (0: no count), not {limit}")
        if key:
            cell = self._storage.get(key)
            items, next_start = ([(key, cell)] if cell is not None else []), None
        else:
            items, next_start = self._dump_page(start or b"", min(limit, MAX_SCAN_LIMIT) if limit else None)
        records, fsyncs = self._storage.log_counters
        return ttypes.NodeDump(self._node_id, [to_mutation(k, c) for k, c in items], self._hints.counts(),
                               self._storage.log_file_bytes, self._hints.bytes_on_disk, records, fsyncs, next_start,
                               self._storage.log_bytes)

    def _dump_page(self, start, count):
        """(cells from start in key order, where the next page starts or None): at most count of them
        (None: no count), and never more than fit in one answer."""
        page, low = Page(count, MAX_ANSWER_BYTES), start
        while True:
            chunk = self._storage.scan(low, None, DUMP_CHUNK)
            for key, cell in chunk:
                resume = page.add(key, cell)
                if resume is not None:
                    return page.items, resume
            if len(chunk) < DUMP_CHUNK:
                return page.items, None
            low = chunk[-1][0] + b"\x00"
