"""The ring as versioned cluster state: an epoch that only grows, the nodes, and the change under way.

Why: a ring that changes while the cluster serves must change in steps every node agrees on, each a new
epoch, each with an invariant that holds whichever nodes have taken it and whichever still hold the one
before (the stages ScyllaDB's topology coordinator and Cassandra 6's cluster metadata converged on):

  stable             nodes: the ring. Reads and writes use it.
  1 write-both       `target` is the ring to be. Writes go to the old replicas and the new ones, and
                     succeed only at their level in both sets; reads use the old. (Any node at the epoch
                     before, stable, writes the old set: still at its level in the old set.)
  2 streaming        as 1; the new replicas sync each range they gain from a replica that loses it.
  3 read-new         as 1, but reads use the new replicas: streaming is complete. (A node still at 2 reads
                     the old, which have had every write since 1: both answer right.)
  then stable again  nodes := target, one epoch more: writes and reads use the new ring only. Once every
                     node has it, the nodes that lost ranges drop them (cleanup).

A change is cancelled from any of 1-3 by going back to the old ring (stable, one epoch more): the old
replicas took every write throughout, so they are complete. Pure: the nodes persist it
(kvstore.storage.ring_file), carry its epoch on heartbeats, and adopt a newer one from any peer.
"""
import json
from dataclasses import dataclass, replace

from kvstore.core.config import NodeConfig
from kvstore.core.errors import ConfigError, InvalidRequest
from kvstore.core.ring import Ring

STABLE, WRITE_BOTH, STREAMING, READ_NEW = "stable", "write-both", "streaming", "read-new"
STAGES = (STABLE, WRITE_BOTH, STREAMING, READ_NEW)
KINDS = ("add", "decommission", "removenode", "move")
MAX_STATE_BYTES = 1 << 20   # a ring state crossing a port: a few hundred bytes a node


@dataclass(frozen=True)
class RingState:
    epoch: int
    nodes: tuple                  # NodeConfig of the ring in use (the old one, during a change)
    stage: str = STABLE
    kind: str = ""                # what the change is: one of KINDS
    subject: int = -1             # the node it adds, retires, removes or moves
    target: tuple = ()            # NodeConfig of the ring to be, during a change

    @property
    def changing(self):
        return self.stage != STABLE

    def begin(self, kind, subject, target):
        """The first step of a change to the ring `target` (write-both); InvalidRequest while one is under way."""
        if self.changing:
            raise InvalidRequest(f"a {self.kind} of node {self.subject} is in progress (epoch {self.epoch}, "
                                 f"{self.stage}): finish it with `./server.sh ring resume` or undo it with "
                                 "`./server.sh ring cancel` first")
        if kind not in KINDS:
            raise InvalidRequest(f"unknown ring change {kind!r}")
        if len(target) < 1:
            raise InvalidRequest("a ring needs at least one node")
        return replace(self, epoch=self.epoch + 1, stage=WRITE_BOTH, kind=kind, subject=subject,
                       target=tuple(target))

    def advance(self):
        """The next step: write-both -> streaming -> read-new -> stable on the target ring."""
        if self.stage == WRITE_BOTH:
            return replace(self, epoch=self.epoch + 1, stage=STREAMING)
        if self.stage == STREAMING:
            return replace(self, epoch=self.epoch + 1, stage=READ_NEW)
        if self.stage == READ_NEW:
            return RingState(self.epoch + 1, self.target)
        raise InvalidRequest("no ring change is in progress")

    def cancel(self):
        """Back to the old ring, stable: it took every write of the change."""
        if not self.changing:
            raise InvalidRequest("no ring change is in progress")
        return RingState(self.epoch + 1, self.nodes)

    def all_nodes(self):
        """Every node of the old ring and the new, by id (a node in both: as the new ring has it)."""
        merged = {n.node_id: n for n in self.nodes}
        merged.update({n.node_id: n for n in self.target})
        return [merged[i] for i in sorted(merged)]

    def joining(self, node_id):
        """True for a node of the ring to be that is not in the ring in use: it starts empty, by design."""
        return self.changing and all(n.node_id != node_id for n in self.nodes)

    def node_state(self, node_id):
        """nodetool's letter for node_id: N normal, J joining, L leaving, M moving."""
        if not self.changing or node_id != self.subject:
            return "N"
        return {"add": "J", "move": "M"}.get(self.kind, "L")

    def placement(self):
        return Placement(self)

    # ---- on disk and on the wire ----

    def to_json(self):
        return json.dumps({"epoch": self.epoch, "nodes": [_node(n) for n in self.nodes], "stage": self.stage,
                           "kind": self.kind, "subject": self.subject, "target": [_node(n) for n in self.target]},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text, source="ring state"):
        """A RingState from to_json's text, every field checked; ConfigError names what is wrong."""
        if len(text) > MAX_STATE_BYTES:
            raise ConfigError(f"{source}: {len(text)} bytes, more than the {MAX_STATE_BYTES} a ring state may be")
        try:
            raw = json.loads(text)
            state = cls(int(raw["epoch"]), tuple(_from(n) for n in raw["nodes"]), str(raw["stage"]),
                        str(raw["kind"]), int(raw["subject"]), tuple(_from(n) for n in raw["target"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{source} is not a ring state: {type(exc).__name__}: {str(exc)[:200]}") from None
        if state.epoch < 1 or state.stage not in STAGES or not state.nodes:
            raise ConfigError(f"{source}: epoch {state.epoch}, stage {state.stage[:20]!r}, {len(state.nodes)} nodes: "
                              "not a ring state")
        if state.changing and (state.kind not in KINDS or not state.target):
            raise ConfigError(f"{source}: a change with no kind or no target ring")
        for ring in (state.nodes, state.target):
            if len({n.token for n in ring}) != len(ring) or len({n.node_id for n in ring}) != len(ring):
                raise ConfigError(f"{source}: two nodes share a token or an id")
        return state


def _node(n):
    return [n.node_id, n.host, n.port, n.token.hex(), n.peer_port]


def _from(raw):
    node_id, host, port, token, peer_port = raw
    if not isinstance(host, str) or not 0 < int(port) < 65536 or not 0 < int(peer_port) < 65536 or not token:
        raise ValueError(f"bad node {str(raw)[:100]}")
    return NodeConfig(int(node_id), host[:255], int(port), bytes.fromhex(token), int(peer_port))


class Placement:
    """Where each key's requests go at one RingState: the ids a read asks, the sets a write must reach its level
    in, and the elementary ranges (cut at every token of the old ring and the new) whose hash trees a node keeps.
    """

    def __init__(self, state):
        self.state = state
        self.epoch = state.epoch
        self.old = Ring(state.nodes)
        self.new = Ring(state.target) if state.changing else None
        self.read_ring = self.new if state.stage == READ_NEW else self.old
        self.nodes = state.all_nodes()
        tokens = sorted({n.token for n in state.nodes} | {n.token for n in state.target})
        self._pieces = Ring([NodeConfig(i, "", 1, t, 2) for i, t in enumerate(tokens)], replication_factor=1)

    # ---- requests ----

    def replica_ids(self, key):
        """The ids a read of key asks."""
        return self.read_ring.replica_ids(key)

    def replicas_for(self, key):
        return self.read_ring.replicas_for(key)

    def write_groups(self, key):
        """(ids,) or, during a change where key's replicas differ, (old ids, new ids): a write reaches its level
        in each."""
        old = self.old.replica_ids(key)
        if self.new is None:
            return (old,)
        new = self.new.replica_ids(key)
        return (old,) if new == old else (old, new)

    def segment_at(self, key):
        return self.read_ring.segment_at(key)

    # ---- ranges ----

    def ranges(self):
        """[(TokenRange, (old ids, new ids))] of every elementary range, in token order (new ids == old ids when
        stable)."""
        pieces = []
        for token_range, _ in self._pieces.ranges():
            probe = _inside(token_range)
            old = self.old.replica_ids(probe)
            pieces.append((token_range, (old, self.new.replica_ids(probe) if self.new else old)))
        return pieces

    def owner_index(self, key):
        """The index in ranges() of the range key falls in."""
        return self._pieces.owner_index(key)

    def held_by(self, node_id):
        """The elementary ranges node_id holds (old or new) and their replicas: [(TokenRange, ids)], old first."""
        return [(r, tuple(dict.fromkeys(old + new))) for r, (old, new) in self.ranges()
                if node_id in old or node_id in new]

    def gains(self, node_id):
        """[(TokenRange, old ids)]: the ranges node_id is a new replica of and not an old one (what it streams)."""
        return [(r, old) for r, (old, new) in self.ranges() if node_id in new and node_id not in old]


def _inside(token_range):
    """A key inside token_range: its end (every range holds its last key)."""
    return token_range.end
