"""python3 src/sim.py: how far the membership design carries past one machine, in a deterministic simulation.

Nodes are objects in one process; the network and the clock are simulated (an event queue: nothing sleeps),
and every fault comes from the seed, so a run is the same every time (FoundationDB's way of testing). What is
modelled is what the real nodes do about membership:

- failure detection: every node pings every other every `interval` (all-to-all heartbeats, as
  kvstore.cluster.failure does); a ping unanswered within `timeout` marks the peer down;
- a ring change step: the operator's tool applies the new epoch to every node (ring_apply), at most
  `tool_parallel` calls at once; each answer carries the node's epoch on every heartbeat too, and a node that
  hears of a newer epoch fetches the ring from that peer, one fetch at a time (kvstore.cluster.membership);
- each node handles one message at a time, `service` seconds each (its event loop), so a node with more
  messages a second than 1 / service falls behind: its answers leave once the loop gets to them, and the
  queueing shows in detection and propagation times (what a message changes takes effect as it arrives).

The figures: heartbeat messages a second per node (sent and received), the busiest loop's share of its time and
the live peers wrongly seen down (a loop that cannot keep up answers pings late), the worst time to notice a
crash, the
time for one step's epoch to reach every node through the tool and, with the tool reaching only one node,
through heartbeats alone, the fetches that took, and the busiest node's share of its loop.
"""
import argparse
import heapq
import json
import random
import sys

EXIT_OK = 0


class Sim:
    def __init__(self, nodes, seed, interval=0.5, timeout=1.0, latency=(0.0002, 0.001), service=0.0001, loss=0.0):
        self.rng = random.Random(seed)
        self.now, self._queue, self._seq = 0.0, [], 0
        self.interval, self.timeout, self.latency, self.service, self.loss = interval, timeout, latency, service, loss
        self.nodes = [SimNode(i, self) for i in range(nodes)]
        self.partitioned = set()   # node ids cut off from every other node
        self.messages = 0

    def at(self, when, action, *args):
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, action, args))

    def send(self, src, dst, kind, payload=None, leaving=None):
        """Deliver (kind, payload) from src to dst a network latency after `leaving` (default now), unless lost
        or cut off."""
        self.messages += 1
        self.nodes[src].sent += 1
        if self.loss and self.rng.random() < self.loss or src in self.partitioned or dst in self.partitioned:
            return
        when = (self.now if leaving is None else leaving) + self.rng.uniform(*self.latency)
        self.at(when, self.nodes[dst].receive, src, kind, payload)

    def run_until(self, end, stop=lambda: False):
        queue, pop = self._queue, heapq.heappop
        while queue and queue[0][0] <= end and not stop():
            self.now, _, action, args = pop(queue)
            action(*args)
        if not stop():
            self.now = max(self.now, end)

    def start(self):
        for node in self.nodes:   # heartbeat rounds start spread over one interval, as nodes start apart
            self.at(self.rng.uniform(0, self.interval), node.heartbeat_round)


class SimNode:
    def __init__(self, node_id, sim):
        self.id, self.sim = node_id, sim
        self.up = True
        self.epoch, self.fetching, self.fetches = 1, False, 0
        self.busy_until, self.busy, self.sent, self.received = 0.0, 0.0, 0, 0
        self.waiting = {}        # peer -> when the ping to it was sent (unanswered)
        self.down_seen = {}      # peer -> when this node marked it down
        self.wrongly_down = 0    # times it marked a peer down that was up
        self.epoch_at = {}       # epoch -> when this node adopted it

    def heartbeat_round(self):
        if not self.up:
            return
        if self.busy_until > self.sim.now:   # a busy loop gets to its timer late
            self.sim.at(self.busy_until, self.heartbeat_round)
            return
        for peer in range(len(self.sim.nodes)):
            if peer == self.id:
                continue
            sent = self.waiting.get(peer)
            if sent is not None and self.sim.now - sent > self.sim.timeout and peer not in self.down_seen:
                self.down_seen[peer] = self.sim.now
                self.wrongly_down += self.sim.nodes[peer].up   # a false alarm: that peer is up
            if sent is None or self.sim.now - sent > self.sim.timeout:
                self.waiting[peer] = self.sim.now
            self.sim.send(self.id, peer, "ping")
        self.sim.at(self.sim.now + self.sim.interval, self.heartbeat_round)

    def receive(self, src, kind, payload):
        if not self.up:
            return
        self.received += 1
        done = max(self.sim.now, self.busy_until) + self.sim.service   # one message at a time, on the node's loop
        self.busy_until, self.busy = done, self.busy + self.sim.service
        self.handle(src, kind, payload, done)

    def handle(self, src, kind, payload, done):
        """What a message does (at once) and the answer it gets (leaving when the loop is done with it)."""
        if kind == "ping":
            self.sim.send(self.id, src, "pong", self.epoch, leaving=done)
        elif kind == "pong":
            self.waiting.pop(src, None)
            self.down_seen.pop(src, None)
            self.heard(src, payload)
        elif kind == "fetch":
            self.sim.send(self.id, src, "ring", self.epoch, leaving=done)
        elif kind == "ring":
            self.fetching = False
            self.adopt(payload)
        elif kind == "apply":
            self.adopt(payload)
            self.sim.send(self.id, src, "applied", self.epoch, leaving=done)

    def heard(self, peer, epoch):
        """A heartbeat answer showed a newer epoch: fetch the ring from that peer, one fetch at a time."""
        if epoch > self.epoch and not self.fetching:
            self.fetching, self.fetches = True, self.fetches + 1
            self.sim.send(self.id, peer, "fetch")
            self.sim.at(self.sim.now + self.sim.timeout, self._fetch_timed_out)

    def _fetch_timed_out(self):
        self.fetching = False

    def adopt(self, epoch):
        if epoch > self.epoch:
            self.epoch = epoch
            self.epoch_at[epoch] = self.sim.now


class Tool(SimNode):
    """The operator's tool: ring_apply to every node, at most `parallel` calls at once; not a ring member."""

    def __init__(self, sim, parallel):
        super().__init__(len(sim.nodes), sim)
        self.parallel, self.acks, self._next = parallel, set(), 0
        sim.nodes.append(self)

    def apply_all(self, epoch, targets):
        self.epoch, self._targets = epoch, list(targets)
        for _ in range(self.parallel):
            self._send_next()

    def _send_next(self):
        if self._next < len(self._targets):
            self.sim.send(self.id, self._targets[self._next], "apply", self.epoch)
            self._next += 1

    def handle(self, src, kind, payload, done):
        if kind == "applied":
            self.acks.add(src)
            self._send_next()

    def heartbeat_round(self):
        pass


def measure(nodes, seed=1, interval=0.5, timeout=1.0, service=0.0001, tool_parallel=64, loss=0.0):
    """The figures of one cluster size (see the module docstring)."""
    sim = Sim(nodes, seed, interval, timeout, service=service, loss=loss)
    sim.start()
    warm = 2 * interval
    sim.run_until(warm)
    sent = sum(n.sent for n in sim.nodes)
    received = sum(n.received for n in sim.nodes)
    busy = [n.busy for n in sim.nodes]
    window = 2 * interval
    sim.run_until(warm + window)
    per_node = ((sum(n.sent for n in sim.nodes) - sent) + (sum(n.received for n in sim.nodes) - received)) \
        / nodes / window
    false_downs = sum(n.wrongly_down for n in sim.nodes)   # every node is up so far: each of these is wrong
    # over 1: more work came in the window than a loop can do in it (it queues)
    loop_share = max(n.busy - before for n, before in zip(sim.nodes, busy)) / window
    # a crash: how long until every live node has noticed
    victim = sim.rng.randrange(nodes)
    sim.nodes[victim].up, crashed = False, sim.now
    live = [n for n in sim.nodes if n.id != victim]
    sim.run_until(sim.now + 10 * (interval + timeout), stop=lambda: all(victim in n.down_seen for n in live))
    detect = max((n.down_seen.get(victim, float("inf")) for n in live), default=0) - crashed
    sim.nodes[victim].up = True
    # one step through the tool, to every live node
    tool = Tool(sim, tool_parallel)
    started = sim.now
    tool.apply_all(2, [n.id for n in live])
    sim.run_until(sim.now + 60, stop=lambda: len(tool.acks) == len(live))
    through_tool = sim.now - started
    # one step reaching one node only: heartbeats carry it to the rest
    fetches_before = sum(n.fetches for n in sim.nodes)
    started = sim.now
    live[0].adopt(3)
    sim.run_until(sim.now + 60, stop=lambda: all(n.epoch >= 3 for n in live))
    through_heartbeats = sim.now - started
    return {"nodes": nodes, "interval_s": interval, "service_us": round(service * 1e6),
            "heartbeat_msgs_per_s_per_node": round(per_node), "busiest_loop_share": round(loop_share, 3),
            "live_peers_seen_down": false_downs,
            "crash_noticed_by_all_s": round(detect, 3), "step_through_tool_s": round(through_tool, 3),
            "step_through_heartbeats_s": round(through_heartbeats, 3),
            "fetches_for_that_step": sum(n.fetches for n in sim.nodes) - fetches_before,
            "messages_simulated": sim.messages}


def heartbeat_cost(directory, calls=20_000):
    """Microseconds of a real node's CPU one heartbeat takes to answer (its peer port, a persistent connection
    proving the cluster secret), measured on a 2-node cluster of real processes: the service time to simulate."""
    import psutil
    from kvstore.net.blocking import Connection
    from kvstore.testing.localcluster import Cluster
    from kvstore.tools import processes
    from kvstore_rpc import Internode
    cluster = Cluster(directory, size=2, extra_args=("--repair-interval", "0"))
    try:
        cluster.start()
        node = cluster.nodes[0]
        process = psutil.Process(processes.find_node(cluster.node_dir(0)).pid)
        connection = Connection(node.host, node.peer_port, 5.0, service=Internode, secret=cluster.secret)
        try:
            before = sum(process.cpu_times()[:2])
            for _ in range(calls):
                connection.call("heartbeat", (1,), 5.0)
            used = sum(process.cpu_times()[:2]) - before
        finally:
            connection.close()
    finally:
        cluster.close()
    return used / calls * 1e6


def main(argv=None):
    p = argparse.ArgumentParser(prog="sim.py", description=__doc__.splitlines()[0])
    p.add_argument("--nodes", default="100,1000", help="cluster sizes, comma-separated (default 100,1000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--interval", type=float, default=0.5, help="heartbeat interval, seconds (the nodes' default)")
    p.add_argument("--service-us", type=float,
                   help="microseconds a node's loop spends on one message (default: a heartbeat's cost on a real node, "
                        "measured first)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.service_us is None:
        import tempfile
        with tempfile.TemporaryDirectory(prefix="kvstore-sim-") as tmp:
            args.service_us = heartbeat_cost(tmp)
        print(f"a heartbeat costs a real node {args.service_us:.0f} us of CPU to answer (measured)", file=sys.stderr)
    figures = [measure(int(n), args.seed, args.interval, service=args.service_us / 1e6) for n in args.nodes.split(",")]
    if args.json:
        print(json.dumps(figures, indent=2))
        return EXIT_OK
    for f in figures:
        print(f"{f['nodes']} nodes (heartbeat every {f['interval_s']} s, {f['service_us']} us a message): "
              f"{f['heartbeat_msgs_per_s_per_node']} heartbeat messages/s a node, busiest loop "
              f"{f['busiest_loop_share']:.0%} busy, {f['live_peers_seen_down']} live peers seen down; a crash noticed "
              f"by all in {f['crash_noticed_by_all_s']} s; one "
              f"step to every node through the tool in {f['step_through_tool_s']} s, through heartbeats alone in "
              f"{f['step_through_heartbeats_s']} s ({f['fetches_for_that_step']} fetches)")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
