"""The client service (KVStore, on the client port): validate, convert types, delegate, map errors.

One method per IDL method, a coroutine on the node's loop where it waits for
replicas. Nothing here decides anything about replication; it only guards the
door (sizes, levels, missing fields) and translates. The calls between nodes
have a door of their own, on the peer port (internode.py).
"""
import asyncio

from kvstore.core import errors
from kvstore.core.clock import ClockOffsetError
from kvstore.core.config import MAX_ANSWER_BYTES, entry_bytes
from kvstore.core.consistency import parse_level
from kvstore.core.ring import REPLICATION_FACTOR
from kvstore.net.wire import CLIENT_ERRORS, key_outcome, read_result, to_idl, to_mutation, write_result
from kvstore_rpc import ttypes


MAX_BATCH_KEYS = 10_000      # keys in one multi_put or multi_get
MULTI_GET_READ_BYTES = 256 * 1024 * 1024   # the most a multi_get's round of reads could hold, at the value limit
MAX_SCAN_LIMIT = 10_000      # keys in one page of a scan
MAX_TTL_SECONDS = 20 * 365 * 24 * 3600   # Cassandra's cap on a TTL


class Handler:
    def __init__(self, node_id, membership, coordinator, detector, settings, ready):
        """membership: kvstore.cluster.membership.Membership (the ring, as it changes); ready: an asyncio.Event,
        set once the node's first heartbeat round is done and it has measured most of
        its peers' clocks (or waited half the request timeout for them); client requests wait for it."""
        self._node_id = node_id
        self._membership = membership
        self._coordinator = coordinator
        self._detector = detector
        self._settings = settings
        self._ready = ready

    # ---- client calls ----

    async def put(self, key, value, level, ttl_seconds=None, min_timestamp=None):
        with _CLIENT_ERRORS:
            await self._wait_until_ready()
            self._check_key(key)
            self._check_value(value)
            outcome = await self._coordinator.put(key, value, parse_level(level), _check_ttl(ttl_seconds),
                                            min_timestamp or 0)
            return write_result(outcome)

    async def get(self, key, level, min_timestamp=None):
        with _CLIENT_ERRORS:
            await self._wait_until_ready()
            self._check_key(key)
            return read_result(await self._coordinator.get(key, parse_level(level), min_timestamp or 0))

    async def remove(self, key, level, min_timestamp=None):
        with _CLIENT_ERRORS:
            await self._wait_until_ready()
            self._check_key(key)
            return write_result(await self._coordinator.delete(key, parse_level(level), min_timestamp or 0))

    async def expire(self, key, seconds, level, min_timestamp=None):
        with _CLIENT_ERRORS:
            await self._wait_until_ready()
            self._check_key(key)
            if seconds is None:
                raise errors.InvalidRequest("expire needs a number of seconds")
            seconds = seconds if seconds <= 0 else _check_ttl(seconds)   # <= 0 deletes, as in Redis
            found, outcome = await self._coordinator.expire(key, seconds, parse_level(level), min_timestamp or 0)
            return ttypes.ExpireResult(found, write_result(outcome) if outcome else None)

    async def ttl(self, key, level, min_timestamp=None):
        with _CLIENT_ERRORS:
            await self._wait_until_ready()
            self._check_key(key)
            return await self._coordinator.ttl(key, parse_level(level), min_timestamp or 0)

    async def multi_put(self, items, level, ttl_seconds=None, min_timestamp=None):
        with _CLIENT_ERRORS:
            items = self._check_batch(items)
            answer = sum(entry_bytes(item.key or b"", None) for item in items)
            if answer > MAX_ANSWER_BYTES:
                raise errors.InvalidRequest(f"a batch write of {len(items)} keys would answer {answer} bytes, over the "
                                            f"{MAX_ANSWER_BYTES}-byte limit of an answer: send fewer keys a call")
            level, ttl = parse_level(level), _check_ttl(ttl_seconds)

            def check(item):
                self._check_key(item.key)
                self._check_value(item.value)
            async def run(valid):
                return await self._not_ready(len(valid)) or await self._coordinator.put_many(
                    [(item.key, item.value) for item in valid], level, ttl, min_timestamp or 0)
            outcomes = await _per_key(items, check, run)
            return [key_outcome(ttypes.KeyWriteOutcome, item.key, outcome, write_result)
                    for item, outcome in zip(items, outcomes)]

    async def multi_get(self, keys, level, min_timestamps=None):
        """Keys are read a round at a time, as many as could together hold MULTI_GET_READ_BYTES (every replica's
        copy of a value at the value limit), until the answer is full: a request never holds more than that
        beyond its answer."""
        with _CLIENT_ERRORS:
            keys, level = self._check_batch(keys), parse_level(level)
            worst = REPLICATION_FACTOR * (self._settings.max_value_bytes + self._settings.max_key_bytes)
            per_round = max(1, min(MAX_BATCH_KEYS, MULTI_GET_READ_BYTES // worst))
            answer, size, read = [], 0, {}   # read: what each key read gave (a key asked twice is read once)
            for key in keys:
                if key not in read:
                    wanted = list(dict.fromkeys(k for k in keys[len(answer):] if k not in read))[:per_round]
                    read.update(zip(wanted, await self._read_round(wanted, level, min_timestamps or {})))
                outcome = read[key]
                size += entry_bytes(key or b"", getattr(getattr(outcome, "cell", None), "value", None))
                if answer and size > MAX_ANSWER_BYTES:
                    break   # the answer is full: the keys after this one are asked again (see the IDL)
                answer.append(key_outcome(ttypes.KeyReadOutcome, key, outcome, read_result))
            return answer

    async def _read_round(self, keys, level, min_timestamps):
        async def run(valid):
            return await self._not_ready(len(valid)) or await self._coordinator.get_many(valid, level, min_timestamps)
        return await _per_key(keys, self._check_key, run)

    async def scan(self, start, end, limit, level):
        with _CLIENT_ERRORS:
            await self._wait_until_ready()
            for bound in (start, end):
                if bound and len(bound) > self._settings.max_key_bytes:
                    raise errors.InvalidRequest(f"a scan bound of {len(bound)} bytes is over the key limit "
                                                f"of {self._settings.max_key_bytes} bytes")
            if limit is None or not 0 < limit <= MAX_SCAN_LIMIT:
                raise errors.InvalidRequest(f"the scan's limit must be from 1 to {MAX_SCAN_LIMIT}, not {limit}")
            items, resume = await self._coordinator.scan(start or b"", end or None, limit, parse_level(level))
            return ttypes.ScanResult([to_mutation(k, c) for k, c in items], resume)

    def _check_value(self, value):
        if value is None:
            raise errors.InvalidRequest("the value is missing")
        if len(value) > self._settings.max_value_bytes:
            raise errors.InvalidRequest(f"value of {len(value)} bytes is over the limit of "
                                        f"{self._settings.max_value_bytes} bytes (--max-value-bytes)")

    def _check_batch(self, items):
        if items is None:
            raise errors.InvalidRequest("the batch is missing")
        if len(items) > MAX_BATCH_KEYS:
            raise errors.InvalidRequest(f"a batch of {len(items)} keys is over the limit of {MAX_BATCH_KEYS}")
        return items

    async def _wait_until_ready(self):
        """Unavailable (a batch: for each key) if the node is not ready in time (see __init__)."""
        if self._ready.is_set():
            return
        try:
            await asyncio.wait_for(self._ready.wait(), self._settings.request_timeout)
        except TimeoutError:
            raise errors.Unavailable(0, 1, message=f"node {self._node_id} is still starting: it has "
                                     "not yet heard from its peers; try again, or another node") from None

    async def _not_ready(self, count):
        """None once the node is ready; else, for a batch's `count` keys, each key's Unavailable."""
        try:
            await self._wait_until_ready()
        except errors.Unavailable as exc:
            return [exc] * count
        return None

    def get_endpoints(self, key):
        with _CLIENT_ERRORS:
            self._check_key(key)
            return [self._node_info(node) for node in self._membership.placement.replicas_for(key)]

    def describe_ring(self):
        return [self._node_info(node) for node in self._membership.placement.nodes]

    def _node_info(self, node):
        state = self._membership.state
        return ttypes.NodeInfo(node.node_id, node.host, node.port, node.token, self._detector.is_up(node.node_id),
                               int(self._detector.offset(node.node_id) * 1_000_000), state.node_state(node.node_id),
                               state.epoch)

    def _check_key(self, key):
        check_key(key, self._settings.max_key_bytes)


def check_key(key, max_bytes):
    """InvalidRequest unless key is a key a node stores: not empty, at most max_bytes."""
    if not key:
        raise errors.InvalidRequest("the key must not be empty")
    if len(key) > max_bytes:
        raise errors.InvalidRequest(f"key of {len(key)} bytes is over the limit of {max_bytes} bytes")


def _check_ttl(ttl):
    if not ttl:
        return 0
    if not 0 < ttl <= MAX_TTL_SECONDS:
        raise errors.InvalidRequest(f"a TTL must be from 1 to {MAX_TTL_SECONDS} seconds, not {ttl}")
    return ttl


async def _per_key(entries, check, run):
    """One outcome per entry, in order: InvalidRequest for those check() refuses; for the others,
    what run(the valid entries) returns for each."""
    outcomes, valid = [None] * len(entries), []
    for index, entry in enumerate(entries):
        try:
            check(entry)
            valid.append(index)
        except errors.InvalidRequest as exc:
            outcomes[index] = exc
    for index, outcome in zip(valid, await run([entries[i] for i in valid])):
        outcomes[index] = outcome
    return outcomes


class _ClientErrors:
    """`with _CLIENT_ERRORS:` raises this store's errors as the IDL's. A class rather than a generator
    (contextlib.contextmanager): it is entered on every client call, and costs an eighth as much."""
    __slots__ = ()

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, traceback):
        if isinstance(exc, CLIENT_ERRORS):
            raise to_idl(exc) from None
        if isinstance(exc, ClockOffsetError):   # a session's floor from the future: refused, never believed
            raise ttypes.InvalidRequest(why=f"the session's timestamp is refused: {exc}") from None
        return False


_CLIENT_ERRORS = _ClientErrors()
