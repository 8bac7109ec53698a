"""The kvstore console's commands: python3 src/client.py [--node HOST:PORT] [--cluster FILE] ...

It talks to the cluster through kvstore.client.Client: one coordinator (the
one named, or a random live node of the cluster file), and the next live node
when that one dies (a note says so). Keys and values are typed and shown in
kvstore.core.notation: text as it is, quoted to include spaces ("my key"), and any
bytes in double quotes with escapes ("\\xff\\xfe"); what it prints can be typed
back. With piped input it prints no prompt, runs every line, and exits 1 if any
failed; on a terminal kvstore.tools.terminal runs it. It keeps a read-your-writes
session (`session off` turns it off).
"""
import argparse
import sys

from kvstore.tools import terminal
from kvstore.tools import login_options
from kvstore.core.config import DEFAULT_CLUSTER_FILE
from kvstore.client.client import CALL_TIMEOUT, Client, parse_address
from kvstore.core.config import read_cluster_file
from kvstore.core.consistency import Level, parse_level
from kvstore.tools.display import error_text, nodes, stamp_text, written_text
from kvstore.core.errors import ConfigError, InvalidRequest, KVStoreError, NodeUnavailable
from kvstore.core.notation import NotationError, show, split_words

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PAGE_SIZE = 20   # scan rows per page on a terminal, as cqlsh pages its results

HELP = """Commands (LEVEL is one, quorum or all; KEY and VALUE are text, quoted to include spaces: "my key";
any bytes in double quotes with escapes: "\\xff\\x00", "tab\\there", "\\"quoted\\""):
  put KEY VALUE [LEVEL] [ttl SECONDS]   write VALUE under KEY; with ttl it expires after SECONDS
  get KEY [LEVEL]                       read KEY
  delete KEY [LEVEL]                    delete KEY (writes a tombstone)
  expire KEY SECONDS [LEVEL]            make an existing KEY expire SECONDS from now (0 or less deletes it,
                                        as Redis EXPIRE)
  ttl KEY [LEVEL]                       seconds until KEY expires; -1: never; -2: no such key
  mput K1 V1 K2 V2 ... [LEVEL]          write many keys in one call (each on its own: not atomic)
  mget K1 K2 ... [LEVEL]                read many keys in one call
  scan START END [limit N] [LEVEL]      keys in [START, END) in byte order ("" for an open end);
                                        when more remain it prints the command for the next page
  consistency [LEVEL]                   show or set the default level (starts at ONE, as in cqlsh)
  session [on|off]                      read-your-writes session: on, off, or show
  endpoints KEY                         the nodes holding KEY's replicas (as nodetool getendpoints)
  help                                  this text
  exit, quit, Ctrl-D                    leave"""

LEVEL_NAMES = {level.name.lower().encode() for level in Level}


class CommandError(Exception):
    """A command the console could not run; the message is what the user reads."""


class Console:
    def __init__(self, client, out=sys.stdout, ask_more=None):
        """ask_more(): called between pages of a scan, False to stop (None: print every page)."""
        self.client = client
        self._out = out
        self._ask_more = ask_more

    # ---- commands ----

    def execute(self, line):
        """Run one command line; True if it succeeded (or was empty), False if it failed."""
        try:
            words = split_words(line)
        except NotationError as exc:
            print(f"Error: cannot read the line: {exc}", file=self._out)
            return False
        if not words:
            return True
        name, args = words[0].decode("utf-8", "replace").lower(), words[1:]
        command = getattr(self, f"cmd_{name}", None) if name.isidentifier() else None
        try:
            if command is None:
                raise CommandError(f"unknown command {show(words[0])}; type help for the list")
            return command(args) is not False
        except CommandError as exc:
            print(f"Error: {exc}", file=self._out)
        except NodeUnavailable as exc:
            lost = " The next command goes to another node." if exc.sent else ""   # lost mid-call
            print(f"Error: {exc}{lost}", file=self._out)
        except KVStoreError as exc:
            print(f"Error: {error_text(exc)}", file=self._out)
        except Exception as exc:   # noqa: BLE001 -- a bug of ours: said, and the console goes on
            print(f"Error: the console failed running this command ({type(exc).__name__}: {exc}); "
                  "please report it", file=self._out)
        return False

    def _print(self, text):
        print(text, file=self._out)

    def _parse_level(self, word):
        try:
            return parse_level(word.decode("utf-8", "replace") if isinstance(word, bytes) else word)
        except InvalidRequest as exc:
            raise CommandError(str(exc)) from None

    def _level(self, args, position):
        return self.client.level if len(args) <= position else self._parse_level(args[position])

    def _trailing_level(self, args):
        """(args without a last word naming a level, the level): for commands with a variable count."""
        if len(args) > 1 and args[-1].lower() in LEVEL_NAMES:
            return args[:-1], self._parse_level(args[-1])
        return args, self.client.level

    def cmd_put(self, args):
        ttl = None
        if len(args) >= 4 and args[-2].lower() == b"ttl":   # KEY VALUE [LEVEL] ttl N: a key may be named ttl
            ttl = _whole_number(args[-1], "ttl")
            args = args[:-2]
        if len(args) not in (2, 3):
            raise CommandError("usage: put KEY VALUE [one|quorum|all] [ttl SECONDS]")
        level = self._level(args, 2)
        written = self.client.put(args[0], args[1], level, ttl)
        expiry = f", expires in {ttl} s" if ttl else ""
        self._print(f"OK  [{written_text(written, level)}{expiry}]")

    def cmd_get(self, args):
        if len(args) not in (1, 2):
            raise CommandError("usage: get KEY [one|quorum|all]")
        level = self._level(args, 1)
        detail = self.client.get_detail(args[0], level)
        source = f"from {nodes(detail.answered)} at {level.name}"
        if detail.repaired:
            source += f", repaired {nodes(detail.repaired)}"
        if detail.value is None:
            self._print(f"(not found)  [{source}]")
        else:
            self._print(f"{show(detail.value.value)}  [{stamp_text(detail.value)}, {source}]")

    def cmd_delete(self, args):
        if len(args) not in (1, 2):
            raise CommandError("usage: delete KEY [one|quorum|all]")
        level = self._level(args, 1)
        self._print(f"OK  [deleted: tombstone {written_text(self.client.delete(args[0], level), level)}]")

    def cmd_expire(self, args):
        if len(args) not in (2, 3):
            raise CommandError("usage: expire KEY SECONDS [one|quorum|all]")
        seconds, level = _whole_number(args[1], "expire", lowest=None), self._level(args, 2)
        written = self.client.expire(args[0], seconds, level)
        if written is None:
            self._print("(not found)  [nothing to expire]")
        elif seconds <= 0:
            self._print(f"OK  [deleted: {written_text(written, level)}]")
        else:
            self._print(f"OK  [expires in {seconds} s, {written_text(written, level)}]")

    def cmd_ttl(self, args):
        if len(args) not in (1, 2):
            raise CommandError("usage: ttl KEY [one|quorum|all]")
        seconds = self.client.ttl(args[0], self._level(args, 1))
        self._print({-1: "-1  (the key never expires)", -2: "-2  (no such key)"}.get(seconds, str(seconds)))

    def cmd_mput(self, args):
        args, level = self._trailing_level(args)
        if not args or len(args) % 2:
            raise CommandError("usage: mput KEY VALUE [KEY VALUE ...] [one|quorum|all]")
        outcomes = self.client.mput([(args[i], args[i + 1]) for i in range(0, len(args), 2)], level)
        return self._print_outcomes(outcomes, lambda written: f"OK  [{written_text(written, level)}]")

    def cmd_mget(self, args):
        args, level = self._trailing_level(args)
        if not args:
            raise CommandError("usage: mget KEY [KEY ...] [one|quorum|all]")
        outcomes = self.client.mget(args, level)
        return self._print_outcomes(outcomes, lambda value: "(not found)" if value is None else
                                    f"{show(value.value)}  [{stamp_text(value)}]")

    def _print_outcomes(self, outcomes, describe):
        """One line per key; False (the command failed) if any key failed."""
        width = max(len(show(key, 40)) for key in outcomes)
        for key, outcome in outcomes.items():
            text = f"Error: {error_text(outcome)}" if isinstance(outcome, Exception) else describe(outcome)
            self._print(f"{show(key, 40):<{width}}  {text}")
        return not any(isinstance(o, Exception) for o in outcomes.values())

    def cmd_scan(self, args):
        limit = None
        for i, word in enumerate(args):
            if word.lower() == b"limit":
                if i + 1 == len(args):
                    raise CommandError("limit needs a number: scan START END [limit N] [one|quorum|all]")
                limit = _whole_number(args[i + 1], "limit")
                args = args[:i] + args[i + 2:]
                break
        if len(args) not in (2, 3):
            raise CommandError('usage: scan START END [limit N] [one|quorum|all]   ("" for an open end)')
        start, end, level = args[0], args[1] or None, self._level(args, 2)
        shown = 0
        while start is not None and (limit is None or shown < limit):
            page = PAGE_SIZE if limit is None else min(PAGE_SIZE, limit - shown)
            items, start = self.client.scan_page(start, end, page, level)
            for key, value in items:
                self._print(f"{show(key, 40)}  {show(value.value, 60)}  [{stamp_text(value)}]")
            shown += len(items)
            more = start is not None and (limit is None or shown < limit)
            if more and self._ask_more is not None and not self._ask_more():
                break
        counted = f"{shown} key{'s' if shown != 1 else ''}"
        if start is None:
            self._print(f"({counted})")
            return
        # The next page starts at the resume key: the same command from there continues the scan.
        rest = (f" limit {limit}" if limit else "") + (f" {args[2].decode()}" if len(args) == 3 else "")
        self._print(f"({counted}, more remain)  next page: scan {show(start)} {show(end or b'')}{rest}")

    def cmd_consistency(self, args):
        if not args:
            self._print(f"Current consistency level is {self.client.level.name}.")
            return
        self.client.level = self._parse_level(args[0])
        self._print(f"Consistency level set to {self.client.level.name}.")

    def cmd_session(self, args):
        if args and args[0].lower() in (b"on", b"off"):
            self.client.session = args[0].lower() == b"on"
            if not self.client.session:
                self.client.forget()
        elif args:
            raise CommandError("usage: session [on|off]")
        state = "on: reads must see this console's own writes" if self.client.session else "off"
        self._print(f"Read-your-writes session is {state}.")

    def cmd_endpoints(self, args):
        if len(args) != 1:
            raise CommandError("usage: endpoints KEY")
        for node in self.client.endpoints(args[0]):
            self._print(f"{node.host}:{node.port}  node {node.node_id}  {'up' if node.up else 'down'}")

    def cmd_help(self, args):
        self._print(HELP)


def _whole_number(word, what, lowest=1):
    """word as a whole number of at least `lowest` (None: any); its range in the IDL is checked when sent."""
    try:
        value = int(word)
    except ValueError:
        raise CommandError(f"{what} needs a whole number, not {show(word)}") from None
    if lowest is not None and value < lowest:
        raise CommandError(f"{what} needs a positive number, not {value}")
    return value


def cluster_addresses(cluster_file, preferred):
    try:
        return [(n.host, n.port) for n in read_cluster_file(cluster_file)]
    except ConfigError:
        if preferred is None:
            raise
        return [preferred]


def run_script(console, lines):
    failed = 0
    for line in lines:
        if line.strip().lower() in (b"exit", b"quit", "exit", "quit"):
            break
        if not console.execute(line):
            failed += 1
    return EXIT_FAILED if failed else EXIT_OK


def main(argv=None):
    p = argparse.ArgumentParser(prog="client.py", description="The kvstore console.")
    p.add_argument("--node", help="HOST:PORT of the coordinator (default: a random live node)")
    p.add_argument("--cluster", default=str(DEFAULT_CLUSTER_FILE),
                   help="the cluster file (default: data/cluster.txt, or $KVSTORE_DATA_DIR/cluster.txt)")
    p.add_argument("--level", default="one", type=str.lower, choices=sorted(n.decode() for n in LEVEL_NAMES),
                   help="the default consistency level (default: one, as in cqlsh; the consistency command changes it)")
    p.add_argument("--timeout", type=_positive_seconds, default=CALL_TIMEOUT, metavar="SECONDS",
                   help=f"how long to wait for a node to answer before giving up on it (default {CALL_TIMEOUT:g})")
    login_options.add_options(p)
    args = p.parse_args(argv)
    interactive = sys.stdin.isatty()
    try:
        preferred = parse_address(args.node) if args.node else None
        client = Client(cluster_addresses(args.cluster, preferred), preferred=preferred, level=args.level,
                        timeout=args.timeout, on_failover=lambda text: print(text, file=sys.stderr, flush=True),
                        watch=terminal.watch(args.timeout) if interactive else None,
                        **login_options.connect_options(args, args.cluster))
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.reconfigure(errors="backslashreplace")   # whatever a node's message holds, print it
    sys.stdin.reconfigure(errors="surrogateescape")     # any bytes typed reach the notation as they are
    if interactive:
        return terminal.run_interactive(client, Console)
    sys.stdout.reconfigure(line_buffering=True)  # a program driving us sees each answer as it comes
    with client:
        return run_script(Console(client), sys.stdin.buffer)


def _positive_seconds(text):
    value = float(text)
    if not 0 < value <= 24 * 3600:
        raise argparse.ArgumentTypeError(f"{text}: seconds, more than 0")
    return value
