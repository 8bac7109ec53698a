"""The Thrift service: validate, convert types, delegate, map our errors to the IDL's.

One method per IDL method. Nothing here decides anything about replication;
it only guards the door (sizes, levels, missing fields) and translates.
"""
import contextlib
import logging

from kvstore import errors
from kvstore.consistency import parse_level
from kvstore.replicas import from_cell, to_cell, to_mutation
from kvstore_rpc import ttypes

log = logging.getLogger(__name__)


class Handler:
    def __init__(self, node_id, generation, ring, coordinator, storage, hints, detector, settings, ready):
        """ready: set once the node's first heartbeat round is done; client requests wait for it."""
        self._node_id = node_id
        self._generation = generation
        self._ring = ring
        self._coordinator = coordinator
        self._storage = storage
        self._hints = hints
        self._detector = detector
        self._settings = settings
        self._ready = ready

    # ---- client calls ----

    def put(self, key, value, level):
        self._wait_until_ready()
        with _client_errors():
            self._check_key(key)
            if value is None:
                raise errors.InvalidRequest("the value is missing")
            if len(value) > self._settings.max_value_bytes:
                raise errors.InvalidRequest(f"value of {len(value)} bytes is over the limit of "
                                            f"{self._settings.max_value_bytes} bytes (--max-value-bytes)")
            outcome = self._coordinator.put(key, value, parse_level(level))
            return ttypes.WriteResult(outcome.timestamp, outcome.acknowledged, outcome.hinted)

    def get(self, key, level):
        self._wait_until_ready()
        with _client_errors():
            self._check_key(key)
            outcome = self._coordinator.get(key, parse_level(level))
            return ttypes.ReadResult(to_cell(outcome.cell), outcome.answered, outcome.repaired)

    def _wait_until_ready(self):
        # is_set() reads the flag without the Event's lock, which every request would contend for.
        if not self._ready.is_set():
            self._ready.wait(self._settings.request_timeout)

    def get_endpoints(self, key):
        with _client_errors():
            self._check_key(key)
            return [self._node_info(node) for node in self._ring.replicas_for(key)]

    def describe_ring(self):
        return [self._node_info(node) for node in self._ring.nodes]

    def _node_info(self, node):
        return ttypes.NodeInfo(node.node_id, node.host, node.port, node.token, self._detector.is_up(node.node_id))

    def _check_key(self, key):
        if not key:
            raise errors.InvalidRequest("the key must not be empty")
        if len(key) > self._settings.max_key_bytes:
            raise errors.InvalidRequest(
                f"key of {len(key)} bytes is over the limit of {self._settings.max_key_bytes} bytes")

    # ---- between nodes ----

    def replica_write(self, mutation):
        with _replica_errors():
            key, cell = self._check_mutation(mutation)
            self._storage.apply(key, cell)

    def replica_read(self, key):
        with _replica_errors():
            self._check_key(key)
            return ttypes.ReadResult(to_cell(self._storage.get(key)), [self._node_id], [])

    def replica_write_batch(self, mutations):
        with _replica_errors():
            self._storage.apply_all([self._check_mutation(m) for m in mutations or []])

    def replica_read_batch(self, keys):
        with _replica_errors():
            for key in keys or []:
                self._check_key(key)
            return [ttypes.ReadResult(to_cell(self._storage.get(key)), [self._node_id], []) for key in keys or []]

    def deliver_hints(self, mutations):
        with _replica_errors():
            self._storage.apply_all([self._check_mutation(m) for m in mutations or []])

    def _check_mutation(self, mutation):
        if mutation is None or mutation.cell is None or mutation.cell.value is None \
                or mutation.cell.timestamp is None:
            raise errors.InvalidRequest("a mutation needs a key, a value and a timestamp")
        self._check_key(mutation.key)
        return mutation.key, from_cell(mutation.cell)

    def heartbeat(self, from_node):
        if from_node is not None and from_node >= 0:
            self._detector.mark_up(from_node)
        return ttypes.Heartbeat(self._node_id, self._generation)

    def dump(self, key):
        if key:
            cell = self._storage.get(key)
            items = [(key, cell)] if cell is not None else []
        else:
            items = self._storage.items()
        records, fsyncs = self._storage.log_counters
        return ttypes.NodeDump(self._node_id, [to_mutation(k, c) for k, c in items], self._hints.counts(),
                               self._storage.log_bytes, self._hints.bytes_on_disk, records, fsyncs)


@contextlib.contextmanager
def _client_errors():
    """Our errors become the IDL's; the message is the one the user reads."""
    try:
        yield
    except errors.InvalidRequest as exc:
        raise ttypes.InvalidRequest(why=str(exc)) from None
    except errors.Unavailable as exc:
        raise ttypes.Unavailable(why=str(exc), alive=exc.alive, needed=exc.needed) from None
    except errors.TimedOut as exc:
        raise ttypes.TimedOut(why=f"TimedOut: {exc}", acknowledged=exc.acknowledged, needed=exc.needed) from None


@contextlib.contextmanager
def _replica_errors():
    try:
        yield
    except errors.StorageError as exc:
        log.error("replica write failed: %s", exc)
        raise ttypes.StorageFailure(why=str(exc)) from None
    except errors.InvalidRequest as exc:
        raise ttypes.InvalidRequest(why=str(exc)) from None
