"""The interactive console: python3 src/client.py [--node HOST:PORT] [--cluster FILE]

It talks to one coordinator (the one named, or a random live node of the
cluster file). Keys and values are typed as text (UTF-8); quote them to include
spaces ("my key"). On a terminal it offers line editing and history; with
piped input it prints no prompt, runs every line, and exits 1 if any failed.
When its coordinator dies, the next command goes to another live node and a
note says so.
"""
import argparse
import datetime
import os
import random
import shlex
import sys

from kvstore import processes
from kvstore.config import read_cluster_file
from kvstore.consistency import parse_level
from kvstore.errors import ConfigError, InvalidRequest, NodeUnavailable
from kvstore.peers import Connection
from kvstore_rpc import ttypes

CALL_TIMEOUT = 15.0
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
HISTORY_FILE = os.path.expanduser("~/.kvstore_history")

HELP = """Commands (KEY and VALUE are text; quote them to include spaces):
  put KEY VALUE [one|quorum]   write VALUE under KEY
  get KEY [one|quorum]         read KEY
  consistency [one|quorum]     show or set the default level (starts at ONE, as in cqlsh)
  endpoints KEY                the nodes holding KEY's replicas (as nodetool getendpoints)
  help                         this text
  exit, quit, Ctrl-D           leave"""


class CommandError(Exception):
    """A command the console could not run; the message is what the user reads."""


class Console:
    def __init__(self, addresses, preferred=None, out=sys.stdout, note=sys.stderr, choose=random.choice):
        """addresses: [(host, port)] of the cluster's nodes; preferred: the one to try first."""
        self._addresses = list(addresses)
        if preferred and preferred not in self._addresses:
            self._addresses.insert(0, preferred)
        self._preferred = preferred
        self._out = out
        self._note = note
        self._choose = choose
        self.level = ttypes.ConsistencyLevel.ONE
        self._connection = None
        self._address = None

    # ---- connecting ----

    def _connect(self, avoid=None):
        candidates = [a for a in self._addresses if a != avoid]
        order = []
        if self._preferred and self._preferred != avoid:
            order.append(self._preferred)
        rest = [a for a in candidates if a not in order]
        while rest:
            pick = self._choose(rest)
            rest.remove(pick)
            order.append(pick)
        for host, port in order:
            try:
                self._connection = Connection(host, port, connect_timeout=1.0)
            except NodeUnavailable:
                continue
            self._address = (host, port)
            self._preferred = None  # after a failover, any live node will do
            return
        raise CommandError("no node of the cluster answers (tried " + ", ".join(f"{h}:{p}" for h, p in order) + ")")

    def _call(self, method, *args):
        if self._connection is not None and self._connection.peer_closed():
            lost = self._address
            self._connection = None
            self._connect(avoid=lost)
            self._say(f"node {lost[0]}:{lost[1]} is gone; now connected to {self._address[0]}:{self._address[1]}")
        if self._connection is None:
            self._connect()
        try:
            return self._connection.call(method, args, CALL_TIMEOUT)
        except NodeUnavailable as exc:
            if self._connection.broken:
                self._connection = None
            maybe = " The write may or may not have been applied." if method == "put" else ""
            raise CommandError(f"lost the coordinator during {method}: {exc}.{maybe} "
                               "The next command goes to another node.") from None

    def _say(self, text):
        print(text, file=self._note, flush=True)

    # ---- commands ----

    def execute(self, line):
        """Run one command line; True if it succeeded (or was empty), False if it failed."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            print(f"Error: cannot parse the line: {exc}", file=self._out)
            return False
        if not words:
            return True
        name, args = words[0].lower(), words[1:]
        command = getattr(self, f"cmd_{name}", None)
        try:
            if command is None:
                raise CommandError(f"unknown command {words[0]!r}; type help for the list")
            command(args)
        except CommandError as exc:
            print(f"Error: {exc}", file=self._out)
            return False
        except (ttypes.InvalidRequest, ttypes.Unavailable, ttypes.TimedOut) as exc:
            why = exc.why
            name = type(exc).__name__
            print(f"Error: {why if why.startswith(name) else f'{name}: {why}'}", file=self._out)
            return False
        return True

    def _level(self, args, position):
        if len(args) <= position:
            return self.level
        try:
            return int(parse_level(args[position]))
        except InvalidRequest as exc:
            raise CommandError(f"{exc}; use one or quorum") from None

    def cmd_put(self, args):
        if len(args) not in (2, 3):
            raise CommandError("usage: put KEY VALUE [one|quorum]")
        level = self._level(args, 2)
        result = self._call("put", args[0].encode(), args[1].encode(), level)
        line = f"OK  [timestamp {result.timestamp}, acknowledged by {_nodes(result.acknowledged)} at {_name(level)}]"
        if result.hinted:
            line += f"  hint kept for {_nodes(result.hinted)}"
        print(line, file=self._out)

    def cmd_get(self, args):
        if len(args) not in (1, 2):
            raise CommandError("usage: get KEY [one|quorum]")
        level = self._level(args, 1)
        result = self._call("get", args[0].encode(), level)
        source = f"from {_nodes(result.answered)} at {_name(level)}"
        if result.repaired:
            source += f", repaired {_nodes(result.repaired)}"
        if result.cell is None:
            print(f"(not found)  [{source}]", file=self._out)
        else:
            stamp = result.cell.timestamp
            print(f"{show_bytes(result.cell.value)}  [timestamp {stamp} ({show_time(stamp)}), {source}]",
                  file=self._out)

    def cmd_consistency(self, args):
        if not args:
            print(f"Current consistency level is {_name(self.level)}.", file=self._out)
            return
        self.level = self._level(args, 0)
        print(f"Consistency level set to {_name(self.level)}.", file=self._out)

    def cmd_endpoints(self, args):
        if len(args) != 1:
            raise CommandError("usage: endpoints KEY")
        for node in self._call("get_endpoints", args[0].encode()):
            print(f"{node.host}:{node.port}  node {node.node_id}  {'up' if node.up else 'down'}", file=self._out)

    def cmd_help(self, args):
        print(HELP, file=self._out)


def _name(level):
    return ttypes.ConsistencyLevel._VALUES_TO_NAMES.get(level, str(level))


def _nodes(ids):
    if not ids:
        return "no node"
    return ("node " if len(ids) == 1 else "nodes ") + ", ".join(str(i) for i in ids)


def show_bytes(data, limit=None):
    """Text if it is printable UTF-8, else 0x-prefixed hex; cut to limit characters with an ellipsis."""
    try:
        text = data.decode("utf-8")
        if not text.isprintable():
            raise UnicodeDecodeError("utf-8", data, 0, 1, "unprintable")
    except UnicodeDecodeError:
        text = "0x" + data.hex()
    if limit and len(text) > limit:
        text = text[:limit - 1] + "…"
    return text


def show_time(timestamp_us):
    moment = datetime.datetime.fromtimestamp(timestamp_us / 1e6, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def parse_address(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def cluster_addresses(cluster_file, preferred):
    try:
        return [(n.host, n.port) for n in read_cluster_file(cluster_file)]
    except ConfigError:
        if preferred is None:
            raise
        return [preferred]


def run_interactive(console):
    try:
        import readline  # line editing and history for input()
    except ImportError:
        readline = None
    if readline is not None:
        try:
            readline.read_history_file(HISTORY_FILE)
        except OSError:
            pass  # no history yet
    print("kvstore console; type help for the commands, exit or Ctrl-D to leave.")
    try:
        while True:
            try:
                line = input("kvstore> ")
            except EOFError:
                print()
                break
            except KeyboardInterrupt:
                print()
                continue
            if line.strip().lower() in ("exit", "quit"):
                break
            console.execute(line)
    finally:
        if readline is not None:
            try:
                readline.write_history_file(HISTORY_FILE)
            except OSError:
                pass
    return EXIT_OK


def run_script(console, lines):
    failed = 0
    for line in lines:
        if line.strip().lower() in ("exit", "quit"):
            break
        if not console.execute(line):
            failed += 1
    return EXIT_FAILED if failed else EXIT_OK


def main(argv=None):
    p = argparse.ArgumentParser(prog="client.py", description="The kvstore console.")
    p.add_argument("--node", help="HOST:PORT of the coordinator (default: a random live node)")
    p.add_argument("--cluster", default=str(processes.DEFAULT_DATA_DIR / "cluster.txt"),
                   help="the cluster file (default: data/cluster.txt)")
    args = p.parse_args(argv)
    try:
        preferred = parse_address(args.node) if args.node else None
        console = Console(cluster_addresses(args.cluster, preferred), preferred)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if sys.stdin.isatty():
        return run_interactive(console)
    sys.stdout.reconfigure(line_buffering=True)  # a program driving us sees each answer as it comes
    return run_script(console, sys.stdin)
