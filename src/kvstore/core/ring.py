"""Byte-ordered placement: which nodes hold a key.

Tokens are byte strings compared as bytes. A node owns the keys in
(previous token, its token]; the node with the smallest token also owns every
key above the largest token (the wrap-around). A key's replicas are its owner
and the next nodes clockwise, up to the replication factor. Pure: no I/O.
"""
import bisect
from typing import NamedTuple

from kvstore.core.errors import InvalidRequest

REPLICATION_FACTOR = 3


class TokenRange(NamedTuple):
    """The keys in (start, end] in byte order; start >= end: the range wraps around the top of the key space
    (the range of the node with the smallest token). One node's range: its token is the end."""
    start: bytes
    end: bytes

    def __contains__(self, key):
        if self.start < self.end:
            return self.start < key <= self.end
        return key > self.start or key <= self.end

    def __str__(self):
        return f"({self.start.hex()}, {self.end.hex()}]"


class Ring:
    def __init__(self, nodes, replication_factor=REPLICATION_FACTOR):
        self._nodes = sorted(nodes, key=lambda n: n.token)
        self._tokens = [n.token for n in self._nodes]
        self.replication_factor = min(replication_factor, len(self._nodes))
        self.by_id = {n.node_id: n for n in self._nodes}
        # Each owner's replica ids, computed once: the coordinator asks for them on every request.
        self._ids_from = [tuple(n.node_id for n in self._replicas_from(i)) for i in range(len(self._nodes))]

    @property
    def nodes(self):
        """Every node, in token order."""
        return list(self._nodes)

    def owner_index(self, key):
        # The first token >= key owns it; past the last token we wrap to the first.
        return bisect.bisect_left(self._tokens, key) % len(self._tokens)

    def replicas_for(self, key):
        """The key's replica nodes: owner first, then clockwise."""
        if not key:
            raise InvalidRequest("the key must not be empty")
        return self._replicas_from(self.owner_index(key))

    def replica_ids(self, key):
        """The ids of replicas_for(key), in the same order."""
        if not key:
            raise InvalidRequest("the key must not be empty")
        return self._ids_from[self.owner_index(key)]

    def _replicas_from(self, owner):
        count = len(self._nodes)
        return [self._nodes[(owner + i) % count] for i in range(self.replication_factor)]

    def segment_at(self, key):
        """(end, replicas) of the stretch of key space that starts at key (b"" for the very start)
        and lies in one token range: it runs up to `end`, exclusive (None: the top of the key space,
        the wrap-around part of the first range). For scans, which walk the ring in byte order."""
        index = bisect.bisect_left(self._tokens, key)
        if index == len(self._tokens):
            return None, self._replicas_from(0)
        return self._tokens[index] + b"\x00", self._replicas_from(index)

    def ranges(self):
        """[(TokenRange, its replica ids)] of every range, in token order: range i ends at node i's token."""
        return [(TokenRange(self._tokens[i - 1], self._tokens[i]), self._ids_from[i]) for i in range(len(self._tokens))]
