"""What adding a node costs, measured on real node processes (python3 src/bench.py --join).

- streaming into a joining node: a 4-node cluster whose range (3f, 7f] holds KEYS keys on its 3 replicas (commit
  logs written directly, as that many acknowledged writes would leave them); a fifth node added with its
  token in the middle of that range, streaming unbounded (--repair-rate-mb 0) and no client load: the cells
  and MB it received a second;
- the same node's plain write rate, in the same run: once it has joined, new cells of the same size sent
  straight to its peer port in batches of WRITE_BATCH (replica_write_batch: the call a coordinator's writes
  and a stream's alike arrive by), back to back for the same seconds: the cells it applied a second; and,
  for scale, put QUORUM at 16 clients on the 5-node cluster and the writes the new node applied meanwhile;
- client throughput and p99 during a join: put QUORUM at 16 clients on a second cluster (the default
  --repair-rate-mb, 4 MiB/s), once with no change, then while a fifth node joins, the same cell.
"""
import re
import threading
import time
from pathlib import Path

from kvstore.core.cell import Cell
from kvstore.net.blocking import Connection
from kvstore.net.wire import to_mutation
from kvstore.testing.bench.heal import VALUE, write_logs, range_key
from kvstore_rpc import Internode
from kvstore.testing.bench.load import run_load
from kvstore.testing.localcluster import Cluster
from kvstore.testing.ringops import RingOps

CLIENTS = 16
WRITE_BATCH = 1000   # cells a call (about 110 kB: a stream's write batches are up to 1 MiB)


def _cluster(directory, keys, *extra):
    options = ("--repair-interval", "0", *extra)
    cluster = Cluster(Path(directory), extra_args=options)
    (Path(directory) / "node.options").write_text("".join(f"{a}\n" for a in options))
    write_logs(cluster, (1, 2, 3), keys)
    return cluster.start()


def _records(cluster, node_id):
    return cluster.call(node_id, "dump", b"", b"", 1).records_written


def _bulk_rate(cluster, node_id, seconds):
    """Cells a second node_id applies when sent batches of WRITE_BATCH new cells back to back."""
    node = cluster.nodes[node_id]
    connection = Connection(node.host, node.peer_port, 5.0, service=Internode, secret=cluster.secret)
    sent, started, stamp = 0, time.monotonic(), 1_800_000_000_000_000
    try:
        while time.monotonic() - started < seconds:
            connection.call("replica_write_batch", ([to_mutation(range_key(sent + i) + b"+", Cell(VALUE, stamp))
                                                     for i in range(WRITE_BATCH)],), 30.0)
            sent += WRITE_BATCH
    finally:
        connection.close()
    return sent / (time.monotonic() - started)


def measure_streaming(directory, keys, seconds):
    cluster = _cluster(directory, keys, "--repair-rate-mb", "0")
    try:
        started, ops = time.monotonic(), RingOps(cluster)
        added = ops.add(range_key(keys // 2))
        took = time.monotonic() - started
        # the tool's count: every stream of the change, a failed one started again included
        seconds_streaming, cells = re.search(r"streaming done in ([\d.]+) s: (\d+) cells", ops.output).groups()
        seconds_streaming, cells = float(seconds_streaming), int(cells)
        status = cluster.call(added, "repair_status")
        if status.cells_in == cells:   # one stream did it all: the node's own timing, not the tool's polls
            seconds_streaming = status.elapsed
        bulk = _bulk_rate(cluster, added, seconds)
        before, t0 = _records(cluster, added), time.monotonic()
        load = run_load([(n.host, n.port) for n in cluster.members()], "put", "QUORUM", CLIENTS, seconds,
                        access={"credentials": cluster.credentials})
        plain = (_records(cluster, added) - before) / (time.monotonic() - t0)
    finally:
        cluster.close()
    received = cells * (len(range_key(0)) + len(VALUE))
    streamed = cells / seconds_streaming if seconds_streaming else 0.0
    return {"keys": keys, "add_seconds": round(took, 2), "cells_received": cells,
            "stream_seconds": round(seconds_streaming, 2), "stream_cells_per_s": round(streamed),
            "stream_mb_per_s": round(received / seconds_streaming / 2**20, 2) if seconds_streaming else 0.0,
            "plain_cells_per_s": round(bulk), "stream_to_plain": round(streamed / bulk, 2) if bulk else None,
            "put_quorum_applied_per_s": round(plain), "cluster_puts_per_s": load["ops_per_s"]}


def measure_during_join(directory, keys, seconds):
    cluster = _cluster(directory, keys)
    addresses = [(n.host, n.port) for n in cluster.nodes]
    access = {"credentials": cluster.credentials}
    try:
        quiet = run_load(addresses, "put", "QUORUM", CLIENTS, seconds, access=access)
        change = threading.Thread(target=lambda: RingOps(cluster).add(range_key(keys // 2)), name="join")
        change.start()
        joining = run_load(addresses, "put", "QUORUM", CLIENTS, seconds, access=access)
        change.join(600)
        joined = not change.is_alive() and len(cluster.members()) == 5
    finally:
        cluster.close()
    return {"seconds": seconds, "clients": CLIENTS, "without": quiet, "during_join": joining, "joined": joined,
            "throughput_ratio": round(joining["ops_per_s"] / quiet["ops_per_s"], 3),
            "p99_ratio": round(joining["p99_ms"] / quiet["p99_ms"], 2)}


def measure_join(directory, keys, seconds):
    return {"streaming": measure_streaming(Path(directory) / "stream", keys, seconds),
            "during_join": measure_during_join(Path(directory) / "during", keys, seconds)}


def table(figures):
    s, d = figures["streaming"], figures["during_join"]
    return "\n".join([
        f"streaming into a joining node: {s['cells_received']} cells in {s['stream_seconds']} s: "
        f"{s['stream_cells_per_s']} cells/s, {s['stream_mb_per_s']} MB/s (rate unbounded); the whole add "
        f"{s['add_seconds']} s",
        f"the same node's plain write rate (batches of {WRITE_BATCH} cells to its peer port): "
        f"{s['plain_cells_per_s']} cells/s; streaming / plain: {s['stream_to_plain']}x (aim: at least 0.5x); "
        f"under put QUORUM at {CLIENTS} clients ({s['cluster_puts_per_s']} ops/s on 5 nodes) it applied "
        f"{s['put_quorum_applied_per_s']} writes/s",
        f"put QUORUM at {d['clients']} clients, {d['seconds']} s: {d['without']['ops_per_s']} ops/s, p99 "
        f"{d['without']['p99_ms']} ms without a change; {d['during_join']['ops_per_s']} ops/s, p99 "
        f"{d['during_join']['p99_ms']} ms while a node joined (default --repair-rate-mb): throughput "
        f"{d['throughput_ratio']}x, p99 {d['p99_ratio']}x" + ("" if d["joined"] else " (the join did not finish)"),
    ])
