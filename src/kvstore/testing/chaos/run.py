"""python3 src/chaos.py: start a cluster, run clients while a nemesis injects faults, heal, check.

Exit status: 0 when every check passes, 1 when one fails, 2 when the run could not be set up.
The same --seed gives the same sequence of client operations and faults (their timing, and
so their interleaving, still varies from run to run).
"""
import argparse
import json
import logging
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from kvstore.testing.chaos.checker import check, lost_writes, summarize
from kvstore.testing.chaos.nemesis import Nemesis
from kvstore.testing.chaos.workload import CALL_TIMEOUT, LEVELS, ChaosClient, chaos_keys
from kvstore.core.errors import KVStoreError, NodeFailed, NodeUnavailable
from kvstore.tools.inspector import analyze_newest, collect, divergent
from kvstore.testing.fakeclock import FAKETIME_LIBRARY
from kvstore.testing.localcluster import Cluster, ClusterError
from kvstore.testing.netns import NetnsHosts, NetnsUnavailable
from kvstore.testing.textkeys import text_keys
from kvstore_rpc import ttypes

log = logging.getLogger("kvstore.chaos")
EXIT_OK, EXIT_FAILED, EXIT_SETUP = 0, 1, 2
NODE_ARGS = ("--heartbeat-interval", "0.25", "--request-timeout", "2", "--repair-interval", "10")
PRELOAD_BATCH = 2000
HINT_WINDOW = 3.0   # seconds, with outage faults: an outage outlasts it, so only repair heals the node
FAULTS = ("crash", "pause", "partition", "clock", "wipe", "outage", "add", "decommission", "removenode", "move",
          "balance")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="chaos.py", description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=60, help="seconds of faults and traffic (default 60)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--keys", type=int, default=8, help="size of the key space; small, so keys are contended")
    p.add_argument("--hosts", choices=("auto", "netns", "loopback"), default="auto",
                   help="netns: each node in a network namespace of its own (root); auto: netns when possible")
    p.add_argument("--faults", default=",".join(FAULTS),
                   help="comma-separated: crash, pause, partition, clock (steps nodes' clocks: needs libfaketime), "
                        "wipe (a lost disk: the node is replaced), outage (down past the hint window), "
                        "add, decommission, removenode, move, balance (ring changes, each run to its end)")
    p.add_argument("--max-down", type=int, default=1, help="nodes faulted at once (default 1)")
    p.add_argument("--preload", type=int, default=0, metavar="N",
                   help="write N text keys at ALL before the faults begin, and read each back at QUORUM at the end "
                        "(the data ring changes move; default 0)")
    p.add_argument("--settle", type=float, default=60, help="seconds allowed to converge after healing")
    p.add_argument("--history", help="where to write the history, JSON lines (default chaos-seedN.jsonl)")
    p.add_argument("--dir", help="the cluster's directory (default: a temporary one, removed unless a check fails)")
    return p.parse_args(argv)


def make_hosts(choice):
    if choice == "loopback":
        return None
    try:
        return NetnsHosts()
    except NetnsUnavailable as exc:
        if choice == "netns":
            raise
        print(f"note: no network namespaces ({exc}); running on loopback without partitions", file=sys.stderr)
        return None


def main(argv=None):
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the nodes and the namespaces are always removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(EXIT_FAILED))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s chaos %(levelname)s %(message)s")
    directory = Path(args.dir or tempfile.mkdtemp(prefix="kvstore-chaos-"))
    history_path = Path(args.history or f"chaos-seed{args.seed}.jsonl")
    kinds = [k for k in args.faults.split(",") if k]
    unknown = set(kinds) - set(FAULTS)
    if unknown:
        print(f"unknown faults: {', '.join(sorted(unknown))}", file=sys.stderr)
        return EXIT_SETUP
    if "clock" in kinds and not Path(FAKETIME_LIBRARY).exists():
        print(f"note: no libfaketime ({FAKETIME_LIBRARY}; apt-get install faketime): running without clock "
              "faults", file=sys.stderr)
        kinds.remove("clock")
    try:
        hosts = make_hosts(args.hosts)
        window = ("--hint-window", str(HINT_WINDOW)) if "outage" in kinds else ()
        cluster = Cluster(directory, extra_args=NODE_ARGS + window, hosts=hosts, clocks="clock" in kinds)
    except (NetnsUnavailable, KVStoreError) as exc:
        print(f"cannot set up the run: {exc}", file=sys.stderr)
        return EXIT_SETUP
    if "partition" in kinds and not cluster.hosts.can_partition:
        kinds.remove("partition")
    try:
        cluster.start()
        report = Run(cluster, args, kinds).execute()
    except ClusterError as exc:
        print(f"the run broke down: {exc}", file=sys.stderr)
        report = None
    finally:
        cluster.close()
    if report is None:
        return EXIT_FAILED
    report.write_history(history_path)
    report.print_summary(history_path)
    if report.passed and not args.dir:
        shutil.rmtree(directory, ignore_errors=True)
    elif not report.passed:
        print(f"node data and logs kept in {directory}")
    return EXIT_OK if report.passed else EXIT_FAILED


class Run:
    def __init__(self, cluster, args, kinds):
        self.cluster = cluster
        self.args = args
        self.kinds = kinds
        self.keys = chaos_keys(args.keys)
        self.history = []
        self._lock = threading.Lock()
        self._t0 = time.monotonic()

    def clock(self):
        return round(time.monotonic() - self._t0, 6)

    def record(self, entry):
        with self._lock:
            self.history.append(entry)

    def preload(self):
        """Write --preload text keys at ALL (before any fault); {key: value}."""
        keys = {key: b"preloaded-" + key for key in text_keys(self.args.preload)}
        with self.cluster.client(level="ALL") as kv:
            items = list(keys.items())
            for first in range(0, len(items), PRELOAD_BATCH):
                failed = [k for k, o in kv.mput(items[first:first + PRELOAD_BATCH]).items() if isinstance(o, Exception)]
                if failed:
                    raise ClusterError(f"preloading failed for {len(failed)} keys, e.g. {failed[0]!r}")
        log.info("preloaded %d keys at ALL", len(keys))
        return keys

    def missing_preloaded(self, preloaded):
        """The preloaded keys a QUORUM read does not return as written, after healing."""
        missing, items = [], list(preloaded)
        with self.cluster.client(level="QUORUM") as kv:
            for first in range(0, len(items), PRELOAD_BATCH):
                got = kv.mget(items[first:first + PRELOAD_BATCH])
                missing += [k.hex() for k in items[first:first + PRELOAD_BATCH]
                            if getattr(got.get(k), "value", None) != preloaded[k]]
        return missing

    def execute(self):
        preloaded = self.preload() if self.args.preload else {}
        stop = threading.Event()
        clients = [ChaosClient(n, self.cluster.nodes, self.keys, self.args.seed, self.clock, self.record, stop,
                          credentials=self.cluster.credentials)
                   for n in range(self.args.clients)]
        nemesis = Nemesis(self.cluster, self.kinds, self.args.max_down, self.args.seed, self.clock, self.record,
                          stop, hint_window=HINT_WINDOW)
        log.info("running %d clients for %.0f s with faults %s on %s hosts", len(clients), self.args.duration,
                 ",".join(self.kinds), self.cluster.hosts.name)
        for thread in clients + [nemesis]:
            thread.start()
        deadline = time.monotonic() + self.args.duration
        while not stop.wait(min(10.0, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                stop.set()
            log.info("%.0f s: %d operations, faults %s", self.clock(), len(self.history), nemesis.counts)
        for thread in clients + [nemesis]:
            thread.join(CALL_TIMEOUT + 30)
        self.heal()
        healed = time.monotonic()
        final = self.final_reads()
        converge_seconds = self.converge(healed)
        after = self.final_state()
        one_acked = [w for w in self.history if w.get("op") == "write" and w["outcome"] == "ok"
                     and w["level"] == "ONE"]
        findings = check(self.history, final)
        findings["preloaded_missing"] = self.missing_preloaded(preloaded) if preloaded else []
        return Report(self, nemesis, findings, final, converge_seconds, lost_writes(one_acked, after))

    def heal(self):
        if self.cluster.hosts.can_partition:
            self.cluster.hosts.heal()
        if "clock" in self.kinds:
            for node in self.cluster.nodes:
                self.cluster.skew(node.node_id, 0)
        for i, proc in self.cluster.procs.items():
            if i in self.cluster.left:   # decommissioned: it stays stopped
                continue
            if proc.poll() is None:
                self.cluster.resume(i)
            elif self.cluster.lost_data(i):   # wiped, not replaced yet
                self.cluster.replace(i, wait=False)
            else:
                self.cluster.restart(i, wait=False)
        for i in self.cluster.procs:
            if i not in self.cluster.left:
                self.cluster.wait_ready(i)
        self.cluster.wait_all_see_all()
        log.info("healed at %.1f s", self.clock())

    def final_reads(self):
        final = {}
        for n, key in enumerate(self.keys):
            deadline = time.monotonic() + 30
            while True:
                try:
                    members = self.cluster.members()
                    cell = self.cluster.call(members[n % len(members)].node_id, "get", key, LEVELS["QUORUM"]).cell
                    break
                except (ttypes.Unavailable, ttypes.TimedOut, NodeUnavailable, NodeFailed) as exc:
                    if time.monotonic() > deadline:
                        raise ClusterError(f"the final QUORUM read of {key!r} kept failing: {exc}") from None
                    time.sleep(0.2)
            final[key.hex()] = (cell.value.decode(), cell.timestamp) if cell else None
        return final

    def converge(self, healed):
        """Seconds from the end of healing (final reads included) until every replica holds the same
        cell for every key; None if that takes longer than --settle."""
        members = self.cluster.members()   # a key held by a node that is not its replica diverges too
        while time.monotonic() - healed < self.args.settle:
            if not divergent(analyze_newest(members, collect(members, self.cluster.credentials))):
                return round(time.monotonic() - healed, 2)
            time.sleep(0.25)
        return None

    def final_state(self):
        """{key hex: (value, timestamp)}: the newest cell any replica holds, after convergence (value None:
        a tombstone)."""
        members = self.cluster.members()
        reports = analyze_newest(members, collect(members, self.cluster.credentials))
        return {r.key.hex(): (r.newest.value.decode() if r.newest.value is not None else None, r.newest.timestamp)
                for r in reports if r.newest}


class Report:
    def __init__(self, run, nemesis, findings, final, converge_seconds, one_lost):
        self.run = run
        self.nemesis = nemesis
        self.findings = findings
        self.final = final
        self.converge_seconds = converge_seconds
        self.one_lost = one_lost

    @property
    def passed(self):
        return (not any(self.findings.values()) and self.converge_seconds is not None
                and self.nemesis.error is None)

    def write_history(self, path):
        with open(path, "w", encoding="utf-8") as f:
            for entry in self.run.history:
                f.write(json.dumps(entry) + "\n")
            f.write(json.dumps({"op": "final", "cells": self.final, "findings": self.findings}) + "\n")

    def print_summary(self, history_path):
        counts = summarize(self.run.history)
        lines = [
            f"chaos run: seed {self.run.args.seed}, {self.run.args.duration:.0f} s, {self.run.args.clients} clients, "
            f"{len(self.run.keys)} keys, hosts {self.run.cluster.hosts.name}",
            f"operations: {counts.get('writes', 0)} writes ({counts.get('deletes', 0)} of them deletes), "
            f"{counts.get('reads', 0)} reads; "
            f"ok {counts.get('ok', 0)}, failed {counts.get('failed', 0)}, unknown {counts.get('unknown', 0)}",
            f"acknowledged writes: {counts.get('acknowledged at QUORUM', 0)} at QUORUM, "
            f"{counts.get('acknowledged at ONE', 0)} at ONE",
            "faults: " + (", ".join(f"{k} {n}" for k, n in self.nemesis.counts.items()) or "none"),
            f"lost QUORUM writes: {len(self.findings['lost'])}",
            f"stale QUORUM reads: {len(self.findings['stale'])}",
            f"phantom reads: {len(self.findings['phantom'])}",
            f"preloaded keys (written at ALL before the faults) not read back at QUORUM: "
            f"{len(self.findings['preloaded_missing'])} of {self.run.args.preload}",
            f"out-of-order session writes: {len(self.findings['out_of_order'])}",
            "converged after healing (final QUORUM reads included): " + (
                f"{self.converge_seconds} s" if self.converge_seconds is not None
                                           else f"NO, replicas still differ after {self.run.args.settle:.0f} s"),
            f"ONE writes not in the converged state (not a failure: ONE promises less): {len(self.one_lost)}",
            f"history: {history_path}",
        ]
        if self.nemesis.error is not None:
            lines.append(f"the nemesis failed: {self.nemesis.error}")
        for kind, items in self.findings.items():
            for item in items[:5]:
                lines.append(f"  {kind}: {json.dumps(item)}")
        lines.append("PASS" if self.passed else "FAIL")
        print("\n".join(lines))
