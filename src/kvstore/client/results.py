"""What the client library answers with: values, writes and read details (kvstore.client re-exports them)."""
from typing import NamedTuple, Optional


class Value(NamedTuple):
    """What get returns for a key that exists."""
    value: bytes
    timestamp: int        # microseconds since the epoch, given by the coordinator that wrote it
    expires_at: int = 0   # microseconds since the epoch; 0: never


class Written(NamedTuple):
    """What a write returns."""
    timestamp: int
    acknowledged: list    # node ids that had acknowledged when the coordinator answered
    hinted: list          # node ids that were down and get the write through a hint


class ReadDetail(NamedTuple):
    """get_detail's answer: the value (or None) and how the coordinator found it."""
    value: Optional[Value]
    answered: list
    repaired: list
