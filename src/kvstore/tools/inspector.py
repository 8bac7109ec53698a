"""The inspector's logic: collect every replica's state, find divergence, render it.

A key diverges when a live replica that should hold it (by the ring) lacks it
or holds a different cell than the newest one any replica holds. Replicas that
are down cannot be judged; their keys are reported as unverified. A key found
on a node that is not one of its replicas is reported as misplaced. The ring is the newest any node holds
(its ring state): during a ring change a key may sit on its old replicas and its new ones alike.
Tombstones (deletes) and expiring cells are shown as such: they are cells like
any other, and replicas must agree on them too. Each node's clock is shown as
its offset from most of its peers' (the median of what its heartbeats
measured), the figure a node checks against --max-clock-offset.
It reads each replica through dump_replica: the admin call dump on each node's
client port, logged in as an admin (kvstore.tools.login_options).
"""
import argparse
import json
import statistics
import sys
from dataclasses import dataclass, field
from typing import NamedTuple

from kvstore.core.config import DEFAULT_CLUSTER_FILE
from kvstore.core.cell import reconcile
from kvstore.core.config import read_cluster_file
from kvstore.tools import login_options
from kvstore.tools.heal import ranges_json, ranges_line
from kvstore.tools.display import bytes_json, cell_counts, cell_kinds, count_of, show_cell, size_text
from kvstore.core.notation import NotationError, parse_word, show
from kvstore.core.errors import (AuthenticationFailed, ConfigError, NodeFailed, NodeRefused, NodeUnavailable,
                                 Unauthorized)
from kvstore.net.blocking import Connection
from kvstore.net.wire import from_cell
from kvstore_rpc import ttypes
from kvstore.core.ring import Ring
from kvstore.core.ring_state import RingState

TIMEOUT = 10.0
EXIT_OK, EXIT_NONE_UP, EXIT_USAGE = 0, 1, 2


@dataclass
class NodeState:
    node: object
    up: bool = False
    refusing: bool = False   # up, but it refused our connection (at its connection limit)
    cells: dict = field(default_factory=dict)   # key -> Cell
    pending_hints: dict = field(default_factory=dict)
    log_bytes: int = 0          # the commit log file's size on disk
    log_record_bytes: int = 0   # of it, the bytes that hold records
    hint_log_bytes: int = 0
    clock_offset: int = None   # microseconds, + when ahead of most of its peers'; None: no peer to compare
    repairs: object = None     # its RepairStatus
    ring: object = None        # the RingState it holds
    error: str = ""


@dataclass
class KeyReport:
    key: bytes
    replicas: dict        # node id -> Cell, None (missing) or "down"
    newest: object
    problems: list        # human-readable reasons; empty when the key is consistent


def collect(nodes, credentials, key=None, timeout=TIMEOUT, tls=None):
    """Each node's NodeState, read through its client port, logged in with an admin's credentials;
    Unauthorized when they are not an admin's."""
    states = []
    for node in nodes:
        state = NodeState(node)
        try:
            dump = dump_replica((node.host, node.port), credentials, key, timeout, tls=tls)
        except NodeRefused as exc:
            state.refusing, state.error = True, str(exc)
        except (NodeUnavailable, NodeFailed) as exc:
            state.error = str(exc)
        else:
            state.up = True
            state.cells, state.pending_hints = dump.cells, dump.pending_hints
            state.log_bytes, state.hint_log_bytes = dump.log_bytes, dump.hint_log_bytes
            state.log_record_bytes, state.repairs = dump.log_record_bytes, dump.repairs
            state.ring = dump.ring
            peers = [offset for node_id, offset in dump.clock_offsets.items() if node_id != node.node_id]
            state.clock_offset = -int(statistics.median(peers)) if peers else None
        states.append(state)
    return states


def analyze(ring, states, only_key=None, allowed=None):
    """A KeyReport for every key seen on any node (or only_key), in key order. allowed(key): the ids that may hold
    key without it being misplaced (default: its replicas; during a ring change, old and new)."""
    by_id = {s.node.node_id: s for s in states}
    keys = {only_key} if only_key else set().union(*(s.cells for s in states))
    reports = []
    for key in sorted(keys):
        replica_ids = [n.node_id for n in ring.replicas_for(key)]
        replicas = {i: (by_id[i].cells.get(key) if by_id[i].up else "down") for i in replica_ids}
        newest = reconcile(c for c in replicas.values() if c not in (None, "down"))
        problems = []
        for node_id, cell in replicas.items():
            if cell == "down":
                problems.append(f"unverified on node {node_id} (down)")
            elif cell is None and newest is not None:
                problems.append(f"missing on node {node_id}")
            elif cell != newest:
                problems.append(f"stale on node {node_id} (timestamp {cell.timestamp} < {newest.timestamp})"
                                if cell.timestamp < newest.timestamp else f"differs on node {node_id}")
        for state in states:
            if state.up and key in state.cells and state.node.node_id not in (allowed(key) if allowed else replica_ids):
                problems.append(f"misplaced on node {state.node.node_id} (not one of its replicas)")
        reports.append(KeyReport(key, replicas, newest, problems))
    return reports


def analyze_newest(nodes, states, only_key=None):
    """analyze() with the newest ring any node holds (the cluster file's when none answers)."""
    rings = [s.ring for s in states if s.ring is not None]
    if not rings:
        return analyze(Ring(nodes), states, only_key)
    placement = max(rings, key=lambda r: r.epoch).placement()
    return analyze(placement.read_ring, states, only_key,
                   allowed=lambda key: set().union(*placement.write_groups(key)))


def divergent(reports):
    return [r for r in reports if any(not p.startswith("unverified") for p in r.problems)]


def render_text(states, reports, out):
    flagged = {r.key: r for r in reports if r.problems}
    for state in states:
        node = state.node
        if not state.up:
            print(f"node {node.node_id}  {node.address}  {_unread(state)}  ({state.error})", file=out)
            continue
        hints = ", ".join(f"node {t}: {n}" for t, n in sorted(state.pending_hints.items())) or "none"
        print(f"node {node.node_id}  {node.address}  up  {cell_counts(state.cells)}  "
              f"log {size_text(state.log_bytes)} on disk ({size_text(state.log_record_bytes)} of records)"
              f"  hint log {size_text(state.hint_log_bytes)}  pending hints: {hints}  {_clock(state)}", file=out)
        if state.repairs is not None:
            print(f"  {ranges_line(state.repairs)}", file=out)
        for key, cell in sorted(state.cells.items()):
            mark = " *" if key in flagged and any(not p.startswith("unverified") for p in flagged[key].problems) else ""
            print(f"    {show(key, 30):<30}  {show_cell(cell)}{mark}", file=out)
    bad = divergent(reports)
    unverified = [r for r in reports if r.problems and r not in bad]
    summary = f"\n{count_of(len(reports), 'key')}, {len(bad)} divergent"
    if unverified:
        summary += f", {len(unverified)} unverified (a replica could not be read)"
    print(summary, file=out)
    for report in bad:
        print(f"  * {show(report.key, 30)}: " + "; ".join(report.problems), file=out)


def render_key(report, states, out):
    by_id = {s.node.node_id: s.node for s in states}
    by_state = {s.node.node_id: s for s in states}
    print(f"key {show(report.key)}", file=out)
    for node_id, cell in report.replicas.items():
        where = f"  node {node_id}  {by_id[node_id].address:<21}"
        if cell == "down":
            print(f"{where}{_unread(by_state[node_id])}", file=out)
        elif cell is None:
            print(f"{where}(missing)", file=out)
        else:
            print(f"{where}{show_cell(cell)}", file=out)
    print("  " + ("; ".join(report.problems) if report.problems else "all replicas agree"), file=out)


def as_json(states, reports):
    def cell_json(cell):
        if cell in (None, "down"):
            return cell
        if cell.value is None:
            return {"tombstone": True, "timestamp": cell.timestamp, "deleted_at": cell.expires}
        return {"value": bytes_json(cell.value), "timestamp": cell.timestamp, "expires_at": cell.expires or None}
    bad = divergent(reports)
    return {
        "nodes": [{
            "id": s.node.node_id, "address": s.node.address, "up": s.up or s.refusing, "read": s.up,
            "refusing_connections": s.refusing, "error": s.error or None,
            "clock_offset_us": s.clock_offset, **cell_kinds(s.cells), "log_bytes": s.log_bytes,
            "log_record_bytes": s.log_record_bytes,
            "hint_log_bytes": s.hint_log_bytes,
            "pending_hints": {str(t): n for t, n in sorted(s.pending_hints.items())},
            "keys": [{"key": bytes_json(k), **cell_json(c)} for k, c in sorted(s.cells.items())],
            **ranges_json(s.repairs),
        } for s in states],
        "keys": [{"key": bytes_json(r.key), "problems": r.problems,
                  "replicas": {str(i): cell_json(c) for i, c in r.replicas.items()}} for r in reports],
        "divergent": len(bad),
    }






def _unread(state):
    """How a node that could not be read is shown: down, or up but refusing connections."""
    return "UP, REFUSING CONNECTIONS" if state.refusing else "DOWN"


def _clock(state):
    if state.clock_offset is None:
        return "clock: no peer up to compare"
    return f"clock {round(state.clock_offset / 1e6, 3) + 0.0:+.3f} s from its peers'"   # + 0.0: no -0.000










def main(argv=None, out=sys.stdout):
    p = argparse.ArgumentParser(prog="inspector.py", description="Dump every replica's state; flag divergence.")
    p.add_argument("--cluster", default=str(DEFAULT_CLUSTER_FILE))
    login_options.add_options(p)
    p.add_argument("--key", help='show one key on each of its replicas: text, or bytes as the console takes them '
                                 '("\\xff\\x00")')
    p.add_argument("--json", action="store_true", help="print everything, in full, as JSON")
    args = p.parse_args(argv)
    try:
        nodes = read_cluster_file(args.cluster)
        login = login_options.connect_options(args, args.cluster)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        key = parse_word(args.key) if args.key is not None else None
    except NotationError as exc:
        print(f"Error: cannot read --key: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if key == b"":
        print("Error: the key must not be empty", file=sys.stderr)
        return EXIT_USAGE
    try:
        states = collect(nodes, login["credentials"], key, tls=login["tls"])
    except (Unauthorized, AuthenticationFailed) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    reports = analyze_newest(nodes, states, key)
    try:
        render(args, key, states, reports, out)
    except BrokenPipeError:  # piped into head: not an error
        sys.stderr.close()
    if not any(state.up for state in states):
        print(f"Error: no node of the cluster answers ({args.cluster})", file=sys.stderr)
        return EXIT_NONE_UP
    return EXIT_OK


def render(args, key, states, reports, out):
    if args.json:
        json.dump(as_json(states, reports), out, indent=2)
        print(file=out)
    elif key:
        render_key(reports[0], states, out)
    else:
        render_text(states, reports, out)


class ReplicaDump(NamedTuple):
    """One replica's state as stored, for the inspector: tombstones and expired cells included."""
    cells: dict           # key -> kvstore.core.cell.Cell
    pending_hints: dict   # target node id -> hints held for it
    log_bytes: int        # the commit log file's size on disk
    hint_log_bytes: int
    clock_offsets: dict = {}   # node id -> its clock minus this node's (microseconds), for the peers it sees up
    log_record_bytes: int = 0  # of log_bytes, those holding records
    repairs: object = None     # its RepairStatus: the ranges it holds, when each was repaired, a repair running
    ring: object = None        # the RingState it holds


DUMP_PAGE = 10_000
CALL_TIMEOUT = 15.0


def dump_replica(address, credentials, key=None, timeout=CALL_TIMEOUT, page=DUMP_PAGE, tls=None):
    """The state of the replica at address (one node's client port, not the cluster; credentials: an admin
    user's, which dump needs): every key (read `page` keys a call, so a large replica never needs one huge
    frame), or only `key`. Unauthorized when the user is not an admin."""
    connection = Connection(*address, connect_timeout=1.0, credentials=credentials, tls=tls)
    try:
        try:
            dump = connection.call("dump", (key, b"", 0 if key else page), timeout)
            cells = {m.key: from_cell(m.cell) for m in dump.cells}
            while dump.next_start is not None:
                dump = connection.call("dump", (None, dump.next_start, page), timeout)
                cells.update((m.key, from_cell(m.cell)) for m in dump.cells)
            described = connection.call("describe_ring", (), timeout)
            repairs = connection.call("repair_status", (), timeout)
            ring = RingState.from_json(connection.call("ring_state", (), timeout))
        except ttypes.Unauthorized as exc:
            raise Unauthorized(exc.why) from None
    finally:
        connection.close()
    offsets = {n.node_id: n.clock_offset or 0 for n in described if n.up}
    return ReplicaDump(cells, dict(dump.pending_hints), dump.log_bytes, dump.hint_log_bytes, offsets,
                       dump.log_record_bytes or 0, repairs, ring)
