"""What a QUORUM get and a QUORUM put cost in the node's own Python, layer by layer, beside the loop floor's, in
one process.

The cluster benchmark measures a node's whole CPU per operation, and on a
shared 2-core machine most of it is the kernel's and the loop's (sockets,
wake-ups) and moves by tens of percent from run to run. Here each layer runs
alone on a uvloop loop, with stand-ins only for what would leave the process
(transports, and the far side of each internode call), so what remains is
the interpreter's work: the part of an operation that the store's code decides.

A get:
- client get: a client's get QUORUM on a node that holds the key, through
  the client port's connection (Inbound), the login gate, the handler and
  the coordinator, the local read from a real Storage replayed from a log;
  the two remote replicas answer a loop turn later through a stand-in.
- internode read: one of those remote reads as the coordinator makes it:
  RemoteReplica, its PeerChannel and PeerLink, the frame encoded, the
  answer decoded and called back.
- replica read: the replica's side of it, a replica_read_batch of one key
  through the peer port's connection and the internode handler.
- store get = client get + 2 x (internode read + replica read).
- floor get: the loop floor's coordinator and its 3 no-op replicas, the same
  get, framing included.

A put, the same layers: client put (the local write applied to the real
Storage, its append completed a loop turn later by a stand-in for the disk
worker), internode write, replica write (each call a newer cell, so each is
applied); and the disk append: one append through a real DiskWorker thread to
a real CommitLog that skips the fdatasync (the hand-off to the worker and
back, and the pwrite). Beside it, the hand-off alone: a queue to a thread
that does nothing and answers on the loop, the least any disk worker pays.
- store put = client put + 2 x (internode write + replica write)
  + 3 x disk append.
- floor put: the loop floor's put over no-op replicas, plus 3 hand-offs:
  what its durable replicas add in Python (each hands its fdatasync to a
  thread and is woken when it is done), without the disk.

Rounds take turns among the layers and the floor. Each figure is the fastest
round's (the least disturbed by the machine), in microseconds of process CPU
per operation; the ratio is the median of the rounds' ratios, each taken
between a store round and the floor round right after it.
"""

import statistics
import tempfile
import time
from pathlib import Path

import uvloop

from kvstore.core.tasks import Background
from kvstore.storage.commitlog import CommitLog
from kvstore.storage.store import Storage
from kvstore.testing.bench import layer_calls
from kvstore.testing.bench.durability import write_log
from kvstore.testing.bench.standins import KEYS, VALUE, DiskStandIn


async def _rounds(runs, calls, rounds):
    """{name: [microseconds of CPU per call of runs[name](), one per round]}. Rounds take turns among the
    runs, so the machine's drift falls on them alike; the loop turns between calls are counted."""
    for run in runs.values():
        for _ in range(max(1, calls // 10)):
            await run()
    samples = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            started = time.process_time()
            for _ in range(calls):
                await run()
            samples[name].append((time.process_time() - started) / calls * 1e6)
    return samples


async def _measure(storage, directory, calls, rounds):
    owned = []   # what the layers started, stopped when they are done
    opened = []  # the stand-in remote replicas, closed when they are done
    try:
        runs = {"client_get_us": await layer_calls.client_get(storage),
                "internode_read_us": await layer_calls.internode_read(opened),
                "replica_read_us": await layer_calls.replica_read(storage), "floor_get_us": layer_calls.floor("get"),
                "client_put_us": await layer_calls.client_put(storage),
                "internode_write_us": await layer_calls.internode_write(opened),
                "replica_write_us": await layer_calls.replica_write(storage),
                "disk_append_us": await layer_calls.disk_append(directory, owned),
                "handoff_us": layer_calls.handoff(owned), "floor_put_us": layer_calls.floor("put")}
        return await _rounds(runs, calls, rounds)
    finally:
        for replica in opened:
            await replica.close()
        for stop in owned:
            stop()


def measure_layers(calls=1000, rounds=25):
    """{figure: microseconds of CPU per operation} (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="kvstore-layers-") as tmp:
        write_log(Path(tmp) / "commit.log", KEYS, len(VALUE))
        storage = Storage(CommitLog(Path(tmp) / "commit.log"), DiskStandIn(), Background())
        storage.load()
        try:
            samples = uvloop.run(_measure(storage, tmp, calls, rounds))
        finally:
            storage.close()
    rounds = [dict(zip(samples, values)) for values in zip(*samples.values())]
    samples["store_get_us"] = [r["client_get_us"] + 2 * (r["internode_read_us"] + r["replica_read_us"])
                               for r in rounds]
    samples["store_put_us"] = [r["client_put_us"] + 2 * (r["internode_write_us"] + r["replica_write_us"])
                               + 3 * r["disk_append_us"] for r in rounds]
    samples["durable_floor_put_us"] = [r["floor_put_us"] + 3 * r["handoff_us"] for r in rounds]
    figures = {name: min(values) for name, values in samples.items()}
    figures["store_over_floor"] = statistics.median(store / floor for store, floor in
                                                    zip(samples["store_get_us"], samples["floor_get_us"]))
    figures["put_store_over_floor"] = statistics.median(store / floor for store, floor in
                                                        zip(samples["store_put_us"], samples["durable_floor_put_us"]))
    return figures


def table(figures):
    return "\n".join([
        "CPU of the node's own Python per get QUORUM, in one process (us, the fastest round's):",
        f"  client get (connection, gate, handler, coordinator, local read)  {figures['client_get_us']:7.1f}",
        f"  internode read, coordinator's side (channel, link), x2           {figures['internode_read_us']:7.1f}",
        f"  replica read, replica's side (connection, handler), x2           {figures['replica_read_us']:7.1f}",
        f"  store get = client get + 2 x (internode + replica)               {figures['store_get_us']:7.1f}",
        f"  loop floor get (coordinator and 3 no-op replicas)                {figures['floor_get_us']:7.1f}",
        f"  store / floor (median of the rounds' ratios)                     {figures['store_over_floor']:7.2f}x",
        "and per put QUORUM:",
        f"  client put (connection, gate, handler, coordinator, local write) {figures['client_put_us']:7.1f}",
        f"  internode write, coordinator's side (channel, link), x2          {figures['internode_write_us']:7.1f}",
        f"  replica write, replica's side (connection, handler, storage), x2 {figures['replica_write_us']:7.1f}",
        f"  disk append (to the disk worker and back, pwrite, no fsync), x3  {figures['disk_append_us']:7.1f}",
        f"  store put = client put + 2 x (internode + replica) + 3 x append  {figures['store_put_us']:7.1f}",
        f"  loop floor put (coordinator and 3 no-op replicas)                {figures['floor_put_us']:7.1f}",
        f"  hand-off to a thread and back (a durable replica's least), x3    {figures['handoff_us']:7.1f}",
        f"  durable floor put = floor put + 3 x hand-off                     {figures['durable_floor_put_us']:7.1f}",
        f"  store / durable floor (median of the rounds' ratios)             {figures['put_store_over_floor']:7.2f}x"])
