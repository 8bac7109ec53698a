"""A put at QUORUM from one client: the store beside the lean store (leanstore.py) and the durable loop floor
(loopfloor.py), interleaved finely, and how this machine's disk takes fdatasyncs that come at once.

At one client a put's latency is its throughput, and this machine's speed drifts by a third from one
second to the next (a shared host), so systems measured one after another for seconds each differ by
more than the designs do. Here one client process sends blocks of a few dozen puts (about 50 ms) to each
system in turn, the order rotating, for every block: each system sees the same drift, and its ops/s is one
over its mean latency. The run is also cut in fifths, each fifth's ratio given, to show how steady it was.

The disk probe: 1, 2 and 3 processes at once, each writing small records to a file of its own with pwrite
and fdatasync, as replicas do. When the fdatasyncs/s of all of them together stay flat as processes are
added, and each one's latency grows with their number, the disk completes one flush at a time: a quorum
of two durable copies then waits for two flushes, one after the other, whichever node holds them.
"""
import contextlib
import multiprocessing
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from kvstore.testing.bench.load import LEVELS, bench_key
from kvstore.testing.localcluster import Cluster
from kvstore.testing.ports import free_ports
from kvstore.net.blocking import Connection

BLOCK_PUTS = 40
FIFTHS = 5


@contextlib.contextmanager
def systems(directory, spawn, keys, value):
    """{label: a Connection to its node 0 (its coordinator)}: the store (prefilled with the keys, as the benchmark's
    store is), the lean store, the durable loop floor. spawn(kind, port, replicas) starts one bench server process
    (bench.py --serve)."""
    procs = []
    cluster = Cluster(Path(directory) / "store").start()
    try:
        cluster.wait_all_see_all()
        lean_ports, durable_ports, fanout_port = free_ports(4), free_ports(3), free_ports(1)[0]
        lean_peers = [("127.0.0.1", port) for port in lean_ports]
        durable_peers = [("127.0.0.1", port) for port in durable_ports]
        for kind, port, replicas in ([("lean", port, lean_peers) for port in lean_ports]
                                     + [("loop-durable", port, ()) for port in durable_ports]
                                     + [("loop-fanout", fanout_port, durable_peers)]):
            procs.append(spawn(kind, port, replicas))   # one by one: those started are stopped if one fails
        connections = {"store": cluster.connect(0), "lean store": Connection(*lean_peers[0], connect_timeout=5),
                       "durable loop floor": Connection("127.0.0.1", fanout_port, connect_timeout=5)}
        for i in range(keys):
            connections["store"].call("put", (bench_key(i), value, LEVELS["QUORUM"]), 10)
        yield connections
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)
        cluster.close()


def interleaved(connections, blocks, keys, value, seed=1):
    """{label: [latency in seconds of each put]}, blocks of BLOCK_PUTS puts to each system in turn."""
    rng, level, names = random.Random(seed), LEVELS["QUORUM"], list(connections)
    latencies = {name: [] for name in names}
    for block in range(-1, blocks):   # the first, a warm-up, is not kept
        shift = block % len(names)
        for name in names[shift:] + names[:shift]:
            connection, out = connections[name], latencies[name]
            for _ in range(BLOCK_PUTS):
                key = bench_key(rng.randrange(keys))
                started = time.perf_counter()
                connection.call("put", (key, value, level), 10)
                out.append(time.perf_counter() - started)
        if block < 0:
            latencies = {name: [] for name in names}
    return latencies


def summary(latencies, against="durable loop floor"):
    """{label: {ops_per_s, p50_ms, p99_ms, ratio, fifths}}: ratio is the floor's mean latency over this one's."""
    floor = latencies[against]
    report = {}
    for name, own in latencies.items():
        ordered, part = sorted(own), len(own) // FIFTHS
        report[name] = {"ops_per_s": round(1 / statistics.mean(own), 1),
                        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 3),
                        "p99_ms": round(ordered[int(len(ordered) * 0.99)] * 1000, 3),
                        "ratio": round(statistics.mean(floor) / statistics.mean(own), 3),
                        "fifths": [round(statistics.mean(floor[i * part:(i + 1) * part])
                                         / statistics.mean(own[i * part:(i + 1) * part]), 3) for i in range(FIFTHS)]}
    return report


def _flushing(path, seconds, results):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, bytes(16 << 20), 0)   # written ahead, as the logs are: no flush changes the file's size
        os.fsync(fd)
        offset, latencies, end = 0, [], time.monotonic() + seconds
        while time.monotonic() < end:
            os.pwrite(fd, b"r" * 160, offset)
            offset += 160
            started = time.perf_counter()
            os.fdatasync(fd)
            latencies.append(time.perf_counter() - started)
    finally:
        os.close(fd)
    results.put(latencies)


def flush_rates(seconds=2.0, most=3):
    """[{processes, fdatasyncs_per_s (all of them together), p50_us (each)}] for 1..most processes at once."""
    context, rates = multiprocessing.get_context("fork"), []
    with tempfile.TemporaryDirectory(prefix="kvstore-flushes-") as directory:
        for count in range(1, most + 1):
            results = context.Queue()
            procs = [context.Process(target=_flushing, args=(Path(directory) / f"log-{i}", seconds, results))
                     for i in range(count)]
            for proc in procs:
                proc.start()
            latencies = sorted(latency for _ in procs for latency in results.get(timeout=seconds + 60))
            for proc in procs:
                proc.join(10)
            rates.append({"processes": count, "fdatasyncs_per_s": round(len(latencies) / seconds),
                          "p50_us": round(latencies[len(latencies) // 2] * 1e6)})
    return rates


def measure_one_client(spawn, blocks, keys, value_size):
    """{"puts": summary(...), "flushes": flush_rates()}: see the module docstring."""
    value = b"v" * value_size
    with tempfile.TemporaryDirectory(prefix="kvstore-one-client-") as directory:
        with systems(directory, spawn, keys, value) as connections:
            puts = summary(interleaved(connections, blocks, keys, value))
    return {"puts": puts, "flushes": flush_rates()}


def table(report):
    lines = [f"put QUORUM, one client, interleaved in blocks of {BLOCK_PUTS} puts:",
             f"  {'system':20s} {'ops/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s}  /durable floor  (each fifth of the run)"]
    for name, cell in report["puts"].items():
        fifths = " ".join(f"{r:.2f}" for r in cell["fifths"])
        lines.append(f"  {name:20s} {cell['ops_per_s']:8.1f} {cell['p50_ms']:8.3f} {cell['p99_ms']:8.3f}"
                     f"  {cell['ratio']:13.2f}x  ({fifths})")
    lines.append("the disk, fdatasync from processes at once (each on its own file):")
    for rate in report["flushes"]:
        lines.append(f"  {rate['processes']} at once: {rate['fdatasyncs_per_s']:6d} fdatasyncs/s in all, "
                     f"each {rate['p50_us']:6d} us (median)")
    return "\n".join(lines)
