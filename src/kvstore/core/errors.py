"""The errors kvstore raises, rooted in one class.

Each carries a message that names the cause and, where there is one, the fix.
The handler maps the client-facing ones to the IDL exceptions of the same name.
"""


class KVStoreError(Exception):
    """Root of every error kvstore raises on purpose."""


class InvalidRequest(KVStoreError):
    """The request itself is wrong: empty or oversized key, oversized value, unknown level."""


class Unavailable(KVStoreError):
    """Fewer replicas alive than the level needs; nothing was written or read."""

    def __init__(self, alive, needed, level_name=None, total=None, message=None):
        self.alive = alive
        self.needed = needed
        super().__init__(
            message or f"{alive} of {total} replicas alive, {level_name} needs {needed}")


class ClockOffset(Unavailable):
    """This node's clock is further from most of its peers' than the bound: it coordinates no writes."""

    def __init__(self, message):
        super().__init__(0, 0, message=message)


class TimedOut(KVStoreError):
    """Too few replicas answered before the deadline (or all that could answer failed)."""

    def __init__(self, message, acknowledged, needed):
        self.acknowledged = acknowledged
        self.needed = needed
        super().__init__(message)


class StaleRead(KVStoreError):
    """A read-your-writes read found nothing as new as the session's timestamp on any replica it reached."""

    def __init__(self, message, wanted, seen):
        self.wanted = wanted
        self.seen = seen
        super().__init__(message)


class NodeUnavailable(KVStoreError):
    """A peer could not be reached, or the connection broke mid-call."""

    def __init__(self, message, sent=True):
        # sent=False: the request never left, so it certainly was not applied.
        self.sent = sent
        super().__init__(message)


class ConnectFailed(NodeUnavailable):
    """The connection itself was refused or timed out: the request never left, and the peer is down."""

    def __init__(self, message):
        super().__init__(message, sent=False)


class NodeRefused(NodeUnavailable):
    """The node is up but refused the connection (at its connection limit); the request never left."""

    def __init__(self, message):
        super().__init__(message, sent=False)


class NodeFailed(KVStoreError):
    """A node took the call and failed inside it (a bug on its side, answered as Thrift's internal error): it
    is up, the connection is still good, and a write may or may not have been applied. Trying again at once
    will fail the same way."""


class StorageError(KVStoreError):
    """A replica could not make a write durable (disk full, I/O error)."""


class CorruptLogError(KVStoreError):
    """A log record failed its checksum somewhere other than a torn tail; start-up must stop."""

    def __init__(self, path, offset, detail):
        self.path = path
        self.offset = offset
        super().__init__(
            f"corrupt log {path} at offset {offset}: {detail}. "
            "Refusing to start rather than lose data silently. To start anyway, losing the damaged "
            "records (their keys come back from the other replicas by read repair), restart with "
            "--skip-corrupt-records; the damaged file is kept aside.")


class ConfigError(KVStoreError):
    """The cluster file or a setting is wrong."""


class AuthenticationFailed(KVStoreError):
    """A login with an unknown user or the wrong password."""


class Unauthorized(KVStoreError):
    """A call before login, or beyond the role of the connection's user."""
