"""Where a new node's token goes: the key that halves the most loaded range, from the data.

Each node's repair_status estimates the bytes of every range it holds from its byte sample
(kvstore.storage.sample); the range with the most bytes is split where the running sum of its sampled keys'
bytes passes half: no scan. A range with too few sampled keys (or a cluster with no data yet) is split in
the byte middle of its widest range.
"""
from kvstore.core.ring import Ring
from kvstore.tools.heal import call
from kvstore_rpc import ttypes


def split_token(nodes, access, out=None):
    """The token for a node added to the ring `nodes` (a list of NodeConfig)."""
    by_id = {n.node_id: n for n in nodes}
    loads = {}   # (start, end) -> (estimated bytes, a replica that estimated them)
    for node in nodes:
        try:
            status = call(node, "repair_status", access)
        except Exception:   # a node down counts nothing; its ranges are counted by their other replicas
            continue
        for r in status.ranges or []:
            key = (r.token_range.start_token, r.token_range.end_token)
            if (r.bytes or 0) > loads.get(key, (-1, None))[0]:
                loads[key] = (r.bytes or 0, node.node_id)
    if loads and max(b for b, _ in loads.values()) > 0:
        (start, end), (size, holder) = max(loads.items(), key=lambda item: item[1][0])
        token = weighted_middle(call(by_id[holder], "byte_sample", access, ttypes.TokenRange(start, end)))
        if token is None or token == end:   # too few keys to split by: the range's byte middle
            token = _byte_middle(start, end)
        if token not in _tokens(nodes):
            if out is not None:
                print(f"the most loaded range ({start.hex()}, {end.hex()}] holds about {size} bytes; splitting it "
                      "at its middle key", file=out)
            return token
    widest = max((r for r, _ in Ring(nodes).ranges()), key=lambda r: _span(r.start, r.end))
    return _byte_middle(widest.start, widest.end)


def weighted_middle(entries):
    """The key where the running sum of a byte sample's entries (IDL SampledKey, in key order) passes half."""
    total, seen = sum(e.bytes for e in entries), 0
    for entry in entries:
        seen += entry.bytes
        if seen * 2 >= total:
            return entry.key
    return None


def _tokens(nodes):
    return {n.token for n in nodes}


def share(token_range):
    """The share of the key space (by keys' first 8 bytes) in token_range, from 0 to 1."""
    return _span(token_range.start, token_range.end) / (1 << 64)


def _span(start, end):
    a, b = _number(start), _number(end)
    return (b - a) % (1 << 64) or (1 << 64)


def _number(token):
    return int.from_bytes(token[:8].ljust(8, b"\x00"), "big")


def _byte_middle(start, end):
    """A key halfway between start and end, by their first 8 bytes (a 9th byte when they are closer than that)."""
    middle = (_number(start) + _span(start, end) // 2) % (1 << 64)
    token = middle.to_bytes(8, "big").rstrip(b"\x00") or b"\x00"
    return token if token not in (start, end) else start + b"\x80"
