"""The load: P client processes, each with one persistent connection, for D seconds; latencies measured.

Clients are spread over the given addresses (client i talks to address i mod n).
Each process sends one kind of request back to back and reports its count,
errors and latencies; the parent merges them into ops/s and percentiles.
"""
import array
import multiprocessing
import random
import time

from kvstore.core.errors import NodeFailed, NodeUnavailable
from kvstore.net.blocking import Connection
from kvstore_rpc import ttypes

LEVELS = {"ONE": ttypes.ConsistencyLevel.ONE, "QUORUM": ttypes.ConsistencyLevel.QUORUM}


def bench_key(i):
    """Keys whose first byte cycles, so they spread evenly over the ring."""
    return bytes([i % 256]) + b"bench-%d" % i


def _client(address, op, level, value_size, keys, start_at, duration, seed, results, access):
    rng = random.Random(seed)
    connection = Connection(address[0], address[1], connect_timeout=5.0, **access)
    value = b"v" * value_size
    latencies, errors = array.array("d"), 0
    while time.time() < start_at:
        time.sleep(0.001)
    end = time.perf_counter() + duration
    while True:
        key = bench_key(rng.randrange(keys))
        started = time.perf_counter()
        if started >= end:
            break
        try:
            if op == "put":
                connection.call("put", (key, value, LEVELS[level]), 10.0)
            else:
                connection.call("get", (key, LEVELS[level]), 10.0)
        except (NodeUnavailable, NodeFailed, ttypes.Unavailable, ttypes.TimedOut, ttypes.InvalidRequest):
            errors += 1
            if connection.broken:
                connection = Connection(address[0], address[1], connect_timeout=5.0, **access)
        latencies.append(time.perf_counter() - started)
    connection.close()
    results.put((errors, latencies.tobytes()))


def run_load(addresses, op, level, clients, duration, value_size=100, keys=10000, seed=1, access=None):
    """{'ops_per_s', 'p50_ms', 'p95_ms', 'p99_ms', 'max_ms', 'errors', 'ops'} of one cell; access: what each
    client connects with ({credentials, tls}, as peers.Connection takes them)."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start_at = time.time() + 0.3 + 0.02 * clients
    procs = [context.Process(target=_client, args=(addresses[i % len(addresses)], op, level, value_size, keys,
                                                   start_at, duration, seed * 1000 + i, results, access or {}),
                                   daemon=True)
             for i in range(clients)]
    for proc in procs:
        proc.start()
    latencies, errors = array.array("d"), 0
    for _ in procs:
        client_errors, data = results.get(timeout=duration + 60)
        errors += client_errors
        latencies.frombytes(data)
    for proc in procs:
        proc.join(10)
    ordered = sorted(latencies)

    def pct(p):
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000, 3) if ordered else None
    return {"ops": len(ordered), "ops_per_s": round(len(ordered) / duration, 1), "p50_ms": pct(0.50),
            "p95_ms": pct(0.95), "p99_ms": pct(0.99), "max_ms": round(ordered[-1] * 1000, 3) if ordered else None,
            "errors": errors}
