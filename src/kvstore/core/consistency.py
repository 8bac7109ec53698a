"""Consistency levels and how many replica answers each one waits for."""
import enum

from kvstore.core.errors import InvalidRequest


class Level(enum.IntEnum):
    ONE = 1
    QUORUM = 2
    ALL = 3


def parse_level(value):
    """A Level from its IDL number or its name (any case); InvalidRequest otherwise."""
    try:
        if isinstance(value, str):
            return Level[value.strip().upper()]
        return Level(value)
    except (KeyError, ValueError):
        if isinstance(value, str):
            raise InvalidRequest(f"unknown consistency level {value[:20]!r}: use one, quorum or all") from None
        numbers = ", ".join(f"{level.value} ({level.name})" for level in Level)
        raise InvalidRequest(f"unknown consistency level {value!r}: the IDL's levels are {numbers}") from None


def block_for(level, replication_factor):
    """Replica answers needed before the coordinator may answer."""
    if level is Level.ONE:
        return 1
    if level is Level.ALL:
        return replication_factor
    return replication_factor // 2 + 1
