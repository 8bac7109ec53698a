"""./server.sh balance [--apply]: propose tokens that even out the bytes each node holds, and with --apply move
the nodes to them, one move at a time (kvstore.tools.ring_change).

The data's shape comes from the byte samples (kvstore.storage.sample): each range's sample from one live replica,
put together in key order, says how the bytes spread over the key space. The proposal keeps the nodes in their
ring order and cuts the key space where the running sum of bytes passes 1/N, 2/N, ... (the last node keeps
its token when it is above every key), so every range, and so every node (which holds RF consecutive ranges),
gets its share. A move that is cut short (Ctrl-C, a crash) is finished by `ring resume`; running balance
--apply again carries on with the moves left.
"""
import sys

from kvstore.core.config import NodeConfig
from kvstore.core.errors import ConfigError, KVStoreError
from kvstore.core.ring import Ring
from kvstore.tools.heal import call
from kvstore.tools.ring_change import begin, drive, newest_state
from kvstore_rpc import ttypes

EXIT_OK, EXIT_FAILED = 0, 1
GOOD_ENOUGH = 1.1   # a ring whose most loaded node holds at most this much over its least is left as it is


def add_parsers(sub):
    p = sub.add_parser("balance", help="propose tokens that even out the bytes per node (--apply: move to them)")
    p.add_argument("--apply", action="store_true", help="carry the moves out, one at a time")


def cmd_balance(cluster, args, out=sys.stdout):
    state = newest_state(cluster)
    if state.changing:
        raise ConfigError(f"a {state.kind} of node {state.subject} is in progress: ./server.sh ring resume (or "
                          "cancel) first")
    nodes = Ring(list(state.nodes)).nodes
    sample = ring_sample(nodes, cluster.access)
    if len(sample) < 2 * len(nodes):
        print(f"too little data to balance by ({len(sample)} sampled keys): write some first", file=out)
        return EXIT_OK
    proposed = propose(nodes, sample)
    now, after = node_bytes(nodes, sample), node_bytes(proposed, sample)
    print(f"{'node':<6}{'token now':<20}{'proposed':<20}{'bytes now':>12}{'after':>12}", file=out)
    for old, new in zip(nodes, proposed):
        print(f"{old.node_id:<6}{old.token.hex()[:18]:<20}{new.token.hex()[:18]:<20}{now[old.node_id]:>12}"
              f"{after[new.node_id]:>12}", file=out)
    print(f"most / least loaded node: {_spread_text(now)} now, {_spread_text(after)} after (bytes estimated from "
          f"the byte samples, {len(sample)} keys)", file=out)
    moves = [(old, new) for old, new in zip(nodes, proposed) if old.token != new.token]
    if _spread(now) <= GOOD_ENOUGH or not moves:
        print("the ring is balanced: nothing to move", file=out)
        return EXIT_OK
    if not args.apply:
        print(f"{len(moves)} moves would do it: ./server.sh balance --apply", file=out)
        return EXIT_OK
    for number, (old, new) in enumerate(moves, 1):
        state = newest_state(cluster)
        target = [new if n.node_id == old.node_id else n for n in state.nodes]
        if len({n.token for n in target}) != len(target):
            raise ConfigError(f"node {old.node_id}'s proposed token is another node's now: run balance again")
        print(f"move {number} of {len(moves)}: node {old.node_id} to token {new.token.hex()}", file=out)
        if drive(cluster, begin(cluster, state, "move", old.node_id, target, out), out) != EXIT_OK:
            return EXIT_FAILED
    print("balanced", file=out)
    return EXIT_OK


def ring_sample(nodes, access):
    """[(key, bytes it stands for)] over the whole ring, in key order: each range's byte sample from the first of
    its replicas that answers."""
    by_id, entries = {n.node_id: n for n in nodes}, []
    for token_range, ids in Ring(nodes).ranges():
        for node_id in ids:
            try:
                got = call(by_id[node_id], "byte_sample", access, ttypes.TokenRange(token_range.start,
                                                                                    token_range.end))
            except KVStoreError:
                continue
            entries.extend((e.key, e.bytes) for e in got)
            break
    return sorted(entries)


def propose(nodes, sample):
    """The nodes (in ring order) with tokens cutting sample's bytes into equal shares."""
    total, cuts, seen = sum(b for _, b in sample), [], 0
    for key, size in sample:
        seen += size
        while len(cuts) < len(nodes) - 1 and seen * len(nodes) >= total * (len(cuts) + 1):
            cuts.append(key)
    last = nodes[-1].token if nodes[-1].token >= sample[-1][0] else sample[-1][0]
    tokens = cuts + [last]
    if len(set(tokens)) != len(tokens):
        raise ConfigError("the sample is too coarse to cut the ring into equal shares: write more data first")
    return [NodeConfig(n.node_id, n.host, n.port, token, n.peer_port) for n, token in zip(nodes, tokens)]


def node_bytes(nodes, sample):
    """{node id: bytes it would hold} with these tokens, from the sample."""
    ring, held = Ring(nodes), {n.node_id: 0 for n in nodes}
    for key, size in sample:
        for node_id in ring.replica_ids(key):
            held[node_id] += size
    return held


def _spread(held):
    """The most loaded node's bytes over the least loaded's (inf when one holds nothing)."""
    values = list(held.values())
    return max(values) / min(values) if min(values) else float("inf")


def _spread_text(held):
    spread = _spread(held)
    if spread == float("inf"):
        return "node " + ", ".join(str(i) for i, b in sorted(held.items()) if not b) + " holds nothing"
    return f"{spread:.2f}"
