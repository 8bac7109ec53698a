"""python3 src/bench.py: the store's throughput and latency beside the floor, restart, memory, hints.

Each cell (put or get, at ONE or QUORUM, with C clients) runs for --duration seconds
against a 4-node store at its default durability (fsync before acknowledging), then
against the floor: one no-op server, and a no-op fan-out cluster of 4 coordinators
over 4 no-op replicas (thread per connection, a thread pool forwarding: the
floor the ratios were first taken against), and two reference floors built as one
selector loop per process (loopfloor.py): the same no-op fan-out cluster, and one whose
replicas fsync before answering; all of them are started first and measured in turn,
cell by cell. Ratios, not absolute figures, are what to compare across machines.
Every cell also reports what it cost the server processes in CPU: their user + system
seconds during the cell, divided by the operations (cpu_us_per_op), for the store and
for each floor alike.
"""
import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

from kvstore.core.config import CHECKOUT
from kvstore.tools import processes
from kvstore.testing.bench.durability import measure_hint_delivery, measure_restart
from kvstore.testing.bench.floor import serve
from kvstore.testing.bench.heal import measure_heal
from kvstore.testing.bench.heal import table as heal_table
from kvstore.testing.bench.join import measure_join
from kvstore.testing.bench.join import table as join_table
from kvstore.testing.bench import tables
from kvstore.testing.bench.layers import measure_layers
from kvstore.testing.bench.layers import table as layers_table
from kvstore.testing.bench.leanstore import serve_lean
from kvstore.testing.bench.loopfloor import serve_loop
from kvstore.testing.bench.oneclient import measure_one_client
from kvstore.testing.bench.oneclient import table as one_client_table
from kvstore.testing.bench.load import bench_key, run_load
from kvstore.testing.localcluster import Cluster
from kvstore.testing.ports import free_ports
from kvstore.net.blocking import ping
from kvstore.client.credentials import find_credentials

CELLS = [("put", "QUORUM"), ("get", "QUORUM"), ("put", "ONE"), ("get", "ONE")]
BENCH_SCRIPT = CHECKOUT / "src" / "bench.py"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench.py", description=__doc__.splitlines()[0])
    p.add_argument("--clients", default="1,16", help="client counts to sweep, e.g. 1,4,16 (default 1,16)")
    p.add_argument("--cells", type=_cells, default=CELLS, metavar="CELLS",
                   help='only these cells, e.g. "put QUORUM,get ONE" (default: put and get at QUORUM and ONE)')
    p.add_argument("--duration", type=float, default=5, help="seconds per cell (default 5)")
    p.add_argument("--rounds", type=int, default=1,
                   help="runs of each cell, every system in turn; the median round is reported (default 1)")
    p.add_argument("--value-size", type=int, default=100)
    p.add_argument("--keys", type=int, default=10000)
    p.add_argument("--cluster", help="measure a running cluster (its cluster file) instead of starting one")
    p.add_argument("--no-floor", action="store_true", help="skip the floor servers")
    p.add_argument("--no-tls", action="store_true",
                   help="skip the second store with TLS on both ports (--tls --internode-tls), measured beside the "
                        "plaintext one for what TLS costs")
    p.add_argument("--sync-period", type=float, default=0, metavar="SECONDS",
                   help="also measure a store whose nodes fsync every SECONDS instead of before acknowledging "
                        "(--commitlog-sync-period; NOT durable at acknowledgement), reported apart (default: no)")
    p.add_argument("--restart-keys", type=int, default=1_000_000, help="keys for the restart test (0: skip)")
    p.add_argument("--hint-seconds", type=float, default=60, help="seconds of writes with a node down (0: skip)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--layers", action="store_true",
                   help="only measure the CPU of the node's own Python per get QUORUM, layer by layer, in one "
                        "process, beside the loop floor's (about 20 s; see kvstore/testing/bench/layers.py)")
    p.add_argument("--one-client", type=int, metavar="BLOCKS",
                   help="only measure put QUORUM at one client: the store, the lean store (the least a store of this "
                        "shape does, kvstore/testing/bench/leanstore.py) and the durable loop floor, interleaved in "
                        "BLOCKS blocks of puts each (300: about 2 min), and how the disk takes fdatasyncs at once")
    p.add_argument("--heal", action="store_true",
                   help="only measure healing: a repair of identical replicas of --heal-keys keys (time, bytes), "
                        "put QUORUM with automatic repair on and off (--duration, --rounds), and the sync of an "
                        "empty replica (a replace; see kvstore/testing/bench/heal.py)")
    p.add_argument("--heal-keys", type=int, default=1_000_000, help="keys in the range --heal repairs and syncs")
    p.add_argument("--join", action="store_true",
                   help="only measure a join: streaming into a new node beside its plain write rate, and put QUORUM "
                        "during a join against the same cell without one (see kvstore/testing/bench/join.py)")
    p.add_argument("--join-keys", type=int, default=200_000, help="keys in the range a new node splits (--join)")
    p.add_argument("--serve", choices=("noop", "fanout", "loop-noop", "loop-durable", "loop-fanout", "lean"),
                   help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--replicas", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _cells(text):
    """[(op, level)] from "put QUORUM,get ONE", in the order of CELLS."""
    wanted = {tuple(part.split()) for part in text.split(",")}
    unknown = wanted - set(CELLS)
    if unknown:
        raise argparse.ArgumentTypeError(f"no such cell: {', '.join(' '.join(c) for c in sorted(unknown))} "
                                         f"(cells: {', '.join(' '.join(c) for c in CELLS)})")
    return [cell for cell in CELLS if cell in wanted]


def progress(text):
    print(text, file=sys.stderr, flush=True)


class System:
    """One thing measured: a label, the addresses its clients spread over, the cells it runs, and
    (for a store) a function giving its (records, fsyncs), to report fsyncs per write."""

    def __init__(self, label, addresses, cells=CELLS, log_counters=None, access=None, pids=lambda: ()):
        """access: {credentials, tls}: how its clients log in and connect (None: plain, no login: a floor);
        pids(): its server processes, whose CPU each cell reports (none known: not reported)."""
        self.label, self.addresses, self.cells, self.log_counters = label, addresses, cells, log_counters
        self.access = access or {}
        self.pids = pids


def measure(systems, sweep, args):
    """{label: {cell name: figures}}. Cell by cell, every system in turn, round after round (each
    round begins with the next system): the drift of a shared machine then falls on the store and
    the floor alike. With several rounds a cell's figures are those of its median round (by ops/s)."""
    results = {system.label: {} for system in systems}
    for clients in sweep:
        for op, level in args.cells:
            runs = {system.label: [] for system in systems}
            for round_ in range(args.rounds):
                turn = round_ % len(systems)   # each round starts with the next system: no fixed order
                for system in systems[turn:] + systems[:turn]:
                    if (op, level) in system.cells:
                        runs[system.label].append(measure_cell(system, op, level, clients, args))
            for label, cells in runs.items():
                if cells:
                    median = sorted(cells, key=lambda c: c["ops_per_s"])[len(cells) // 2]
                    results[label][f"{op} {level} {clients}"] = median
    return results


def measure_cell(system, op, level, clients, args):
    counters = system.log_counters if op == "put" else None
    before = counters() if counters else None
    pids = list(system.pids())
    cpu_before = cpu_seconds(pids)
    cell = run_load(system.addresses, op, level, clients, args.duration, args.value_size, args.keys,
                    access=system.access)
    cell["cpu_us_per_op"] = round((cpu_seconds(pids) - cpu_before) / cell["ops"] * 1e6) if pids and cell["ops"] \
        else None
    if before:
        records, fsyncs = (a - b for a, b in zip(counters(), before))
        cell["fsyncs_per_write"] = round(fsyncs / records, 3) if records else None
    progress(f"{system.label:>19} {op} {level:<6} {clients:>3} clients: {cell['ops_per_s']:>8} ops/s "
             f"p50 {cell['p50_ms']} ms p99 {cell['p99_ms']} ms errors {cell['errors']}"
             f" cpu/op {cell['cpu_us_per_op']} us"
             + (f" fsyncs/write {cell['fsyncs_per_write']}" if "fsyncs_per_write" in cell else ""))
    return cell


def cpu_seconds(pids):
    """User + system CPU seconds the processes have used (those that are gone count nothing)."""
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def cluster_log_counters(call, node_ids):
    """(records appended, fsyncs) summed over the nodes, through their dumps."""
    dumps = [call(i, "dump", b"-") for i in node_ids]  # a key nobody writes: the counters, not the cells
    return sum(d.records_written for d in dumps), sum(d.fsyncs for d in dumps)


@contextlib.contextmanager
def store(args, directory, label="store", extra_args=()):
    """A 4-node store of our own (or the running one of --cluster), prefilled with the keys."""
    if args.cluster:
        from kvstore.core.config import read_cluster_file
        yield System(label, [(n.host, n.port) for n in read_cluster_file(args.cluster)],
                     access={"credentials": find_credentials(args.cluster)})
        return
    cluster = Cluster(directory / label, extra_args=extra_args).start()
    try:
        progress(f"{label}: prefilling {args.keys} keys")
        connection = cluster.connect(0)
        for i in range(args.keys):
            connection.call("put", (bench_key(i), b"v" * args.value_size, 1), 10)
        yield System(label, [(n.host, n.port) for n in cluster.nodes],
                     log_counters=lambda: cluster_log_counters(cluster.call, range(len(cluster.nodes))),
                     access={"credentials": cluster.credentials, "tls": cluster.tls},
                     pids=lambda: [proc.pid for proc in cluster.procs.values()])
    finally:
        cluster.close()


def spawn_floor(kind, port, replicas=()):
    command = [sys.executable, str(BENCH_SCRIPT), "--serve", kind, "--port", str(port),
               "--replicas", ",".join(f"{h}:{p}" for h, p in replicas)]
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
    if not processes.wait_until(lambda: ping("127.0.0.1", port, 0.5) is not None, 20):
        proc.kill()
        raise RuntimeError(f"the {kind} floor server on port {port} did not start")
    return proc


@contextlib.contextmanager
def floor():
    """(one no-op server, a no-op fan-out cluster of 4 coordinators over 4 no-op replicas, the same
    cluster built as selector loops, and that one again over replicas that fsync)."""
    procs = []
    try:
        port = free_ports(1)[0]
        procs.append(spawn_floor("noop", port))
        clusters = []
        for label, replica_kind, fanout_kind in (("fanout", "noop", "fanout"),
                                                 ("loop-fanout", "loop-noop", "loop-fanout"),
                                                 ("loop-durable-fanout", "loop-durable", "loop-fanout")):
            replica_ports, coordinator_ports = free_ports(4), free_ports(4)
            mine = [spawn_floor(replica_kind, p) for p in replica_ports]
            for i, p in enumerate(coordinator_ports):
                replicas = [("127.0.0.1", replica_ports[(i + k) % 4]) for k in range(3)]
                mine.append(spawn_floor(fanout_kind, p, replicas))
            procs += mine
            clusters.append(System(label, [("127.0.0.1", p) for p in coordinator_ports],
                                   pids=lambda mine=mine: [proc.pid for proc in mine]))
        yield (System("noop", [("127.0.0.1", port)], [("put", "QUORUM"), ("get", "QUORUM")],
                      pids=lambda single=procs[0]: [single.pid]), *clusters)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)


def main(argv=None):
    args = parse_args(argv)
    if args.layers:
        figures = measure_layers()
        print(json.dumps(figures, indent=2) if args.json else layers_table(figures))
        return 0
    if args.heal:
        with tempfile.TemporaryDirectory(prefix="kvstore-bench-heal-") as tmp:
            figures = measure_heal(tmp, args.heal_keys, args.duration, max(args.rounds, 3))
        print(json.dumps(figures, indent=2) if args.json else heal_table(figures))
        return 0
    if args.join:
        with tempfile.TemporaryDirectory(prefix="kvstore-bench-join-") as tmp:
            figures = measure_join(tmp, args.join_keys, args.duration)
        print(json.dumps(figures, indent=2) if args.json else join_table(figures))
        return 0
    if args.one_client:
        figures = measure_one_client(spawn_floor, args.one_client, args.keys, args.value_size)
        print(json.dumps(figures, indent=2) if args.json else one_client_table(figures))
        return 0
    if args.serve:
        replicas = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in args.replicas.split(",") if a]
        if args.serve == "lean":   # replicas: every node of the lean store, this one's included
            serve_lean([port for _, port in replicas].index(args.port), "127.0.0.1", replicas)
        elif args.serve.startswith("loop-"):
            serve_loop(args.serve[len("loop-"):], "127.0.0.1", args.port, replicas)
        else:
            serve(args.serve, "127.0.0.1", args.port, replicas)
        return 0
    if args.cluster and args.sync_period:
        print("bench.py: --sync-period starts a store of its own; it cannot be used with --cluster", file=sys.stderr)
        return 2
    sweep = [int(c) for c in args.clients.split(",")]
    report = {"settings": {"clients": sweep, "duration_s": args.duration, "rounds": args.rounds,
                           "value_bytes": args.value_size, "keys": args.keys,
                           "durability": "fsync before acknowledging (default)"}}
    with tempfile.TemporaryDirectory(prefix="kvstore-bench-") as tmp, contextlib.ExitStack() as running:
        directory = Path(tmp)
        systems = [running.enter_context(store(args, directory))]
        if args.sync_period:
            systems.append(running.enter_context(store(
                args, directory, "periodic", ("--commitlog-sync-period", str(args.sync_period)))))
        if not args.no_tls and not args.cluster:
            systems.append(running.enter_context(store(args, directory, "store-tls", ("--tls", "--internode-tls"))))
        if not args.no_floor:
            systems += running.enter_context(floor())
        results = measure(systems, sweep, args)
        running.close()   # stop them all: the restart and hint measurements need the machine to themselves
        report["store"] = results["store"]
        report["floor_single_rpc"], report["floor_fanout"] = results.get("noop", {}), results.get("fanout", {})
        report["floor_loop_fanout"] = results.get("loop-fanout", {})
        report["floor_loop_durable_fanout"] = results.get("loop-durable-fanout", {})
        if args.sync_period:
            report["store_periodic_sync"] = results["periodic"]
        if "store-tls" in results:
            report["store_tls"] = results["store-tls"]
        if args.restart_keys:
            progress(f"restart: writing a log of {args.restart_keys} keys and starting a node on it")
            report["restart"] = measure_restart(directory / "restart", args.restart_keys, args.value_size)
        if args.hint_seconds:
            progress(f"hints: {args.hint_seconds:.0f} s of writes with node 2 down, then its restart")
            report["hints"] = measure_hint_delivery(directory / "hints", args.hint_seconds)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(tables.main_table(report["store"], report["floor_single_rpc"], report["floor_fanout"]))
        if args.sync_period:
            print(f"\nNOT DURABLE AT ACKNOWLEDGEMENT: the store with --commitlog-sync-period {args.sync_period:g} "
                  "(fsync every period, not before acknowledging)")
            print(tables.main_table(report["store_periodic_sync"], report["floor_single_rpc"], report["floor_fanout"]))
        if "store_tls" in report:
            print("\nTLS: the same store with TLS on the client and peer ports (--tls --internode-tls)")
            print(tables.tls_table(report["store"], report["store_tls"]))
        if report["floor_loop_fanout"]:
            print("\nREFERENCE: the same fan-out as selector loops, without storage and with replicas that fsync")
            print(tables.reference_table(report["store"], report["floor_loop_fanout"],
                                         report["floor_loop_durable_fanout"]))
        for part in ("restart", "hints"):
            if part in report:
                print(f"{part}: " + ", ".join(f"{k} {v}" for k, v in report[part].items()))
    return 0
