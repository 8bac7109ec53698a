"""kvstore.client: the Python client library, for programs, the console and the inspector.

    from kvstore.client import Client
    with Client.from_cluster_file("data/cluster.txt") as kv:
        kv.put(b"user:1", b"ada", level="QUORUM", ttl=3600)
        print(kv.get(b"user:1"))          # Value(value=b'ada', timestamp=...) or None
        for key, value in kv.scan(b"user:", b"user;"):
            print(key, value.value)

credentials=(user, password) logs every connection in; from_cluster_file finds
them as the tools do (users.find_credentials). tls: an ssl.SSLContext.

It keeps one persistent connection to one node (any node coordinates any
request) and moves to the next live node when that one goes: a request that
never left is sent again elsewhere; a read whose connection broke mid-call is
retried elsewhere; a write whose connection broke mid-call is not (it may have
been applied) and raises NodeUnavailable saying so. A write a node refuses to
coordinate because its clock is off (ClockOffset: nothing was written) goes to
another node. At each connection it asks the node for the ring (describe_ring):
when the node's ring epoch is newer than any it has seen, its nodes are the
ones to move to from then on, so a client follows nodes added and retired.

Errors are raised as kvstore.core.errors types (InvalidRequest, Unavailable, TimedOut,
StaleRead, Unauthorized, AuthenticationFailed, NodeUnavailable, and NodeFailed when
a node fails inside a call: a bug on its side). Batches do not
raise per key: each key's outcome is its result or the exception it met.

Read-your-writes session (on by default): the client remembers, per key, the
newest timestamp it wrote or read and sends it with its reads (a coordinator that
cannot find a cell that new raises StaleRead instead of returning older data),
and the newest of all with its writes, which are stamped above it. forget() clears it.
"""
import contextlib
import random

from kvstore_rpc import ttypes

from kvstore.client.credentials import find_credentials
from kvstore.client.results import ReadDetail, Value, Written   # noqa: F401 -- part of this library's interface
from kvstore.core.config import DEFAULT_CLUSTER_FILE, read_cluster_file
from kvstore.core.consistency import Level, parse_level
from kvstore.core.errors import ClockOffset, ConfigError, ConnectFailed, NodeUnavailable
from kvstore.net.blocking import Connection
from kvstore.net.wire import IDL_CLIENT_ERRORS, from_idl, key_error

CALL_TIMEOUT = 15.0   # seconds a call may take before the client gives up on its node (timeout=)


class Client:
    def __init__(self, nodes, level=Level.ONE, session=True, timeout=CALL_TIMEOUT, connect_timeout=1.0,
                 preferred=None, on_failover=None, choose=random.choice, watch=None, credentials=None, tls=None):
        """nodes: [(host, port)] or ["host:port"]; level: the default consistency level (ONE, as cqlsh);
        timeout: seconds a call may wait for its node; preferred: the node to try first;
        on_failover(text): told when the client moves to another node; watch(address, method): a context
        manager entered around each call to a node (the console's note when a wait grows long);
        credentials: (user, password) every connection logs in with; tls: an ssl.SSLContext for TLS ports."""
        self._addresses = [parse_address(n) if isinstance(n, str) else tuple(n) for n in nodes]
        self._preferred = parse_address(preferred) if isinstance(preferred, str) else preferred
        if self._preferred and self._preferred not in self._addresses:
            self._addresses.insert(0, self._preferred)
        if not self._addresses:
            raise ConfigError("a client needs at least one node")
        self.level = parse_level(level)
        self.session = session
        self._seen = {}   # key -> the newest timestamp this session wrote or read
        self._newest = 0  # the newest of them all: the floor of the session's writes
        self.timeout = timeout
        self._connect_timeout = connect_timeout
        self._on_failover = on_failover or (lambda text: None)
        self._choose = choose
        self._watch = watch or (lambda address, method: contextlib.nullcontext())
        self._credentials, self._tls = credentials, tls
        self._connection, self.address = None, None
        self.role = None   # the role the node gave our login (None: not logged in)
        self.ring_epoch = 0   # the ring epoch of the nodes it knows: learned from describe_ring at each connection

    @classmethod
    def from_cluster_file(cls, path=None, **options):
        """A client for every node of a cluster file (default: the local cluster's, data/cluster.txt, or
        $KVSTORE_DATA_DIR/cluster.txt: the one ./server.sh made), logged in as users.find_credentials finds
        unless credentials= is given."""
        path = path or DEFAULT_CLUSTER_FILE
        if "credentials" not in options:
            options["credentials"] = find_credentials(path)
        return cls([(n.host, n.port) for n in read_cluster_file(path)], **options)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def use(self, address):
        """Send the next calls to the node at address ((host, port) or "host:port"); the session goes along."""
        self.close()
        self._preferred = parse_address(address) if isinstance(address, str) else tuple(address)

    def forget(self):
        """Clear the session's timestamps."""
        self._seen.clear()
        self._newest = 0

    # ---- single keys ----

    def put(self, key, value, level=None, ttl=None):
        """Write value under key; with ttl (seconds) it expires that long after the write. -> Written."""
        result = self._call("put", key, value, self._level(level), ttl or 0, self._write_floor(), write=True)
        return self._written(key, result)

    def get(self, key, level=None):
        """The key's Value, or None when it does not exist (never written, deleted or expired)."""
        return self.get_detail(key, level).value

    def get_detail(self, key, level=None):
        result = self._call("get", key, self._level(level), self._floor(key))
        return ReadDetail(self._value(key, result.cell), result.answered, result.repaired)

    def delete(self, key, level=None):
        """Write a tombstone for key. -> Written."""
        return self._written(key, self._call("remove", key, self._level(level), self._write_floor(), write=True))

    def expire(self, key, seconds, level=None):
        """Make an existing key expire `seconds` from now (0 or less deletes it). -> Written, or None when
        the key does not exist."""
        result = self._call("expire", key, seconds, self._level(level), self._floor(key), write=True)
        return self._written(key, result.written) if result.found else None

    def ttl(self, key, level=None):
        """Seconds until key expires; -1 when it never does; -2 when it does not exist (as Redis)."""
        return self._call("ttl", key, self._level(level), self._floor(key))

    def endpoints(self, key):
        """[NodeInfo] of the nodes holding key's replicas, in ring order."""
        return self._call("get_endpoints", key)

    def ring(self):
        """[NodeInfo] of every node, and whether the node we talk to sees it up."""
        return self._call("describe_ring")

    # ---- batches ----

    def mput(self, items, level=None, ttl=None):
        """Write many keys (a dict or (key, value) pairs), each at the level; not atomic across keys.
        -> {key: Written or the exception that key met}."""
        items = list(items.items() if isinstance(items, dict) else items)
        outcomes = self._call("multi_put", [ttypes.KeyValue(k, v) for k, v in items], self._level(level),
                              ttl or 0, self._write_floor(), write=True)
        return {o.key: key_error(o) or self._written(o.key, o.result) for o in outcomes}

    def mget(self, keys, level=None):
        """Read many keys. -> {key: Value, None (absent) or the exception that key met}."""
        keys, results, done = list(keys), {}, 0
        while done < len(keys):
            # A node answers only as many keys as fit in one answer, in order: ask again for the rest.
            rest = keys[done:]
            floors = {k: self._seen[k] for k in rest if k in self._seen} if self.session else {}
            outcomes = self._call("multi_get", rest, self._level(level), floors)
            if not outcomes:
                break
            results.update((o.key, key_error(o) or self._value(o.key, o.result.cell)) for o in outcomes)
            done += len(outcomes)
        return results

    # ---- scans ----

    def scan_page(self, start=b"", end=None, limit=100, level=None):
        """One page: ([(key, Value)], the key to resume from or None when the scan is done)."""
        result = self._call("scan", start, end or b"", limit, self._level(level))
        items = [(m.key, Value(m.cell.value, m.cell.timestamp, m.cell.expires_at or 0)) for m in result.items]
        return items, result.resume_key

    def scan(self, start=b"", end=None, page=100, level=None):
        """Every live (key, Value) with start <= key < end (end None: to the end), in byte order,
        fetched a page at a time."""
        while start is not None:
            items, start = self.scan_page(start, end, page, level)
            yield from items

    # ---- plumbing ----

    def _level(self, level):
        return int(self.level if level is None else parse_level(level))

    def _write_floor(self):
        """The newest timestamp this session wrote or read (0: none), sent with each write: the write is
        stamped above it, so the session's writes are ordered as it made them, through any nodes."""
        return self._newest if self.session else 0

    def _floor(self, key):
        """The session's timestamp for key (0: none), sent with a read so it sees this session's writes."""
        return self._seen.get(key, 0) if self.session else 0

    def _written(self, key, result):
        if self.session:
            self._seen[key] = max(self._seen.get(key, 0), result.timestamp)
            self._newest = max(self._newest, result.timestamp)
        return Written(result.timestamp, list(result.acknowledged or []), list(result.hinted or []))

    def _value(self, key, cell):
        if cell is None:
            return None
        if self.session:
            self._seen[key] = max(self._seen.get(key, 0), cell.timestamp)
            self._newest = max(self._newest, cell.timestamp)
        return Value(cell.value, cell.timestamp, cell.expires_at or 0)

    def _call(self, method, *args, write=False):
        """Call method on the current node, moving to another when it is gone (see the module doc)."""
        tried, why = set(), None
        while True:
            connection = self._current(tried, why)
            try:
                with self._watch(self.address, method):
                    return connection.call(method, args, self.timeout)
            except IDL_CLIENT_ERRORS as exc:
                error = from_idl(exc)
                if isinstance(error, ClockOffset) and set(self._addresses) - tried - {self.address}:
                    self._drop(connection)   # nothing was written: another node may take it
                    tried.add(self.address)
                    why = str(error)
                    continue
                raise error from None
            except NodeUnavailable as exc:
                self._drop(connection)
                if write and exc.sent:
                    raise NodeUnavailable(f"lost the coordinator {self._name(self.address)} during {method}: "
                                          f"{exc}. The write may or may not have been applied.") from None
                tried.add(self.address)
                why = str(exc)

    def _current(self, tried, why=None):
        if self._connection is not None and self._connection.peer_closed():  # it restarted or died
            self._drop(self._connection)
            tried.add(self.address)
            why = "it closed the connection"
        if self._connection is None:
            lost = self.address if tried else None
            self._connect(tried)
            if lost:
                self._on_failover(f"node {self._name(lost)} is gone; now connected to {self._name(self.address)}"
                                  + (f" ({why})" if why else ""))
        return self._connection

    def _connect(self, avoid):
        order = []
        if self._preferred and self._preferred not in avoid:
            order.append(self._preferred)
        rest = [a for a in self._addresses if a not in avoid and a not in order]
        while rest:
            order.append(rest.pop(rest.index(self._choose(rest))))
        stalled = None   # a node that took the connection but did not answer the login (paused, overloaded)
        for address in order:
            try:   # a refused login raises AuthenticationFailed: another node would refuse it too
                self._connection = Connection(*address, connect_timeout=self._connect_timeout,
                                              credentials=self._credentials, tls=self._tls,
                                              login_timeout=self.timeout)
                self.role = self._connection.role
            except ConnectFailed:   # down: the next one, quietly
                avoid.add(address)
                continue
            except NodeUnavailable as exc:
                avoid.add(address)
                stalled = stalled or (address, str(exc))
                continue
            self.address = address
            self._preferred = None  # after a failover, any live node will do
            self._learn_ring()
            if stalled:
                self._on_failover(f"node {self._name(stalled[0])} is gone; now connected to {self._name(address)} "
                                  f"({stalled[1]})")
            return
        raise NodeUnavailable("no node of the cluster answers (tried "
                              + ", ".join(self._name(a) for a in sorted(avoid)) + ")"
                              + (f"; {stalled[1]}" if stalled else ""), sent=False)

    def _learn_ring(self):
        """Follow the ring: a node that holds a newer epoch than the client has seen names every node of it, and
        those are the nodes to move to from now on (a node added since is used, one retired is not tried)."""
        try:
            nodes = self._connection.call("describe_ring", (), self.timeout)
        except (NodeUnavailable, *IDL_CLIENT_ERRORS):
            return
        epoch = max((n.ring_epoch or 0 for n in nodes), default=0)
        if epoch > self.ring_epoch:
            self.ring_epoch = epoch
            self._addresses = [(n.host, n.port) for n in nodes]

    def _drop(self, connection):
        connection.close()
        if connection is self._connection:
            self._connection = None

    @staticmethod
    def _name(address):
        return f"{address[0]}:{address[1]}" if address else "?"


def parse_address(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)
