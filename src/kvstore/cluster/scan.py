"""Scanner: how a coordinator scans. Walk the token ranges from
the scan's start in byte order, read each from its replicas at the level, merge their pages (scan_pages.py),
repair what differs in the background, and stop at the page's limit or byte budget."""
import logging
import time

from kvstore.core.cell import visible
from kvstore.core.config import MAX_ANSWER_BYTES
from kvstore.core.errors import InvalidRequest, TimedOut
from kvstore.core.notation import show
from kvstore.cluster.quorum import Responses, reasons
from kvstore.cluster.scan_pages import Page, merge_pages

log = logging.getLogger(__name__)

MIN_SCAN_PAGE = 64   # cells asked of a replica at least: tombstones fill pages but show nothing


class Scanner:
    def __init__(self, ring, replicas, fanout, repair, clock, timeout):
        """repair: the coordinator's ReadRepair, which writes the newest cell to replicas whose pages differ."""
        self._ring = ring
        self._replicas = replicas
        self._fanout = fanout
        self._repair = repair
        self._clock = clock
        self._timeout = timeout

    def reshape(self, placement):
        self._ring = placement

    async def scan(self, start, end, limit, level, max_bytes=MAX_ANSWER_BYTES):
        """(items [(key, cell)], resume key or None): the live keys in [start, end) (end None: to the
        top of the key space) in byte order, at most limit and at most max_bytes of them (but always one),
        from each token range's replicas at level."""
        if end is not None and start > end:
            raise InvalidRequest(f"the scan's start {show(start)} is after its end {show(end)} "
                                 "(an empty end scans to the end of the key space)")
        if limit <= 0:
            raise InvalidRequest(f"the scan's limit must be positive, not {limit}")
        deadline = time.monotonic() + self._timeout
        page, low = Page(limit, max_bytes), start
        while low is not None and (end is None or low < end):
            segment_end, replicas = self._ring.segment_at(low)
            high = segment_end if end is None or (segment_end is not None and segment_end < end) else end
            asked = max(limit - len(page.items), MIN_SCAN_PAGE)
            cells, covered = await self._scan_segment(low, high, asked, replicas, level, deadline)
            now = self._clock.earliest()
            for key, cell in cells:
                resume = page.add(key, cell) if visible(cell, now) is not None else None
                if resume is not None:
                    return page.items, (resume if end is None or resume < end else None)
            low = covered
        return page.items, None

    async def _scan_segment(self, low, high, limit, replicas, level, deadline):
        """(merged [(key, cell)] in key order, where the merge is complete up to: exclusive, None for
        the top) of [low, high) within one token range, read from its replicas at level."""
        alive, _, needed = self._fanout.plan([n.node_id for n in replicas], level)
        responses = Responses(needed, len(alive))
        for node_id in alive:
            self._replicas[node_id].scan_async(low, high, limit, deadline, self._fanout.read_done(node_id, responses))
        if not await responses.wait(deadline):
            answered, failures = responses.snapshot()
            raise TimedOut(f"{level.name} scan of a token range needs {needed} replicas, "
                           f"{len(answered)} answered in time" + reasons(failures), len(answered), needed)
        merged, stale, covered = merge_pages(responses.snapshot()[0], limit, high, low)
        if stale:
            log.debug("scan repairs %d stale cells", len(stale))
            self._repair.in_background(stale)
        return merged, covered
