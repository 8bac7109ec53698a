"""A node's command-line options, in one parser: the node reads its own with it, and ./server.sh
checks the options it is given for the nodes with it before it starts any."""
import argparse

from kvstore.core.config import DEFAULT_CLUSTER_FILE
from kvstore.core.config import MAX_VALUE_LIMIT, Settings

LOG_MAX_BYTES = 16 * 1024 * 1024
LOG_BACKUPS = 4


def parse_args(argv):
    """The node's options from argv; argparse exits 2 naming the problem when one is wrong."""
    defaults = Settings()
    p = argparse.ArgumentParser(prog="server.py", description="Run one kvstore node.")
    p.add_argument("--cluster", default=str(DEFAULT_CLUSTER_FILE),
                   help="the cluster file (default: data/cluster.txt)")
    p.add_argument("--id", type=int, required=True, help="this node's id in the cluster file")
    p.add_argument("--data-dir", help="this node's data directory (default: next to the cluster file, nodeID)")
    p.add_argument("--listen", help="address to bind (default: the node's host in the cluster file)")
    p.add_argument("--cluster-secret", metavar="FILE",
                   help="the cluster's secret, which peers prove to each other (default: cluster.secret beside the "
                        "cluster file; mode 0600)")
    p.add_argument("--max-value-bytes", type=_value_limit, default=defaults.max_value_bytes,
                   help=f"the largest value a client may write (default 15 MiB; at most {MAX_VALUE_LIMIT}, so that "
                        "stock Thrift clients, which read frames of up to 16,384,000 bytes, can read every value back)")
    p.add_argument("--request-timeout", type=float, default=defaults.request_timeout,
                   help="seconds a coordinator waits for replicas")
    p.add_argument("--heartbeat-interval", type=float, default=defaults.heartbeat_interval)
    p.add_argument("--hint-window", type=float, default=defaults.hint_window,
                   help="seconds a hint is kept before it is dropped (default 3 hours)")
    p.add_argument("--gc-grace-seconds", type=float, default=defaults.gc_grace,
                   help="how long a delete's tombstone is kept before compaction may drop it (default 10 days); "
                        "a replica down longer than this must be wiped before it rejoins")
    p.add_argument("--repair-interval", type=float, default=defaults.repair_interval, metavar="SECONDS",
                   help="seconds between automatic repairs of the ranges this node is the first replica of "
                        "(default 60; 0: none; never more than half of --gc-grace-seconds)")
    p.add_argument("--repair-rate-mb", type=float, default=defaults.repair_rate / 2**20, metavar="MB",
                   help="MiB a second a repair run by this node may send (default 4; 0: no bound)")
    p.add_argument("--replace", action="store_true",
                   help="this node lost its data: start it on an empty data directory, take writes at once, and "
                        "answer reads of each range only once it is synced from its other replicas "
                        "(./server.sh replace ID)")
    p.add_argument("--idle-timeout", type=float, default=defaults.idle_timeout)
    p.add_argument("--read-timeout", type=float, default=defaults.read_timeout,
                   help="seconds a client has to send a whole request once it began")
    p.add_argument("--max-connections", type=int, default=defaults.max_connections,
                   help="connections each of the node's two ports takes at once (default 512)")
    p.add_argument("--max-connections-per-host", type=int, default=defaults.max_connections_per_host,
                   help="client connections one remote address may hold at once (default 128)")
    p.add_argument("--max-unauthenticated-connections", type=int,
                   help="client connections that have not logged in, at most (default: an eighth of "
                        "--max-connections, 64): they never take the slots of those that have")
    p.add_argument("--admin-reserved-connections", type=int,
                   help="client connection slots that only an admin may log in to (default: a 64th of "
                        "--max-connections, 8), as PostgreSQL's superuser_reserved_connections")
    p.add_argument("--max-connections-per-user", type=int, default=defaults.max_connections_per_user,
                   help="client connections one user may hold logged in at once (default 128)")
    p.add_argument("--request-memory", type=int, default=defaults.request_memory, metavar="BYTES",
                   help="bytes that requests over 64 KiB being read may hold together, per port (default 128 MiB); "
                        "a request that finds no room is read, thrown away and answered Unavailable")
    p.add_argument("--auth", choices=("on", "off"), default="on",
                   help="on (the default): clients log in as a user of the users file; off: anyone who reaches "
                        "the client port may do anything (for experiments; logged as a warning)")
    p.add_argument("--users", metavar="FILE",
                   help="the users file (default: users beside the cluster file; managed by ./server.sh user)")
    p.add_argument("--insecure", action="store_true",
                   help="allow --auth off on an address other than loopback (refused otherwise, as Redis's "
                        "protected mode)")
    p.add_argument("--tls", action="store_true", help="TLS on the client port (clients then need --tls)")
    p.add_argument("--internode-tls", action="store_true",
                   help="mutual TLS on the peer port and on every call to peers (every node needs it)")
    p.add_argument("--tls-cert", metavar="FILE", help="this node's certificate (default: tls/node.pem beside the "
                   "cluster file, as ./server.sh tls makes it)")
    p.add_argument("--tls-key", metavar="FILE", help="its private key (default: tls/node.key)")
    p.add_argument("--ca", metavar="FILE", help="the CA that signs the nodes' certificates (default: tls/ca.pem)")
    p.add_argument("--commitlog-sync-period", type=_seconds, default=defaults.commitlog_sync_period, metavar="SECONDS",
                   help="0 (the default): every write is fsynced before it is acknowledged (concurrent writes share "
                        "the fsync). N > 0: acknowledge once written, fsync every N seconds, as Cassandra's "
                        "commitlog_sync: periodic; a write then survives a crash of the node, not of the machine")
    p.add_argument("--skip-corrupt-records", action="store_true",
                   help="start despite a corrupt log: skip the damaged records (reported; the file is kept aside)")
    p.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop",
                   help="the node's event loop: uvloop (default: libuv's, about 10%% less CPU a request here) or "
                        "Python's own asyncio loop")
    p.add_argument("--max-clock-offset", type=float, default=defaults.max_clock_offset, metavar="SECONDS",
                   help="the most two nodes' clocks may differ (default 0.5 s, as CockroachDB's): a node more "
                        "than half of it from most of its peers coordinates no writes; a cell or a session's "
                        "floor further ahead of this node's clock is refused")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--log-file", metavar="FILE",
                   help="log to FILE (mode 0600), rotated by size, instead of standard error (./server.sh gives "
                        "each node its node.log)")
    p.add_argument("--log-max-bytes", type=int, default=LOG_MAX_BYTES, metavar="BYTES",
                   help="rotate the log file when it reaches this size (default 16 MiB)")
    p.add_argument("--log-backups", type=int, default=LOG_BACKUPS, metavar="N",
                   help="rotated log files kept, FILE.1 to FILE.N (default 4): the log never takes more than "
                        "(N + 1) times --log-max-bytes")
    args = p.parse_args(argv)
    share = args.max_connections / defaults.max_connections   # the defaults scale with --max-connections
    if args.max_unauthenticated_connections is None:
        args.max_unauthenticated_connections = max(1, int(defaults.max_unauthenticated_connections * share))
    if args.admin_reserved_connections is None:
        args.admin_reserved_connections = int(defaults.admin_reserved_connections * share)
    limits = {"--max-connections": args.max_connections, "--max-unauthenticated-connections":
              args.max_unauthenticated_connections, "--max-connections-per-user": args.max_connections_per_user,
              "--log-max-bytes": args.log_max_bytes}
    for option, value in limits.items():
        if value < 1:
            p.error(f"{option} must be at least 1, not {value}")
    if args.repair_interval < 0 or args.repair_rate_mb < 0:
        p.error("--repair-interval and --repair-rate-mb must not be negative")
    args.repair_interval = min(args.repair_interval, args.gc_grace_seconds / 2)
    if args.log_backups < 0 or args.admin_reserved_connections < 0:
        p.error("--log-backups and --admin-reserved-connections must not be negative")
    if args.max_unauthenticated_connections + args.admin_reserved_connections >= args.max_connections:
        p.error(f"--max-connections ({args.max_connections}) must be more than --max-unauthenticated-connections "
                f"({args.max_unauthenticated_connections}) and --admin-reserved-connections "
                f"({args.admin_reserved_connections}) together: other users need slots too")
    return args


def settings_from(args):
    """The Settings of parsed arguments."""
    return Settings(max_value_bytes=args.max_value_bytes, request_timeout=args.request_timeout,
                    heartbeat_interval=args.heartbeat_interval, hint_window=args.hint_window,
                    gc_grace=args.gc_grace_seconds, idle_timeout=args.idle_timeout, read_timeout=args.read_timeout,
                    max_connections=args.max_connections, commitlog_sync_period=args.commitlog_sync_period,
                    max_connections_per_host=args.max_connections_per_host, request_memory=args.request_memory,
                    max_unauthenticated_connections=args.max_unauthenticated_connections,
                    admin_reserved_connections=args.admin_reserved_connections,
                    max_connections_per_user=args.max_connections_per_user,
                    max_clock_offset=args.max_clock_offset, repair_interval=args.repair_interval,
                    repair_rate=args.repair_rate_mb * 2**20)


def _value_limit(text):
    value = int(text)
    if not 1 <= value <= MAX_VALUE_LIMIT:
        raise argparse.ArgumentTypeError(f"{text}: bytes from 1 to {MAX_VALUE_LIMIT}; a larger value could not be "
                                         "read back by stock Thrift clients (16,384,000-byte frames)")
    return value


def _seconds(text):
    value = float(text)
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text}: seconds from 0 to 3600")
    return value
