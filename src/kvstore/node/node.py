"""One node: the composition root. Builds every object from the cluster file and settings,
replays the logs, serves, announces itself, and shuts down cleanly on SIGTERM.

Before it reads or writes anything in its data directory, a node takes the directory's lock
(kvstore.storage.datadir) and holds it until it exits: a second process on the same directory
refuses to start, naming the pid that holds it. It reads the cluster secret (kvstore.net.peerauth)
first too: its peer port takes no call from a connection that has not proved it, and it proves it
to every peer it calls. No secret, or one others can read: exit 2, naming the fix.

Clients log in against the users file (kvstore.storage.users_file) unless the node is started with
--auth off, which it refuses on a non-loopback address without --insecure. --tls and
--internode-tls put TLS on the client and peer ports.

Exit codes: 0 clean stop, 2 bad configuration, 3 a corrupt log, 4 cannot listen,
5 the data directory is in use by another process.
"""
import asyncio
import logging
import logging.handlers
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kvstore.storage import datadir
from kvstore.net import codec
from kvstore.node import healing, loopcheck, topology
from kvstore.service.gate import Gate
from kvstore.service.admin import AdminCalls
from kvstore.core.clock import Clock
from kvstore.storage.clockfile import ClockFile
from kvstore.storage.commitlog import CommitLog
from kvstore.core.config import read_cluster_file
from kvstore.cluster.coordinator import Coordinator
from kvstore.core.errors import ConfigError, CorruptLogError
from kvstore.cluster.failure import FailureDetector
from kvstore.service.client_service import Handler
from kvstore.storage.diskworker import DiskWorker
from kvstore.cluster.handoff import HintDelivery
from kvstore.storage.hints import HintStore
from kvstore.service.peer_service import InternodeHandler
from kvstore.service.logins import LoginThrottle
from kvstore.net.server import LoopServer, SharedDoor
from kvstore.node.options import parse_args, settings_from
from kvstore.net.peerauth import read_secret, secret_path
from kvstore.cluster.replicas import LocalReplica
from kvstore.cluster.membership import Membership
from kvstore.service.ring_calls import RingCalls
from kvstore.cluster.range_trees import RangeTrees
from kvstore.storage.repair_history import RepairHistory
from kvstore.storage.sample import ByteSample
from kvstore.service.slots import ConnectionSlots
from kvstore.storage.store import Storage
from kvstore.core.tasks import Background
from kvstore.node.security import Security, security_from
from kvstore_rpc import Internode, KVStore

EXIT_OK, EXIT_CONFIG, EXIT_CORRUPT, EXIT_LISTEN, EXIT_IN_USE = 0, 2, 3, 4, 5
STOP_SECONDS = 10.0   # how long a stopping node lets the requests being served finish

log = logging.getLogger("kvstore.node")


def configure_logging(node_id, level, log_file=None, max_bytes=None, backups=0):
    """The node's log: standard error, or log_file rotated at max_bytes keeping `backups` old files, so that
    what clients make a node log never takes more than (backups + 1) * max_bytes of its disk."""
    handler = (logging.handlers.RotatingFileHandler(log_file, maxBytes=max_bytes, backupCount=backups)
               if log_file else logging.StreamHandler(sys.stderr))
    logging.basicConfig(handlers=[handler], level=level.upper(),
                        format=f"%(asctime)s node{node_id} %(levelname)s %(name)s: %(message)s")


def check_accelerator():
    try:
        from thrift.protocol import fastbinary  # noqa: F401
    except ImportError:
        log.warning("the Thrift C accelerator (thrift.protocol.fastbinary) did not load: "
                    "every request is decoded in pure Python, several times slower. "
                    "Reinstall thrift with a C compiler and Python headers present.")
        return False
    return True


def main(argv=None):
    args = parse_args(argv)
    os.umask(0o077)   # what the node writes (logs, hints, its directories) only its own user may read
    configure_logging(args.id, args.log_level, args.log_file, args.log_max_bytes, args.log_backups)
    try:
        nodes = read_cluster_file(args.cluster)
        me = next((n for n in nodes if n.node_id == args.id), None)
        if me is None:
            raise ConfigError(f"node {args.id} is not in {args.cluster}")
        secret = read_secret(args.cluster_secret or secret_path(args.cluster))
        security = security_from(args, args.listen or me.host)
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    settings = settings_from(args)
    data_dir = Path(args.data_dir or Path(args.cluster).resolve().parent / f"node{args.id}")
    try:
        lock = datadir.claim(data_dir)
    except datadir.DataDirInUse as exc:
        log.error("%s", exc)
        return EXIT_IN_USE
    loose = datadir.open_to_others(data_dir)
    if loose:
        log.warning("%s can be read by other users of this machine (%s): fix it with chmod -R go-rwx %s",
                    data_dir, ", ".join(loose[:5]) + (f" and {len(loose) - 5} more" if len(loose) > 5 else ""),
                    data_dir)
    datadir.write_pid_file(data_dir)
    try:
        return run(me, nodes, settings, secret, data_dir, args.listen or me.host, args.skip_corrupt_records, security,
                   args.event_loop, args.replace)
    finally:
        datadir.remove_pid_file(data_dir)
        lock.release()


def run(me, nodes, settings, secret, data_dir, listen_host, skip_corrupt=False, security=Security(),
        event_loop="uvloop", replace=False):
    check_accelerator()
    if settings.commitlog_sync_period:
        log.warning("commit log synced every %g s, not before each acknowledgement: a write acknowledged "
                    "since the last sync is lost if the machine fails", settings.commitlog_sync_period)
    reservation = ClockFile(data_dir)
    try:
        max_offset = int(settings.max_clock_offset * 1_000_000)
        clock = Clock(reservation=reservation,   # above every timestamp issued before a restart
                      max_offset=max_offset, ahead=max(1000, max_offset // 2))
        clock.reserve()
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    # A file-size limit (RLIMIT_FSIZE) must fail the write (EFBIG), not kill the node.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    if event_loop == "uvloop" and not loopcheck.enabled():   # the check needs asyncio's own debug mode
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        return asyncio.run(_serve(me, nodes, settings, secret, data_dir, listen_host, skip_corrupt, security, clock,
                                  replace), debug=loopcheck.enabled())
    finally:
        reservation.close()


async def _serve(me, nodes, settings, secret, data_dir, listen_host, skip_corrupt, security, clock, replace):
    """The node on its loop: replay, listen, announce, serve until SIGTERM or SIGINT, stop."""
    loop = asyncio.get_running_loop()
    fresh = not (data_dir / datadir.COMMIT_LOG_FILE).exists()   # new, or it lost its data (kvstore.cluster.replace)
    disk, background = DiskWorker(loop), Background()
    try:
        ring_file, state = topology.load(data_dir, nodes)
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    membership = Membership(me.node_id, state, ring_file, disk, settings.request_timeout, background)
    trees, history, sample = RangeTrees(membership.placement, me.node_id), RepairHistory(data_dir), ByteSample()
    storage = Storage(CommitLog(data_dir / datadir.COMMIT_LOG_FILE, sync_period=settings.commitlog_sync_period or None),
                      disk, background, gc_grace=settings.gc_grace, clock=clock, trees=trees,
                      horizon=lambda: repairs.horizon(), sample=sample)
    hints = HintStore(data_dir / "hints", settings.hint_window, disk, clock)
    try:
        history.load()
        storage.load(skip_corrupt, holds=trees.holds if ring_file.cleaned() else None)
        hints.load(skip_corrupt)
    except CorruptLogError as exc:
        log.error("%s", exc)
        return EXIT_CORRUPT
    disk.start()
    clock.save_later = lambda bound, done: _then(disk.run(clock.save_reservation, bound), done)
    checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="password-check")

    peer_tls_server, peer_tls_client = security.peer_tls or (None, None)
    peers, replicas = {}, {}
    ring = topology.Topology(me, membership, peers, replicas, settings, secret, peer_tls_client)
    peers.update(ring.peers_of(membership.placement))
    delivery = HintDelivery(hints, peers, settings.request_timeout * 5, background)
    detector = FailureDetector(me.node_id, peers, settings.heartbeat_interval, timeout=settings.connect_timeout,
                               on_alive=delivery.on_alive, on_clock=clock.heard, on_epoch=membership.heard)
    clock.peers = detector   # its offset from them bounds what it stamps, and judges expiry and hint windows
    clock.catching_up = fresh   # no reservation survived: stamp above what the peers hold (kvstore.cluster.replace)
    replicas.update({**peers, me.node_id: LocalReplica(me.node_id, storage, trees.readable)})
    coordinator = Coordinator(me.node_id, membership.placement, replicas, detector, hints, clock,
                              settings.request_timeout, background, trees.readable)
    generation = int(time.time() * 1e6)
    ready = asyncio.Event()
    # Two doors: clients on the client port, other nodes on the peer port; neither reaches the other's calls.
    # On the client port each connection has a gate of its own: who logged in, and what that user may call.
    handler = Handler(me.node_id, membership, coordinator, detector, settings, ready)
    repairs, sync_calls, replacement, sides = healing.build(me.node_id, trees, storage, history, disk, peers,
                                                            detector, clock, settings, data_dir)
    ring.follow(coordinator, trees, storage, detector, sides, lambda peer: healing.remote_side(peer, settings),
                background)
    ring_calls = RingCalls(me.node_id, membership, repairs, trees, storage)
    try:
        if not replacement.begin(replace, fresh, data_dir) and fresh and not membership.state.joining(me.node_id):
            await replacement.refuse_if_lost(data_dir, settings.connect_timeout * 2)
    except ConfigError as exc:
        log.error("%s", exc)
        for replica in replicas.values():
            await replica.close()
        await _close([], disk, storage, hints, checker)
        if fresh:   # leave the directory as found: without a commit log, `replace` knows it holds no data
            (data_dir / datadir.COMMIT_LOG_FILE).unlink(missing_ok=True)
        return EXIT_CONFIG
    admin = AdminCalls(me.node_id, storage, hints, repairs, sample)
    calls = {name: getattr(handler, name) for name in ("get", "ttl", "multi_get", "scan", "get_endpoints", "put",
                                                       "remove", "expire", "multi_put", "describe_ring")}
    calls.update(dump=admin.dump, compact=admin.compact, repair=admin.repair, repair_status=admin.repair_status,
                 byte_sample=admin.byte_sample,
                 **{name: getattr(ring_calls, name) for name in ("ring_state", "ring_apply", "ring_stream", "cleanup")})
    internode = InternodeHandler(me.node_id, generation, storage, hints, detector, settings, membership, clock,
                                 trees.readable)
    peer_door = SharedDoor({name: getattr(internode, name, None) or getattr(sync_calls, name, None)
                            or getattr(ring_calls, name) for name in codec.Service(Internode, 0).methods},
                           settings.idle_timeout)
    slots = ConnectionSlots(settings) if security.authenticator else None
    throttle = LoginThrottle()

    def open_gate(who):
        return Gate(calls, security.authenticator, settings.idle_timeout, who, checker, throttle, slots)
    servers = [LoopServer(listen_host, me.port, open_gate, settings, KVStore, tls=security.client_tls,
                          per_host_limit=settings.max_connections_per_host, slots=slots),
               LoopServer(listen_host, me.peer_port, lambda who: peer_door, settings, Internode, secret=secret,
                          tls=peer_tls_server)]
    for server, port in zip(servers, (me.port, me.peer_port)):
        try:
            await server.start()
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", listen_host, port, exc.strerror or exc)
            await _close(servers, disk, storage, hints, checker)
            return EXIT_LISTEN

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("serving clients on %s:%d%s and peers on port %d%s (data in %s, %d keys; authentication %s)",
             listen_host, me.port, " (TLS)" if security.client_tls else "", me.peer_port,
             " (TLS)" if peer_tls_server else "", data_dir, len(storage), "on" if security.authenticator else "off")
    loopcheck.watch(loop)
    background.spawn(storage.build_trees(), "build-hash-trees")
    storage.maybe_compact()
    await detector.start(background)  # announces this node: peers mark it up and deliver the hints they hold
    await ring.catch_up(settings.request_timeout / 2)   # a ring that changed while this node was down
    # Client requests wait for this round, so they never see peers as down at start, and until this node has
    # measured most of its peers' clocks, so that the first write it stamps is judged by them (kvstore.core.clock).
    clock_wait = settings.request_timeout / 2   # a request held this long still has half its deadline left
    if not await detector.clocks_measured(clock_wait):
        log.warning("most peers did not answer within %g s of starting: serving with this node's clock checked "
                    "against fewer of its peers' (or none): the writes it stamps are as far off as its clock is, "
                    "until heartbeats reach them", clock_wait)
    clock.catching_up = False
    ready.set()
    repairs.start_schedule(background)
    replacement.start(background)
    await stop.wait()
    return await shut_down(servers, detector, background, replicas, disk, storage, hints, checker, repairs)


async def shut_down(servers, detector, background, replicas, disk, storage, hints, checker, repairs,
                    timeout=STOP_SECONDS):
    """In order: stop taking requests and let those being served answer (the peer port too: a coordinator
    elsewhere may be waiting on this replica), stop heartbeats and repairs, close the links to the peers (what is still
    out on them fails, and is hinted), let the node's tasks finish (hints being stored, repairs, a
    compaction; hint delivery stops at its failed batch) or cancel them at the deadline, stop the disk worker
    once it has written what is queued, and last close the storage. Every task and thread is awaited or
    joined; one still running at the end is named."""
    log.info("stopping")
    deadline = time.monotonic() + timeout
    for server in servers:
        await server.stop(max(0.0, deadline - time.monotonic()))
    await detector.stop()
    await repairs.stop()   # a replace's pass too: its ranges not synced yet stay so, on disk
    for replica in replicas.values():   # calls still out fail now, and their hints are stored by the tasks below
        await replica.close()
    cancelled = await background.stop(max(0.0, deadline - time.monotonic()))
    if cancelled:
        log.warning("stopping: cancelled %d tasks still running: %s", len(cancelled), ", ".join(cancelled))
    await _close([], disk, storage, hints, checker)
    current = asyncio.current_task()
    tasks = [t.get_name() for t in asyncio.all_tasks() if t is not current]
    threads = [t.name for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
    if tasks or threads:
        log.warning("stopped, but %d tasks and %d threads are still running: %s", len(tasks), len(threads),
                    ", ".join(sorted(tasks + threads)))
    else:
        log.info("stopped; every thread joined and every task awaited")
    return EXIT_OK


def _then(future, done):
    """A future of future's error (None: it succeeded), done only once done(that error) has run: whoever awaits
    it sees what done() changed."""
    outer = future.get_loop().create_future()

    def finished(inner):
        error = asyncio.CancelledError() if inner.cancelled() else inner.exception()
        done(error)
        if not outer.done():
            outer.set_result(error)
    future.add_done_callback(finished)
    return outer


async def _close(servers, disk, storage, hints, checker):
    for server in servers:
        await server.stop(0)
    disk.stop()
    storage.close()
    hints.close()
    checker.shutdown(wait=True)
