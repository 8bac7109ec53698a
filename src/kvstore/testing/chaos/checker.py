"""What the history says: lost writes, phantom and stale reads. Pure: a list of operations in, findings out.

A delete is a write whose value is None (a tombstone). A read of a deleted key
returns nothing, without a timestamp; so "nothing" is explained by a delete
that may be newer, and by no other operation.

The rules (each finding names the operations involved):
- lost: a write acknowledged at QUORUM whose key's final QUORUM read returned
  an older cell, or nothing where no delete could be newer. Last write wins, so
  a newer timestamp supersedes it; at an equal timestamp a delete does, then
  the greater value. A lost delete is a deleted value that came back.
- phantom: a read returned a value that no client tried to write, or that only
  a write which definitely failed (nothing applied) carried.
- stale: a QUORUM read that began after a QUORUM write of the same key was
  acknowledged returned an older cell than that write (by the same rules).
- out of order: a client's acknowledged write (at any level, of any key)
  stamped at or below one it had made before. Each client is a session that
  sends its newest timestamp as every write's floor, so its writes must be
  stamped in the order it made them, whatever the coordinators' clocks say.
"""
import bisect
from collections import defaultdict


def _order(timestamp, value):
    """Cells compare as the store's last-write-wins rule does: timestamp, then a tombstone (value None
    with a timestamp) over a value, then the greater value. Nothing at all (no timestamp) is oldest."""
    if timestamp is None:
        return (-1, 0, b"")
    return (timestamp, 1, b"") if value is None else (timestamp, 0, value.encode())


def _may_be_deleted_after(write, deletes):
    """Could a delete of write's key be newer than write? An acknowledged one by its timestamp; one
    whose outcome is unknown (no timestamp) if it had not ended before write began."""
    for delete in deletes.get(write["key"], ()):
        if delete.get("timestamp") is not None:
            if _order(delete["timestamp"], None) > _order(write["timestamp"], write["value"]):
                return True
        elif delete["end"] > write["start"]:
            return True
    return False


def check(history, final):
    """history: operations (see workload); final: {key hex: (value, timestamp) or None} from final QUORUM reads."""
    writes = [op for op in history if op.get("op") == "write"]
    reads = [op for op in history if op.get("op") == "read" and op["outcome"] == "ok"]
    acknowledged = [w for w in writes if w["outcome"] == "ok" and w["level"] == "QUORUM"]
    return {
        "lost": lost_writes(acknowledged, final, writes),
        "phantom": phantom_reads(writes, reads, final),
        "stale": stale_reads(acknowledged, reads, writes),
        "out_of_order": out_of_order_writes(writes),
    }


def out_of_order_writes(writes):
    """Acknowledged writes stamped at or below an earlier acknowledged write of the same client."""
    found, newest = [], {}
    for write in sorted((w for w in writes if w["outcome"] == "ok"), key=lambda w: (w["client"], w["start"])):
        before = newest.get(write["client"])
        if before is not None and write["timestamp"] <= before["timestamp"]:
            found.append({"write": write, "after": before})
        if before is None or write["timestamp"] > before["timestamp"]:
            newest[write["client"]] = write
    return found


def _deletes_by_key(writes):
    """Deletes that may have been applied, by key."""
    deletes = defaultdict(list)
    for write in writes:
        if write["value"] is None and write["outcome"] != "failed":
            deletes[write["key"]].append(write)
    return deletes


def lost_writes(acknowledged, final, writes=()):
    """final: {key: (value, timestamp), (None, timestamp) for a tombstone, or None for nothing}."""
    deletes = _deletes_by_key(writes)
    lost = []
    for write in acknowledged:
        value, timestamp = final.get(write["key"]) or (None, None)
        if timestamp is None:
            if write["value"] is None or _may_be_deleted_after(write, deletes):
                continue
        elif _order(timestamp, value) >= _order(write["timestamp"], write["value"]):
            continue
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


def stale_reads(acknowledged, reads, writes=()):
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
    deletes = _deletes_by_key(writes)
    stale = []
    for read in reads:
        if read["level"] != "QUORUM":
            continue
        before = bisect.bisect_left(ends[read["key"]], read["start"])  # acknowledged strictly before it began
        if before == 0:
            continue
        newest = newest_so_far[read["key"]][before - 1]
        if read["timestamp"] is None:  # nothing: right after a delete, or if one may have come since
            if newest["value"] is None or _may_be_deleted_after(newest, {read["key"]: [
                    d for d in deletes.get(read["key"], ()) if d["start"] < read["end"]]}):
                continue
        elif _order(read["timestamp"], read["read"]) >= _order(newest["timestamp"], newest["value"]):
            continue
        stale.append({"read": read, "missed": newest})
    return stale


def summarize(history):
    """Counts of operations by kind, level and outcome, for the report."""
    counts = defaultdict(int)
    for op in history:
        if op.get("op") in ("write", "read"):
            counts[f"{op['op']}s"] += 1
            counts[op["outcome"]] += 1
            if op["op"] == "write" and op["value"] is None:
                counts["deletes"] += 1
            if op["op"] == "write" and op["outcome"] == "ok":
                counts[f"acknowledged at {op['level']}"] += 1
    return dict(counts)
