"""Where a new node's token goes: the key that halves the most loaded range, from the data.

Each node's repair_status counts the keys of every range it holds; the range with the most keys is split at
its middle key, found by paging through one replica's dump of it (a bounded walk of half the range's keys).
A cluster with no keys yet is split in the byte middle of its widest range.
"""
from kvstore.core.ring import Ring
from kvstore.tools.heal import call

PAGE = 10_000


def split_token(nodes, access, out=None):
    """The token for a node added to the ring `nodes` (a list of NodeConfig)."""
    by_id = {n.node_id: n for n in nodes}
    counts = {}   # range -> (keys, a replica that counted them)
    for node in nodes:
        try:
            status = call(node, "repair_status", access)
        except Exception:   # a node down counts nothing; its ranges are counted by their other replicas
            continue
        for r in status.ranges or []:
            key = (r.token_range.start_token, r.token_range.end_token)
            if r.keys > counts.get(key, (-1, None))[0]:
                counts[key] = (r.keys, node.node_id)
    ranges = [r for r, _ in Ring(nodes).ranges()]
    if counts and max(k for k, _ in counts.values()) > 1:
        (start, end), (keys, holder) = max(counts.items(), key=lambda item: item[1][0])
        token = _middle_key(by_id[holder], access, start, end, keys // 2)
        if token is None or token == end:   # too few keys to split by: the range's byte middle
            token = _byte_middle(start, end)
        if token not in _tokens(nodes):
            if out is not None:
                print(f"the most loaded range ({start.hex()}, {end.hex()}] holds {keys} keys; splitting it at its "
                      f"middle key", file=out)
            return token
    widest = max(ranges, key=lambda r: _span(r.start, r.end))
    return _byte_middle(widest.start, widest.end)


def _tokens(nodes):
    return {n.token for n in nodes}


def _middle_key(node, access, start, end, skip):
    """The key `skip` keys after start within (start, end] on node's replica (walking past the top when the range
    wraps); None when the walk finds too few."""
    low, wrapped = start + b"\x00", False
    while True:
        page = call(node, "dump", access, b"", low, PAGE)
        for m in page.cells or []:
            inside = (start < m.key <= end) if start < end else (m.key > start or m.key <= end)
            if not inside:
                if wrapped or start < end:
                    return None
                break
            if skip <= 0:
                return m.key
            skip -= 1
        else:
            if page.next_start:
                low = page.next_start
                continue
        if start < end or wrapped:
            return None
        low, wrapped = b"", True


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
