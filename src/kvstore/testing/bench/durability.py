"""Restart, memory and hint delivery, measured on real node processes.

- restart: a node's commit log holding N keys (written directly, as N acknowledged writes
  would leave it), then the time from starting the process to its first answer;
- memory: that node's resident memory per key (psutil), beside the raw bytes of keys and values;
- hints: a node is down while clients write for S seconds; then the time from its restart until
  the hints the others kept for it are all delivered.
"""
import time
from pathlib import Path

import psutil

from kvstore.tools import processes
from kvstore.testing.bench.load import bench_key, run_load
from kvstore.core.cell import Cell, encode_mutation
from kvstore.storage.commitlog import CommitLog
from kvstore.core.config import NodeConfig, make_cluster, write_cluster_file
from kvstore.testing.localcluster import Cluster, prepare_access
from kvstore.testing.ports import free_ports
from kvstore.net.blocking import ping

BATCH = 10_000


def write_log(path, keys, value_size):
    log = CommitLog(path)
    log.replay()
    value = b"v" * value_size
    for start in range(0, keys, BATCH):
        log.append_all([encode_mutation(bench_key(i), Cell(value, 1_700_000_000_000_000 + i))
                        for i in range(start, min(keys, start + BATCH))])
    log.close()


def _start_single(directory, keys, value_size):
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    port, peer_port = free_ports(2)
    node = NodeConfig(0, "127.0.0.1", port, make_cluster(1)[0].token, peer_port)
    write_cluster_file(directory / "cluster.txt", [node])
    prepare_access(directory / "cluster.txt")
    if keys:
        (directory / "node0").mkdir(exist_ok=True)
        write_log(directory / "node0" / "commit.log", keys, value_size)
    started = time.monotonic()
    proc = processes.spawn_node(directory / "cluster.txt", 0, directory / "node0")
    processes.wait_until(lambda: proc.poll() is not None or ping(node.host, node.port, 0.5) is not None, 600)
    ready = time.monotonic() - started
    rss = psutil.Process(proc.pid).memory_info().rss
    proc.kill()
    proc.wait(10)
    return ready, rss


def measure_restart(directory, keys, value_size=100):
    empty_ready, empty_rss = _start_single(Path(directory) / "empty", 0, value_size)
    ready, rss = _start_single(Path(directory) / "full", keys, value_size)
    raw = sum(len(bench_key(i)) for i in range(0, keys, max(1, keys // 1000))) / min(keys, 1000) + value_size
    per_key = (rss - empty_rss) / keys
    return {"keys": keys, "value_bytes": value_size, "restart_s": round(ready, 2),
            "empty_node_start_s": round(empty_ready, 2), "replay_keys_per_s": round(keys / ready),
            "rss_mb": round(rss / 2**20, 1), "rss_per_key_bytes": round(per_key),
            "raw_bytes_per_key": round(raw), "memory_target_bytes_per_key": round(2 * raw + 150)}


def measure_hint_delivery(directory, seconds, clients=4):
    cluster = Cluster(directory, extra_args=("--heartbeat-interval", "0.5")).start()
    try:
        cluster.crash_and_notice(2)
        addresses = [(n.host, n.port) for n in cluster.nodes if n.node_id != 2]
        load = run_load(addresses, "put", "QUORUM", clients, seconds, access={"credentials": cluster.credentials})
        pending = sum(sum(cluster.dump(i).pending_hints.values()) for i in (0, 1, 3))
        started = time.monotonic()
        cluster.restart(2, wait=False)
        cluster.wait_ready(2)
        processes.wait_until(lambda: all(not cluster.dump(i).pending_hints for i in (0, 1, 3)), 600, 0.05)
        delivered_in = time.monotonic() - started
        left = sum(sum(cluster.dump(i).pending_hints.values()) for i in (0, 1, 3))
    finally:
        cluster.close()
    return {"write_seconds": seconds, "writes": load["ops"], "hints": pending, "left": left,
            "delivery_s": round(delivered_in, 2), "hints_per_s": round(pending / delivered_in) if pending else None}
