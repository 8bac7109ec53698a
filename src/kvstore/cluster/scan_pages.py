"""How a scan merges what the replicas of one token range sent: pure, no I/O.

Each replica answers with at most `limit` cells of [low, high) in key order,
tombstones and expired cells included, and fewer when its answer reached its
byte budget (the page is then `truncated`). A replica whose page is full or
truncated says nothing past its last key (past `low`, when it is empty), so the
merge is complete only up to the smallest such bound; past it the scan asks
again. Within that, each key's cells
reconcile by last-write-wins, and every replica that answered with something
else for a key (or nothing) is stale and gets the newest cell.

A Page is what the client gets: live keys up to the scan's limit, and no more
than fit in one answer's byte budget.
"""
from typing import NamedTuple

from kvstore.core.cell import reconcile
from kvstore.core.config import entry_bytes


class ReplicaPage(NamedTuple):
    """One replica's answer for one range of a scan."""
    cells: list               # [(key, cell)] in key order
    truncated: bool = False   # cut short by the answer's byte budget: keys after the last may remain


def merge_pages(answers, limit, high, low=b""):
    """answers: [(node_id, ReplicaPage)] for [low, high). -> (merged [(key, newest cell)] in key order,
    stale [(node_id, key, newest cell)], covered: the exclusive bound the merge is complete up to,
    None for the top of the key space)."""
    covered = high
    for _, page in answers:
        if len(page.cells) >= limit or page.truncated:
            bound = page.cells[-1][0] + b"\x00" if page.cells else low
            covered = bound if covered is None else min(covered, bound)
    by_key = {}
    for node_id, page in answers:
        for key, cell in page.cells:
            if covered is None or key < covered:
                by_key.setdefault(key, {})[node_id] = cell
    merged, stale = [], []
    for key in sorted(by_key):
        held = by_key[key]
        newest = reconcile(held.values())
        merged.append((key, newest))
        stale.extend((node_id, key, newest) for node_id, _ in answers if held.get(node_id) != newest)
    return merged, stale, covered


class Page:
    """One page of a scan being filled: at most `limit` keys and `max_bytes` of answer (but always one
    key, so every page makes progress)."""

    def __init__(self, limit, max_bytes):
        self.items = []
        self._limit = limit
        self._max_bytes = max_bytes
        self._bytes = 0

    def add(self, key, cell):
        """Add (key, cell) unless the page is full by bytes. Once the page is full: the key the next page
        starts from (this key, when it did not fit; the one after it, when it filled the page). Else None."""
        size = entry_bytes(key, cell.value)
        if self.items and self._bytes + size > self._max_bytes:
            return key
        self.items.append((key, cell))
        self._bytes += size
        return key + b"\x00" if len(self.items) == self._limit else None
