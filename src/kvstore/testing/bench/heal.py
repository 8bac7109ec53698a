"""What healing costs, measured on real node processes (python3 src/bench.py --heal).

- repair of identical replicas: one token range held by 3 replicas with KEYS keys each (commit logs written
  directly, as that many acknowledged writes would leave them), repaired by its first replica: the time and
  the bytes that crossed, beside the bytes of the data (the trees cross, not the cells);
- client throughput while automatic repair runs: put QUORUM at 16 clients on a store repairing every second,
  beside the same cell on a store with repair off, in alternating rounds;
- sync of an empty replica (a replace): node 3's data lost, replaced with KEYS keys to receive; its cells/s
  and MB/s, beside the writes/s clients got from the cluster at the same moment;
- the same sync in one process, three storages on one loop and no network (SYNC_KEYS keys): what range
  sync's own Python costs, apart from the calls between nodes and the machine's other processes.
"""
import asyncio
import tempfile
import time
from pathlib import Path

from kvstore.cluster.range_trees import RangeTrees
from kvstore.cluster.sync import Pace, SyncStats, sync_range
from kvstore.cluster.sync_sides import LocalSide, RangeLeases
from kvstore.core.cell import Cell, encode_mutation
from kvstore.core.config import even_tokens, make_cluster
from kvstore.core.ring_state import RingState
from kvstore.core.tasks import Background
from kvstore.storage.commitlog import CommitLog
from kvstore.storage.diskworker import DiskWorker
from kvstore.storage.repair_history import RepairHistory
from kvstore.storage.store import Storage
from kvstore.testing.bench.load import run_load
from kvstore.testing.localcluster import Cluster, wait_for
from kvstore_rpc import ttypes

RANGE = ttypes.TokenRange(b"\x3f", b"\x7f")   # in a 4-node cluster: replicas 1, 2, 3; node 1 is its first
BATCH = 10_000
VALUE = b"v" * 100
SYNC_KEYS = 100_000


def range_key(i):
    return b"P%07d" % i


def write_logs(cluster, node_ids, keys):
    for node_id in node_ids:
        directory = cluster.node_dir(node_id)
        directory.mkdir(parents=True, exist_ok=True)
        log = CommitLog(directory / "commit.log")
        log.replay()
        for start in range(0, keys, BATCH):
            log.append_all([encode_mutation(range_key(i), Cell(VALUE, 1_700_000_000_000_000 + i))
                            for i in range(start, min(keys, start + BATCH))])
        log.close()


def _repair(cluster, node_id, timeout=600):
    cluster.call(node_id, "repair", [RANGE])
    wait_for(lambda: not cluster.call(node_id, "repair_status").running, timeout, "the repair to end")
    return cluster.call(node_id, "repair_status")


def measure_identical(directory, keys):
    cluster = Cluster(Path(directory), extra_args=("--repair-interval", "0"))
    write_logs(cluster, (1, 2, 3), keys)
    cluster.start()
    try:
        status = _repair(cluster, 1)
    finally:
        cluster.close()
    data = keys * (len(range_key(0)) + len(VALUE))
    return {"keys": keys, "seconds": round(status.elapsed, 3), "bytes_sent": status.bytes_sent,
            "data_bytes_per_replica": data, "bytes_sent_of_data": round(status.bytes_sent / data, 6),
            "cells_sent": status.cells_in + status.cells_out, "failed": list(status.failed)}


def measure_throughput(directory, seconds, rounds, clients=16):
    """put QUORUM at `clients` with repair every second and with repair off, `rounds` rounds each."""
    stores = {label: Cluster(Path(directory) / label, extra_args=("--repair-interval", interval)).start()
              for label, interval in (("repair_on", "1"), ("repair_off", "0"))}
    figures = {label: [] for label in stores}
    try:
        for round_ in range(rounds):
            for label in (("repair_on", "repair_off") if round_ % 2 == 0 else ("repair_off", "repair_on")):
                c = stores[label]
                cell = run_load([(n.host, n.port) for n in c.nodes], "put", "QUORUM", clients, seconds,
                                access={"credentials": c.credentials})
                figures[label].append(cell["ops_per_s"])
        repairs = sum(1 for i in range(4) if stores["repair_on"].call(i, "repair_status").kind == "automatic")
    finally:
        for c in stores.values():
            c.close()
    median = {label: sorted(runs)[len(runs) // 2] for label, runs in figures.items()}
    return {"clients": clients, "seconds": seconds, "rounds": rounds, "ops_per_s": figures,
            "median_on": median["repair_on"], "median_off": median["repair_off"],
            "ratio_on_to_off": round(median["repair_on"] / median["repair_off"], 3), "nodes_that_repaired": repairs}


def measure_replace(directory, keys, clients=4):
    cluster = Cluster(Path(directory), extra_args=("--repair-interval", "0", "--repair-rate-mb", "0"))
    write_logs(cluster, (1, 2, 3), keys)
    cluster.start()
    try:
        cluster.crash_and_notice(3)
        cluster.wipe(3)
        started = time.monotonic()
        cluster.replace(3)
        addresses = [(n.host, n.port) for n in cluster.nodes if n.node_id != 3]
        load = run_load(addresses, "put", "QUORUM", clients, 5, access={"credentials": cluster.credentials})
        wait_for(lambda: cluster.syncing(3) == 0, 1200, "node 3 to sync")
        took = time.monotonic() - started
        status = cluster.call(3, "repair_status")
    finally:
        cluster.close()
    received_bytes = status.cells_in * (len(range_key(0)) + len(VALUE))
    return {"keys": keys, "seconds": round(took, 2), "cells_received": status.cells_in,
            "cells_per_s": round(status.cells_in / status.elapsed), "mb_per_s": round(received_bytes / status.elapsed
                                                                                      / 2**20, 2),
            "client_puts_per_s_meanwhile": load["ops_per_s"], "client_clients": clients,
            "sync_elapsed_s": round(status.elapsed, 2)}


def measure_sync_in_process(keys=SYNC_KEYS):
    return asyncio.run(_sync_in_process(keys))


async def _sync_in_process(keys):
    loop, ring = asyncio.get_running_loop(), RingState(1, tuple(make_cluster(4, tokens=even_tokens(4)))).placement()
    disks, sides = [], []
    with tempfile.TemporaryDirectory(prefix="kvstore-bench-sync-") as tmp:
        try:
            for node_id in (3, 1, 2):   # node 3 empty, nodes 1 and 2 holding the range
                disk = DiskWorker(loop)
                disk.start()
                disks.append(disk)
                trees = RangeTrees(ring, node_id)
                storage = Storage(CommitLog(Path(tmp) / f"{node_id}.log"), disk, Background(), trees=trees)
                storage.load()
                trees.add_built([], done=True)
                sides.append(LocalSide(node_id, trees, storage, RangeLeases(), RepairHistory(tmp), disk))
                if node_id != 3:
                    for start in range(0, keys, BATCH):
                        await storage.apply_all([(range_key(i), Cell(VALUE, 1_700_000_000_000_000 + i))
                                                 for i in range(start, min(keys, start + BATCH))])
            started = time.perf_counter()
            await sync_range(ring.ranges()[1][0], sides, 1, SyncStats(), Pace(0))
            took = time.perf_counter() - started
        finally:
            for disk in disks:
                disk.stop()
    return {"keys": keys, "seconds": round(took, 2), "cells_per_s": round(keys / took)}


def measure_heal(directory, keys, seconds, rounds):
    return {"identical_repair": measure_identical(Path(directory) / "identical", keys),
            "throughput_with_repair": measure_throughput(Path(directory) / "throughput", seconds, rounds),
            "replace_sync": measure_replace(Path(directory) / "replace", keys),
            "sync_in_process": measure_sync_in_process()}


def table(figures):
    same, load, sync = figures["identical_repair"], figures["throughput_with_repair"], figures["replace_sync"]
    alone = figures["sync_in_process"]
    return "\n".join([
        f"repair of identical replicas: {same['keys']} keys in one range on 3 replicas: {same['seconds']} s, "
        f"{same['bytes_sent']} bytes sent ({same['bytes_sent_of_data']:.6%} of the {same['data_bytes_per_replica']} "
        f"bytes of data), {same['cells_sent']} cells sent",
        f"put QUORUM at {load['clients']} clients: {load['median_on']} ops/s with automatic repair every second, "
        f"{load['median_off']} ops/s with it off: {load['ratio_on_to_off']}x (median of {load['rounds']} rounds of "
        f"{load['seconds']} s each)",
        f"replace: an empty replica received {sync['cells_received']} cells in {sync['sync_elapsed_s']} s: "
        f"{sync['cells_per_s']} cells/s, {sync['mb_per_s']} MB/s (rate unbounded), while clients wrote "
        f"{sync['client_puts_per_s_meanwhile']} puts/s (QUORUM, {sync['client_clients']} clients)",
        f"the same sync in one process, no network: {alone['keys']} cells in {alone['seconds']} s: "
        f"{alone['cells_per_s']} cells/s",
    ])
