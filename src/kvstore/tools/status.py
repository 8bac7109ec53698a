"""./server.sh status: each node's process and state, its view of the others' clocks, the ring as nodetool
status shows it (state, load, keys, effective ownership, token, the ring's epoch), and the ranges each holds.
`--json`: the ring table alone, as JSON."""
import json
import shlex

import psutil

from kvstore.net.blocking import probe
from kvstore.core.errors import ConfigError, KVStoreError
from kvstore.core.ring import Ring
from kvstore.tools import heal, processes
from kvstore.tools.ring_change import newest_state
from kvstore.tools.split import share

CLOCK_NOTE_US = 100_000   # a clock this far from another's is named in status (the bound is --max-clock-offset)
EXIT_OK = 0


def cmd_status(cluster, args, ranges=True):
    """Each node's state; with ranges, the ring table and each node's ranges and their repairs too (not after a
    start: none yet)."""
    if getattr(args, "json", False):
        print(json.dumps(ring_rows(cluster), indent=1))
        return EXIT_OK
    print(f"{'node':<6}{'address':<22}{'state':<10}{'pid':<9}data")
    notes, tls, seen = [], cluster.access["tls"], None
    for node in cluster.nodes():
        process = processes.find_node(cluster.node_dir(node.node_id))
        state, why = node_state(node, process, tls)
        if state == "up" and seen is None:
            seen = (node.node_id, why)   # its view of the ring: who is up, and each clock's offset from its own
        if state == "refusing":
            notes.append(f"node {node.node_id} is up but refusing connections: {why}")
        pid = str(process.pid) if process else "-"
        print(f"{node.node_id:<6}{node.address:<22}{state:<10}{pid:<9}{cluster.node_dir(node.node_id)}")
    for info in seen[1] if seen else ():
        if abs(info.clock_offset or 0) >= CLOCK_NOTE_US:
            notes.append(f"node {info.node_id}'s clock is {info.clock_offset / 1e6:+.3f} s from node {seen[0]}'s")
    for note in notes:
        print(note)
    if ranges:
        ring_table(cluster)
        heal.ranges_report(cluster)
    options = cluster.node_options()
    if options:
        print(f"node options ({cluster.options_file}): {shlex.join(options)}")
    return EXIT_OK


def node_state(node, process, tls=None):
    """(state, why): down (no process), paused (SIGSTOP), up, refusing (up, at its connection limit),
    or starting (its process runs but does not answer yet: replaying its log, say)."""
    if process is None:
        return "down", ""
    try:
        if process.status() == psutil.STATUS_STOPPED:
            return "paused", ""
    except psutil.NoSuchProcess:
        return "down", ""
    state, why = probe(node.host, node.port, 0.5, tls)
    return (state if state in ("up", "refusing") else "starting"), why


def ring_rows(cluster):
    """{"epoch", "change", "nodes": [one dict a node]}, as nodetool status: state (U/D + N/J/L/M), address, load
    (the bytes of the cells it holds, estimated from its byte sample), keys, effective ownership with the
    replication factor (the share of the cluster's data in the ranges it holds in the ring reads use, by the
    byte samples; of the key space, by keys' first 8 bytes, while there is no data), token."""
    try:
        state = newest_state(cluster)
    except ConfigError:
        return {"epoch": None, "change": None, "nodes": []}
    statuses = {}
    for node in state.all_nodes():
        try:
            statuses[node.node_id] = heal.call(node, "repair_status", cluster.access)
        except KVStoreError:
            continue
    sizes = {}   # (start, end) -> the bytes its replicas estimate it holds (the largest estimate)
    for status in statuses.values():
        for r in status.ranges or []:
            key = (r.token_range.start_token, r.token_range.end_token)
            sizes[key] = max(sizes.get(key, 0), r.bytes or 0)
    ring = Ring(list(state.target if state.stage == "read-new" else state.nodes))
    owns, total = {}, 0
    for token_range, ids in ring.ranges():
        size = _bytes_within(token_range, sizes)
        total += size
        for node_id in ids:
            owns[node_id] = owns.get(node_id, (0, 0.0))
            owns[node_id] = (owns[node_id][0] + size, owns[node_id][1] + share(token_range))
    rows = []
    for node in state.all_nodes():
        status = statuses.get(node.node_id)
        ranges = status.ranges or [] if status else []
        held, space = owns.get(node.node_id, (0, 0.0))
        rows.append({"state": ("U" if status else "D") + state.node_state(node.node_id), "node": node.node_id,
                     "address": node.address, "load_bytes": sum(r.bytes or 0 for r in ranges) if status else None,
                     "keys": sum(r.keys for r in ranges) if status else None,
                     "owns": round(100 * (held / total if total else space), 1), "token": node.token.hex()})
    change = {"kind": state.kind, "node": state.subject, "stage": state.stage} if state.changing else None
    return {"epoch": state.epoch, "change": change, "nodes": rows}


def _bytes_within(token_range, sizes):
    """The bytes of the nodes' ranges (elementary: a ring range is one or more of them) inside token_range."""
    return sum(size for (start, end), size in sizes.items()
               if end in token_range and (start in token_range or start == token_range.start))


def ring_table(cluster, out=None):
    table = ring_rows(cluster)
    if table["epoch"] is None:
        return
    change = table["change"]
    print(f"ring epoch {table['epoch']}" + (f": {change['kind']} of node {change['node']} at step {change['stage']}"
                                             if change else ""), file=out)
    print(f"--  {'node':<6}{'address':<22}{'load':>12}{'keys':>10}{'owns (RF 3)':>13}  token", file=out)
    for row in table["nodes"]:
        load = "?" if row["load_bytes"] is None else _bytes(row["load_bytes"])
        keys = "?" if row["keys"] is None else str(row["keys"])
        print(f"{row['state']:<4}{row['node']:<6}{row['address']:<22}{load:>12}{keys:>10}{row['owns']:>12.1f}%  "
              f"{row['token']}", file=out)


def _bytes(count):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
