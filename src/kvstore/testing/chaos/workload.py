"""Clients that write unique values, delete, and read them back, recording every operation.

Each operation is a dict: client, op (write/read), level, key (hex), value (None: a delete),
start/end (seconds since the run began), outcome, and what came back. Outcomes:
ok; failed, a definite error after which nothing was applied (Unavailable,
InvalidRequest, or a connection refused before the request left); unknown, a
timeout or a connection lost mid-call: a write may or may not have applied.

Each client is a session, as the client library's: every write carries the
newest timestamp the client has seen (in its writes' acknowledgements and in
what it read) as its floor, so its writes are stamped in the order it made
them whichever coordinator takes them; the checker verifies that they were.
"""
import random
import threading

from kvstore.core.errors import NodeFailed, NodeUnavailable
from kvstore.net.blocking import Connection
from kvstore_rpc import ttypes

CALL_TIMEOUT = 5.0
LEVELS = {"ONE": ttypes.ConsistencyLevel.ONE, "QUORUM": ttypes.ConsistencyLevel.QUORUM}


def chaos_keys(count):
    """Keys spread over the whole first-byte space, so every node owns some."""
    return [bytes([(i * 256 // count + 7) % 256]) + b"-chaos-%d" % i for i in range(count)]


class ChaosClient(threading.Thread):
    def __init__(self, number, nodes, keys, seed, clock, record, stop, credentials=None):
        """credentials: (user, password) every connection logs in with (the cluster's authentication is on)."""
        super().__init__(name=f"client-{number}", daemon=True)
        self._credentials = credentials
        self.number = number
        self._nodes = nodes
        self._keys = keys
        self._random = random.Random(seed * 1000 + number)
        self._clock = clock
        self._record = record
        self._stopping = stop
        self._connection = None
        self._written = 0
        self._newest = 0   # the session's newest timestamp seen: every write's floor

    def run(self):
        while not self._stopping.is_set():
            op = self._random.choice(("write", "write", "write", "delete", "read", "read", "read", "read"))
            level = self._random.choice(("ONE", "QUORUM"))
            self._one(op, level, self._random.choice(self._keys))
            self._stopping.wait(self._random.uniform(0, 0.01))
        if self._connection:
            self._connection.close()

    def _connect(self):
        for node in self._random.sample(self._nodes, len(self._nodes)):
            try:
                self._connection = Connection(node.host, node.port, connect_timeout=1.0,
                                              credentials=self._credentials)
                return node.node_id
            except NodeUnavailable:
                continue
        return None

    def _one(self, op, level, key):
        entry = {"client": self.number, "op": "read" if op == "read" else "write", "level": level, "key": key.hex()}
        if op == "write":
            self._written += 1
            entry["value"] = f"c{self.number}-{self._written}"
        elif op == "delete":
            entry["value"] = None
        entry["start"] = self._clock()
        if self._connection is None and self._connect() is None:
            entry.update(end=self._clock(), outcome="failed", error="no node answers")
            self._record(entry)
            self._stopping.wait(0.2)
            return
        try:
            if op == "write":
                result = self._connection.call("put", (key, entry["value"].encode(), LEVELS[level], 0, self._newest),
                                               CALL_TIMEOUT)
                entry.update(outcome="ok", timestamp=result.timestamp)
            elif op == "delete":
                result = self._connection.call("remove", (key, LEVELS[level], self._newest), CALL_TIMEOUT)
                entry.update(outcome="ok", timestamp=result.timestamp)
            else:
                result = self._connection.call("get", (key, LEVELS[level]), CALL_TIMEOUT)
                cell = result.cell
                entry.update(outcome="ok", read=cell.value.decode() if cell else None,
                             timestamp=cell.timestamp if cell else None)
            self._newest = max(self._newest, entry["timestamp"] or 0)
        except (ttypes.Unavailable, ttypes.InvalidRequest) as exc:
            entry.update(outcome="failed", error=exc.why)
        except ttypes.TimedOut as exc:
            entry.update(outcome="unknown", error=exc.why)
        except NodeFailed as exc:   # it took the call: a write may have been applied
            entry.update(outcome="unknown", error=str(exc))
        except NodeUnavailable as exc:
            entry.update(outcome="unknown" if exc.sent else "failed", error=str(exc))
            if self._connection.broken:
                self._connection = None
        entry["end"] = self._clock()
        self._record(entry)
