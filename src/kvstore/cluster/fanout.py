"""Fanout: which replicas one request goes to, and how their answers reach its Responses.

A request's replicas are planned at its level (the live ones, the local one last so remote calls are queued
before the local one runs; Unavailable when too few are up), grouped by node for a batch, and each answer is
turned into an ok or a failure of the request's Responses. A replica that refused the connection is marked
down at once; a slow answer proves nothing. The write, the read, the scan and read repair share this.
"""
from kvstore.cluster.quorum import BothResponses, Responses
from kvstore.core.cell import Cell
from kvstore.core.consistency import block_for
from kvstore.core.errors import ConnectFailed, Unavailable


class Fanout:
    def __init__(self, local_id, detector, clock):
        self.local_id = local_id
        self._detector = detector
        self._clock = clock

    def plan(self, ids, level):
        """(live replica ids, the local one last; down replica ids; answers needed); Unavailable if too few are
        alive."""
        needed = block_for(level, len(ids))
        local, is_up = self.local_id, self._detector.is_up
        alive = [i for i in ids if i != local and is_up(i)]
        if local in ids:
            alive.append(local)
        if len(alive) < needed:
            raise Unavailable(len(alive), needed, level.name, len(ids))
        return alive, [i for i in ids if i not in alive], needed

    def plan_write(self, groups, level):
        """(live ids, down ids, the Responses to gather their answers in) of a write to key whose replica sets
        are groups (kvstore.core.ring_state.Placement.write_groups): its level in each; Unavailable if one has
        too few alive."""
        if len(groups) == 1:
            alive, down, needed = self.plan(groups[0], level)
            return alive, down, Responses(needed, len(alive))
        planned = [self.plan(ids, level) for ids in groups]
        alive = list(dict.fromkeys(i for a, _, _ in planned for i in a if i != self.local_id))
        if any(self.local_id in a for a, _, _ in planned):
            alive.append(self.local_id)
        down = list(dict.fromkeys(i for _, d, _ in planned for i in d))
        return alive, down, BothResponses([(frozenset(ids), needed) for ids, (_, _, needed) in zip(groups, planned)],
                                          len(alive))

    def by_node(self, requests_by_key):
        """[(node_id, [request])] from [(live ids, make_request(node_id))]: the local node last."""
        grouped = {}
        for alive, request in requests_by_key:
            for node_id in alive:
                grouped.setdefault(node_id, []).append(request(node_id))
        return sorted(grouped.items(), key=lambda item: item[0] == self.local_id)

    def note_failure(self, node_id, error):
        if isinstance(error, ConnectFailed):  # refused: it is down. A slow answer proves nothing.
            self._detector.mark_down(node_id, str(error))

    def read_done(self, node_id, responses):
        """The callback of one read (or scan) of one replica: its answer or its failure, into responses."""
        def done(error, cell):
            if error is None:
                if isinstance(cell, Cell):   # a read's answer (a scan's is a page)
                    self._clock.observe(cell.timestamp)
                responses.ok(node_id, cell)
            else:
                self.note_failure(node_id, error)
                responses.fail(node_id, str(error))
        return done
