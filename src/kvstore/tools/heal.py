"""./server.sh repair [ID]: repair every token range (or every range node ID holds) between all its replicas,
with progress on the terminal and a summary; exit 1 naming each range that could not be repaired.
./server.sh replace ID: start node ID, which lost its data, on an empty data directory (kvstore.cluster.replace),
and follow it until every range it holds is synced.

Each range is repaired by its first replica in ring order that is up (the node whose schedule repairs it
too, so the two never run at once: a node runs one repair at a time, and this waits for one that runs).
The nodes do the work (kvstore.cluster.repair); this starts them and polls their repair_status.
"""
import sys
import time

from kvstore.core.errors import InvalidRequest, KVStoreError, NodeUnavailable
from kvstore.core.ring import Ring
from kvstore.net.blocking import call_once, ping
from kvstore.storage.datadir import COMMIT_LOG_FILE
from kvstore.storage.replace_marker import REPLACE_FILE
from kvstore.tools import processes
from kvstore.tools.display import show_time
from kvstore_rpc import ttypes

POLL_SECONDS = 0.5
BUSY_TIMEOUT = 120.0   # how long to wait for a repair already running on a node to finish
CALL_TIMEOUT = 10.0
EXIT_OK, EXIT_FAILED = 0, 1


def add_parsers(sub):
    p = sub.add_parser("repair", help="repair every token range (or those node ID holds) between its replicas")
    p.add_argument("id", type=int, nargs="?", help="only the ranges this node holds")
    p = sub.add_parser("replace", help="start a node that lost its data on an empty data directory; it answers "
                                       "reads of each range once synced from the other replicas")
    p.add_argument("id", type=int)


def cmd_replace(cluster, args, wait_for_peers, report_not_up, out=sys.stdout):
    """wait_for_peers(cluster, id), report_not_up(cluster, id): the launcher's, as after a restart."""
    cluster.node(args.id)   # a clear error for an unknown id
    data_dir = cluster.node_dir(args.id)
    if processes.find_node(data_dir) is not None:
        print(f"node {args.id} is running: a node is replaced when it has lost its data (stop it first)",
              file=sys.stderr)
        return EXIT_FAILED
    if (data_dir / COMMIT_LOG_FILE).exists() and not (data_dir / REPLACE_FILE).exists():
        print(f"{data_dir} holds node {args.id}'s data: start it with ./server.sh restart {args.id}, or delete the "
              "directory (its data is then synced back from the other replicas) to replace it", file=sys.stderr)
        return EXIT_FAILED
    cluster.ensure_access()
    spawned = cluster.start_node(args.id, ("--replace",))
    if not cluster.wait_ready(args.id, spawned):
        report_not_up(cluster, args.id)
        return EXIT_FAILED
    wait_for_peers(cluster, args.id)
    print(f"node {args.id} is up, being replaced: it takes writes now, and answers reads of each range once the "
          "range is synced from its other replicas", file=out)
    try:
        return _follow_replace(cluster.node(args.id), cluster.access, out)
    except KeyboardInterrupt:
        print(f"\nnode {args.id} goes on syncing by itself; ./server.sh status shows how far it is", file=out)
        return EXIT_FAILED


def _follow_replace(node, access, out):
    started, shown, tty = time.monotonic(), 0.0, out.isatty()
    while True:
        status = call(node, "repair_status", access)
        waiting = [r for r in status.ranges or [] if not r.readable]
        now = time.monotonic()
        if tty or now - shown >= 2.0 or not waiting:
            line = f"{len(status.ranges) - len(waiting)}/{len(status.ranges)} ranges synced; " + progress(
                [status], now - started)
            print(("\r" + line.ljust(100)) if tty else line, end="" if tty and waiting else "\n", file=out,
                  flush=True)
            shown = now
        if not waiting:
            print(f"replace complete: node {node.node_id} holds every range it should and answers reads "
                  f"(cells received: {status.cells_in})", file=out)
            return EXIT_OK
        time.sleep(POLL_SECONDS)


def cmd_repair(cluster, args, out=sys.stdout):
    nodes = {n.node_id: n for n in cluster.nodes()}
    if args.id is not None and args.id not in nodes:
        print(f"node {args.id} is not in {cluster.cluster_file}", file=sys.stderr)
        return 2
    access = cluster.access
    plan, failed = {}, []
    for token_range, ids in Ring(list(nodes.values())).ranges():
        if args.id is not None and args.id not in ids:
            continue
        runner = next((i for i in ids if ping(nodes[i].host, nodes[i].port, 1.0, access["tls"]) is not None), None)
        if runner is None:
            failed.append(f"range {token_range}: every replica is down")
        else:
            plan.setdefault(runner, []).append(token_range)
    total = sum(map(len, plan.values()))
    print(f"repairing {total} ranges on {len(plan)} nodes" + (f" (those node {args.id} holds)" if args.id is not None
                                                                else ""), file=out)
    started = {}
    for runner, ranges in plan.items():
        try:
            _start(nodes[runner], ranges, access, out)
            started[runner] = nodes[runner]
        except KVStoreError as exc:
            failed.extend(f"range {r}: node {runner} could not repair it: {exc}" for r in ranges)
    statuses = _follow(started, access, out)
    for status in statuses.values():
        failed.extend(status.failed or [])
    _summary(statuses, failed, out)
    return EXIT_FAILED if failed else EXIT_OK


def _start(node, ranges, access, out):
    """Ask node to repair ranges, waiting while it runs another repair."""
    deadline, said = time.monotonic() + BUSY_TIMEOUT, False
    idl = [ttypes.TokenRange(r.start, r.end) for r in ranges]
    while True:
        try:
            return call(node, "repair", access, idl)
        except InvalidRequest as exc:
            if time.monotonic() > deadline:
                raise
            if not said:
                print(f"node {node.node_id}: {exc}; waiting for it to finish", file=out)
                said = True
            time.sleep(POLL_SECONDS)


def call(node, method, access, *args):
    try:
        return call_once(node, method, args, CALL_TIMEOUT, **access)
    except ttypes.InvalidRequest as exc:
        raise InvalidRequest(exc.why) from None


def _follow(nodes, access, out):
    """Poll every node until its repair is over, printing progress; {node id: its last RepairStatus}."""
    statuses, started, tty = {}, time.monotonic(), out.isatty()
    shown = 0.0
    while True:
        for node_id, node in nodes.items():
            try:
                statuses[node_id] = call(node, "repair_status", access)
            except NodeUnavailable as exc:
                status = statuses.get(node_id) or ttypes.RepairStatus(node_id, "repair", False, 0, 0, 0, 0, 0, 0, [])
                status.running, status.failed = False, [f"node {node_id} stopped answering: {exc}"]
                statuses[node_id] = status
                nodes = {i: n for i, n in nodes.items() if i != node_id}
                break
        running = any(s.running for s in statuses.values())
        now = time.monotonic()
        if tty or now - shown >= 2.0 or not running:
            line = progress(statuses.values(), now - started)
            print(("\r" + line.ljust(100)) if tty else line, end="" if tty and running else "\n", file=out, flush=True)
            shown = now
        if not running:
            return statuses
        time.sleep(POLL_SECONDS)


def progress(statuses, elapsed):
    statuses = list(statuses)
    total = sum(s.ranges_total or 0 for s in statuses)
    done = sum(s.ranges_done or 0 for s in statuses)
    fraction = sum((s.fraction or 0) * (s.ranges_total or 0) for s in statuses) / total if total else 1.0
    compared = sum(s.keys_compared or 0 for s in statuses)
    cells = sum((s.cells_in or 0) + (s.cells_out or 0) for s in statuses)
    rate = cells / elapsed if elapsed > 0 else 0.0
    left = elapsed * (1 - fraction) / fraction if 0 < fraction < 1 else 0.0
    return (f"ranges {done}/{total} ({fraction:.0%}), keys compared {compared}, cells sent "
            f"{sum(s.cells_in or 0 for s in statuses)} in / {sum(s.cells_out or 0 for s in statuses)} out, "
            f"{rate:.0f} cells/s, about {left:.0f} s left")


def _summary(statuses, failed, out):
    sent = sum(s.bytes_sent or 0 for s in statuses.values())
    for s in sorted(statuses.values(), key=lambda s: s.node_id):
        print(f"node {s.node_id}: {s.ranges_done} of {s.ranges_total} ranges in {s.elapsed or 0:.1f} s, "
              f"{s.keys_compared} keys compared, {s.cells_in} cells in, {s.cells_out} cells out, "
              f"{s.bytes_sent} bytes sent", file=out)
    if failed:
        print(f"repair incomplete: {len(failed)} ranges not repaired on every replica:", file=out)
        for line in sorted(failed):
            print(f"  {line}", file=out)
    else:
        print(f"repair complete: every range in sync on all its replicas ({sent} bytes sent)", file=out)


def ranges_report(cluster, out=sys.stdout):
    """For `status`: each node's ranges, when each was last repaired, and a repair running there."""
    for node in cluster.nodes():
        try:
            status = call(node, "repair_status", cluster.access)
        except KVStoreError:
            continue
        print(f"node {node.node_id}", end=" ", file=out)
        for line in range_lines(status):
            print(line, file=out)


def range_lines(status):
    """How a node's RepairStatus reads: a line saying what it holds and runs, then one a range."""
    if status is None:
        return []
    running = (f"; {status.kind} running: {status.ranges_done}/{status.ranges_total} ranges, "
               f"{status.fraction:.0%}" if status.running else "")
    lines = [f"holds {len(status.ranges or [])} ranges{running}"]
    for r in status.ranges or []:
        lines.append(f"  {range_text(r)}  replicas {','.join(map(str, r.replicas))}  keys {r.keys}")
    return lines


def range_text(r):
    """One RangeState in a few words: the range, when it was last repaired, whether it is still syncing."""
    when = show_time(r.repaired_at) if r.repaired_at else "never"
    return (f"({r.token_range.start_token.hex()}, {r.token_range.end_token.hex()}] repaired {when}"
            + ("" if r.readable else " (syncing: no reads yet)"))


def ranges_line(status):
    """The inspector's one line of a node's ranges."""
    if status is None:
        return None
    running = f"  {status.kind} running, {status.fraction:.0%}" if status.running else ""
    return "ranges " + "; ".join(range_text(r) for r in status.ranges or []) + running


def ranges_json(status):
    """The same, for the inspector's --json: {"repair": ..., "ranges": [...]} ({} when unknown)."""
    if status is None:
        return {}
    return {"repair": {"kind": status.kind, "running": status.running, "ranges_done": status.ranges_done,
                       "ranges_total": status.ranges_total, "fraction": status.fraction},
            "ranges": [{"start": r.token_range.start_token.hex(), "end": r.token_range.end_token.hex(),
                        "replicas": r.replicas, "keys": r.keys, "repaired_at_us": r.repaired_at or None,
                        "readable": r.readable}
                       for r in status.ranges or []]}
