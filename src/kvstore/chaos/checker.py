"""What the history says: lost writes, phantom and stale reads. Pure: a list of operations in, findings out.

The rules (each finding names the operations involved):
- lost: a write acknowledged at QUORUM whose key's final QUORUM read returned
  an older cell (or none). Last write wins, so a newer timestamp supersedes it;
  at an equal timestamp the greater value does.
- phantom: a read returned a value that no client tried to write, or that only
  a write which definitely failed (nothing applied) carried.
- stale: a QUORUM read that began after a QUORUM write of the same key was
  acknowledged returned an older cell than that write.
"""
import bisect
from collections import defaultdict


def _order(timestamp, value):
    """Cells compare by (timestamp, value), as the store's last-write-wins rule does."""
    return (timestamp if timestamp is not None else -1, value.encode() if value is not None else b"")


def check(history, final):
    """history: operations (see workload); final: {key hex: (value, timestamp) or None} from final QUORUM reads."""
    writes = [op for op in history if op.get("op") == "write"]
    reads = [op for op in history if op.get("op") == "read" and op["outcome"] == "ok"]
    acknowledged = [w for w in writes if w["outcome"] == "ok" and w["level"] == "QUORUM"]
    return {
        "lost": lost_writes(acknowledged, final),
        "phantom": phantom_reads(writes, reads, final),
        "stale": stale_reads(acknowledged, reads),
    }


def lost_writes(acknowledged, final):
    lost = []
    for write in acknowledged:
        value, timestamp = final.get(write["key"]) or (None, None)
        if _order(timestamp, value) < _order(write["timestamp"], write["value"]):
            lost.append({"write": write, "final": {"value": value, "timestamp": timestamp}})
    return lost


def phantom_reads(writes, reads, final):
    attempted = {w["value"] for w in writes if w["outcome"] != "failed"}
    refused = {w["value"] for w in writes if w["outcome"] == "failed"}
    phantoms = [{"read": r, "why": "refused write" if r["read"] in refused else "never written"}
                for r in reads if r["read"] is not None and r["read"] not in attempted]
    for key, cell in final.items():
        if cell is not None and cell[0] not in attempted:
            phantoms.append({"final": key, "value": cell[0],
                             "why": "refused write" if cell[0] in refused else "never written"})
    return phantoms


def stale_reads(acknowledged, reads):
    # Per key: writes by acknowledgement time, with the newest cell acknowledged so far at each
    # point; a read then finds, by bisection, the newest write acknowledged before it began.
    ends, newest_so_far = defaultdict(list), defaultdict(list)
    for write in sorted(acknowledged, key=lambda w: w["end"]):
        key, best = write["key"], newest_so_far[write["key"]]
        ends[key].append(write["end"])
        if not best or _order(write["timestamp"], write["value"]) > _order(best[-1]["timestamp"], best[-1]["value"]):
            best.append(write)
        else:
            best.append(best[-1])
    stale = []
    for read in reads:
        if read["level"] != "QUORUM":
            continue
        before = bisect.bisect_left(ends[read["key"]], read["start"])  # acknowledged strictly before it began
        if before == 0:
            continue
        newest = newest_so_far[read["key"]][before - 1]
        if _order(read["timestamp"], read["read"]) < _order(newest["timestamp"], newest["value"]):
            stale.append({"read": read, "missed": newest})
    return stale


def summarize(history):
    """Counts of operations by kind, level and outcome, for the report."""
    counts = defaultdict(int)
    for op in history:
        if op.get("op") in ("write", "read"):
            counts[f"{op['op']}s"] += 1
            counts[op["outcome"]] += 1
            if op["op"] == "write" and op["outcome"] == "ok":
                counts[f"acknowledged at {op['level']}"] += 1
    return dict(counts)
