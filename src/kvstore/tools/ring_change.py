"""./server.sh add | decommission ID | removenode ID | move ID TOKEN | ring resume | ring cancel: change the
ring while the cluster serves, one step (one epoch) at a time (kvstore.core.ring_state says each step's
invariant).

This tool drives a change; the nodes hold it. Each step is applied to every node of the old ring and the new
(ring_apply answers once no request the node planned with an older epoch can still run), and the next step
is taken only once every one of them answered: a node that does not (down, paused, cut off) stops the change
there, saying which, until `./server.sh ring resume` carries on from the step the nodes hold (after Ctrl-C
or a crash of this tool too) or `./server.sh ring cancel` goes back to the old ring. A removenode's node,
dead for good, is the one node not asked. Streaming is range sync run by each node that gains a range, from
the replicas losing it (kvstore.service.ring_calls), followed here with its progress. Once the new ring is
stable everywhere, every node drops what it no longer holds (cleanup); a decommissioned node is stopped.
The cluster file lists every node of either ring during a change, and the new ring after it.
"""
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from kvstore.core.config import NodeConfig, write_cluster_file
from kvstore.core.errors import ConfigError, InvalidRequest, KVStoreError
from kvstore.core.ring_state import STREAMING, RingState
from kvstore.storage.ring_file import RingFile
from kvstore.tools import processes
from kvstore.tools.heal import POLL_SECONDS, call, progress
from kvstore.tools.split import split_token

EXIT_OK, EXIT_FAILED = 0, 1
STEP_TIMEOUT = 60.0     # how long a step waits for a node that does not answer (restarting, say) before it stops
STREAM_TIMEOUT = 3600.0


class ChangeStopped(KVStoreError):
    """A step could not be taken; the message says why and what to run next."""


def add_parsers(sub):
    p = sub.add_parser("add", help="add a node to the running cluster (streams its ranges to it)")
    p.add_argument("--token", help="its token in hex (default: the one that best halves the most loaded range)")
    p.add_argument("--host", dest="node_host", help="its address (default: the first node's)")
    p.add_argument("--port", type=int, help="its client port (default: one above the highest in the cluster)")
    p.add_argument("--peer-port", type=int, help="its peer port (default: one above the highest)")
    p.add_argument("--no-start", action="store_true", help="do not start it here (it runs on another host: start "
                                                           "it there with the new cluster file, then `ring resume`)")
    for name, text in (("decommission", "hand a live node's ranges to the nodes that will own them, then stop it"),
                       ("removenode", "remove a node dead for good; the surviving replicas stream to the new owners")):
        sub.add_parser(name, help=text).add_argument("id", type=int)
    p = sub.add_parser("move", help="give a node a new token")
    p.add_argument("id", type=int)
    p.add_argument("token", help="the new token, in hex")
    p = sub.add_parser("ring", help="the ring change under way: show it, resume it, or cancel it")
    p.add_argument("action", choices=("show", "resume", "cancel"))


def cmd_add(cluster, args, start_node, out=sys.stdout):
    """start_node(cluster, id) -> True once the node serves (the launcher's)."""
    state, access = newest_state(cluster), cluster.access
    nodes = list(state.nodes)
    token = bytes.fromhex(args.token) if args.token else split_token(nodes, access, out)
    first = nodes[0]
    used = [n.node_id for n in state.all_nodes()] + [int(d.name[4:]) for d in cluster.data_dir.glob("node*")
                                                      if d.is_dir() and d.name[4:].isdigit()]
    node = NodeConfig(max(used) + 1, args.node_host or first.host,   # never the id of a node that left
                       args.port or max(n.port for n in state.all_nodes()) + 1, token,
                       args.peer_port or max(n.peer_port for n in state.all_nodes()) + 1)
    if any(n.token == token for n in nodes):
        raise ConfigError(f"token {token.hex()} is node {next(n.node_id for n in nodes if n.token == token)}'s")
    print(f"adding node {node.node_id} at {node.address} (peers call it on {node.host}:{node.peer_port}) with token "
          f"{token.hex()}", file=out)
    begun = begin(cluster, state, "add", node.node_id, nodes + [node], out, skip={node.node_id})
    if not args.no_start:   # it starts on the ring as it is now, not the cluster file's first epoch
        cluster.node_dir(node.node_id).mkdir(mode=0o700, parents=True, exist_ok=True)
        RingFile(cluster.node_dir(node.node_id)).save(begun)
    if args.no_start:
        print(f"start node {node.node_id} on {node.host} with the cluster file {cluster.cluster_file} (and the "
              "cluster's secret, users file and TLS files), then run ./server.sh ring resume", file=out)
        return EXIT_OK
    if not start_node(cluster, node.node_id):
        print(f"node {node.node_id} did not start; fix it and run ./server.sh ring resume (or ring cancel)", file=out)
        return EXIT_FAILED
    return drive(cluster, begun, out)


def cmd_decommission(cluster, args, out=sys.stdout):
    state = newest_state(cluster)
    _member(state, args.id)
    target = [n for n in state.nodes if n.node_id != args.id]
    return drive(cluster, begin(cluster, state, "decommission", args.id, target, out), out)


def cmd_removenode(cluster, args, out=sys.stdout):
    state = newest_state(cluster)
    node = _member(state, args.id)
    if _answers(node, cluster.access):
        raise ConfigError(f"node {args.id} is up: removenode is for a node dead for good; retire a live one with "
                          f"./server.sh decommission {args.id}")
    target = [n for n in state.nodes if n.node_id != args.id]
    return drive(cluster, begin(cluster, state, "removenode", args.id, target, out), out)


def cmd_move(cluster, args, out=sys.stdout):
    state = newest_state(cluster)
    node, token = _member(state, args.id), bytes.fromhex(args.token)
    if any(n.token == token for n in state.nodes):
        raise ConfigError(f"token {args.token} is already a node's")
    target = [n if n.node_id != args.id else NodeConfig(n.node_id, n.host, n.port, token, n.peer_port)
              for n in state.nodes]
    print(f"moving node {node.node_id} from token {node.token.hex()} to {token.hex()}", file=out)
    return drive(cluster, begin(cluster, state, "move", args.id, target, out), out)


def cmd_ring(cluster, args, start_node, out=sys.stdout):
    """start_node: as cmd_add's (a resumed add starts its node here when it is not running)."""
    state = newest_state(cluster)
    print(f"ring epoch {state.epoch}: " + (f"{state.kind} of node {state.subject}, at step {state.stage}"
                                           if state.changing else f"stable, {len(state.nodes)} nodes"), file=out)
    if args.action == "show" or (args.action == "cancel" and not state.changing):
        return EXIT_OK
    if not state.changing:   # a change whose tool stopped after its last step: its cleanup, again (idempotent)
        return drive(cluster, state, out, again=True)
    if args.action == "cancel":
        cancelled = state.cancel()
        _apply_all(cluster, cancelled, out, tolerate_down=True)
        write_cluster_file(cluster.cluster_file, list(cancelled.nodes))
        if state.kind == "add":
            processes.stop_node(cluster.node_dir(state.subject))
        print(f"cancelled: the ring is back to its {len(cancelled.nodes)} nodes (epoch {cancelled.epoch})", file=out)
        return EXIT_OK
    if state.kind == "add" and processes.find_node(cluster.node_dir(state.subject)) is None \
            and cluster.node_dir(state.subject).exists() and not start_node(cluster, state.subject):
        print(f"node {state.subject} did not start: fix it and resume again, or cancel", file=out)
        return EXIT_FAILED
    return drive(cluster, state, out, again=True)


def drive(cluster, state, out, again=False):
    """Take the change's remaining steps (again: apply the step the nodes hold first, to every node); the exit
    status."""
    try:
        if again:
            _apply_all(cluster, state, out)
        while state.changing:
            if state.stage == STREAMING:
                _stream(cluster, state, out)
            state = state.advance()
            _apply_all(cluster, state, out)
        _finish(cluster, state, out)
    except ChangeStopped as exc:
        print(f"stopped: {exc}", file=out)
        print("the change is kept where it is: ./server.sh ring resume carries on, ./server.sh ring cancel undoes it",
              file=out)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("\ninterrupted: ./server.sh ring resume carries on from the step the nodes hold", file=out)
        return EXIT_FAILED
    return EXIT_OK


def newest_state(cluster):
    """The newest RingState any node of the cluster file holds."""
    states = []
    for node in cluster.nodes():
        try:
            states.append(RingState.from_json(call(node, "ring_state", cluster.access)))
        except (KVStoreError, ConfigError):
            continue
    if not states:
        raise ConfigError("no node of the cluster answered: start it with ./server.sh first")
    return max(states, key=lambda s: s.epoch)


def begin(cluster, state, kind, subject, target, out, skip=()):
    begun = state.begin(kind, subject, target)
    print(f"{kind} of node {subject}: epoch {begun.epoch}, writes go to the old replicas and the new", file=out)
    try:
        _apply_all(cluster, begun, out, skip=skip)
    except ChangeStopped as exc:
        raise ConfigError(f"{exc}; the change began on some nodes: ./server.sh ring cancel undoes it") from None
    write_cluster_file(cluster.cluster_file, begun.all_nodes())
    return begun


def _apply_all(cluster, state, out, skip=(), tolerate_down=False):
    """Apply state on every node of either ring (but a removenode's, and skip), in parallel, each retried until
    it answers or STEP_TIMEOUT passes (ChangeStopped then, naming it; or, tolerate_down, a note)."""
    nodes = [n for n in state.all_nodes() if n.node_id not in skip
             and not (state.kind == "removenode" and n.node_id == state.subject)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        results = list(pool.map(lambda n: _apply_one(n, state, cluster.access, started + STEP_TIMEOUT), nodes))
    missing = [(n, why) for n, why in zip(nodes, results) if why]
    for node, why in missing:
        if not tolerate_down:
            raise ChangeStopped(f"node {node.node_id} did not take ring epoch {state.epoch} ({why})")
        print(f"note: node {node.node_id} did not answer ({why}); it takes the ring from its peers when it is back",
              file=out)
    print(f"epoch {state.epoch} ({state.stage}) on {len(nodes) - len(missing)} nodes "
          f"in {time.monotonic() - started:.1f} s", file=out)


def _apply_one(node, state, access, deadline):
    """None once node holds state (or newer); else why not, at the deadline."""
    while True:
        try:
            call(node, "ring_apply", access, state.to_json())
            return None
        except (KVStoreError, OSError) as exc:
            if time.monotonic() > deadline:
                return str(exc)
        time.sleep(POLL_SECONDS)


def _stream(cluster, state, out):
    """Every node that gains ranges syncs them from the replicas losing them; returns once all have, retrying a
    range that failed (a source restarting, its trees still being built) until STREAM_TIMEOUT."""
    placement = state.placement()
    gainers = sorted({i for _, (old, new) in placement.ranges() for i in new if i not in old})
    nodes = {n.node_id: n for n in state.all_nodes()}
    print(f"streaming: {len(gainers)} nodes gain ranges ({', '.join(f'node {i}' for i in gainers) or 'none'})",
          file=out)
    started, pending, statuses, shown, waiting = time.monotonic(), set(gainers), {}, 0.0, {}
    carried = {}   # cells each node received in streams that failed and were started again
    heard = {node_id: started for node_id in gainers}   # when each last answered
    healthy = dict(heard)   # when each last had a stream running or done without failures
    while pending:
        if time.monotonic() - started > STREAM_TIMEOUT:
            raise ChangeStopped(f"streaming did not finish within {STREAM_TIMEOUT:.0f} s")
        for node_id in sorted(pending):
            try:
                status = _stream_one(nodes[node_id], state, cluster.access, started, out)
            except InvalidRequest as exc:   # trees still building, another repair running: again shortly
                waiting[node_id] = str(exc)
                continue
            except KVStoreError as exc:
                if time.monotonic() - heard[node_id] > STEP_TIMEOUT:
                    raise ChangeStopped(f"node {node_id} stopped answering while it streamed ({exc})") from None
                waiting[node_id] = f"does not answer ({exc})"
                continue
            now = heard[node_id] = time.monotonic()
            if status is None:
                continue
            before = statuses.get(node_id)
            if before is not None and before.started != status.started:
                carried[node_id] = carried.get(node_id, 0) + (before.cells_in or 0)
            statuses[node_id] = status
            if status.running or not status.failed:
                healthy[node_id] = now
            elif now - healthy[node_id] > STEP_TIMEOUT:
                raise ChangeStopped(f"node {node_id} could not stream for {STEP_TIMEOUT:.0f} s: "
                                    + "; ".join(status.failed))
            if not status.running and not status.failed:
                pending.discard(node_id)
        if statuses and (time.monotonic() - shown >= 2.0 or not pending):
            print("streaming: " + progress(statuses.values(), time.monotonic() - started), file=out, flush=True)
            for node_id, why in sorted(waiting.items()):
                print(f"  node {node_id}: {why}", file=out)
            waiting.clear()
            shown = time.monotonic()
        if pending:
            time.sleep(POLL_SECONDS)
    moved = sum(s.cells_in or 0 for s in statuses.values()) + sum(carried.values())
    print(f"streaming done in {time.monotonic() - started:.1f} s: {moved} cells", file=out)


def _stream_one(node, state, access, started, out):
    """node's stream of this change: None when it is started now (none of this change ran there yet), else its
    RepairStatus; one that failed is started again (a source restarting, say: a sync run again sends only what
    is still missing) and its failed status returned, so the caller sees how long it keeps failing."""
    status = call(node, "repair_status", access)
    if status.kind != "stream" or status.started < _us(started):
        call(node, "ring_stream", access, state.epoch)
        return None
    if not status.running and status.failed:
        print(f"node {node.node_id}: " + "; ".join(status.failed) + "; streaming again", file=out)
        call(node, "ring_stream", access, state.epoch)
    return status


def _finish(cluster, state, out):
    """The new ring is every node's: each drops what it no longer holds; a decommissioned node stops."""
    dropped = {}
    for node in state.nodes:
        try:
            dropped[node.node_id] = call(node, "cleanup", cluster.access)
        except KVStoreError as exc:
            print(f"note: node {node.node_id} did not clean up ({exc}): it drops those keys when it starts", file=out)
    leaving = [n for n in cluster.nodes() if n.node_id not in {m.node_id for m in state.nodes}]
    for node in leaving:
        if processes.stop_node(cluster.node_dir(node.node_id)) is not None:
            print(f"node {node.node_id} left the ring and was stopped (its data stays in "
                  f"{cluster.node_dir(node.node_id)})", file=out)
    write_cluster_file(cluster.cluster_file, list(state.nodes))
    print(f"done: ring epoch {state.epoch}, {len(state.nodes)} nodes; cleanup dropped "
          + ", ".join(f"{count} keys on node {i}" for i, count in sorted(dropped.items())), file=out)


def _member(state, node_id):
    node = next((n for n in state.nodes if n.node_id == node_id), None)
    if node is None:
        raise ConfigError(f"node {node_id} is not in the ring")
    if len(state.nodes) <= 1:
        raise ConfigError("the ring's last node cannot leave it")
    return node


def _answers(node, access):
    try:
        call(node, "ring_state", access)
        return True
    except KVStoreError:
        return False


def _us(monotonic_start):
    """A monotonic moment as wall-clock microseconds (repair_status's `started`)."""
    return int((time.time() - (time.monotonic() - monotonic_start)) * 1e6)

