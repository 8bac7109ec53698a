"""The one mapping between the IDL's types (kvstore_rpc.ttypes) and ours, in both directions.

The node answers with it (cells, results, errors as the IDL's exceptions), the client library and the tools
read with it (the IDL's exceptions as ours), and both sides check a call's numbers against their IDL types
with it before anything is sent. An error is recognised by its type and its fields, never by its message:
a node that will not coordinate because its clock is off says so in Unavailable.clock_offset, and the
message stays the one a user reads.
"""
import functools

from kvstore_rpc import ttypes
from thrift.Thrift import TType

from kvstore.core.cell import Cell
from kvstore.core.errors import ClockOffset, InvalidRequest, StaleRead, TimedOut, Unauthorized, Unavailable

BITS = {TType.BYTE: 8, TType.I16: 16, TType.I32: 32, TType.I64: 64}
# The errors a client call declares, in the field a batch's KeyWriteOutcome/KeyReadOutcome holds them in.
KEY_ERROR_FIELDS = {ttypes.InvalidRequest: "invalid", ttypes.Unavailable: "unavailable",
                    ttypes.TimedOut: "timed_out", ttypes.StaleRead: "stale"}
CLIENT_ERRORS = (InvalidRequest, Unavailable, TimedOut, StaleRead)   # ours that a client call answers as the IDL's
IDL_CLIENT_ERRORS = (*KEY_ERROR_FIELDS, ttypes.Unauthorized)


# ---- cells ----

def to_cell(cell):
    return None if cell is None else ttypes.Cell(value=cell.value, timestamp=cell.timestamp, expires_at=cell.expires)


def from_cell(cell):
    return None if cell is None else Cell(cell.value, cell.timestamp, cell.expires_at or 0)


def to_mutation(key, cell):
    return ttypes.Mutation(key=key, cell=to_cell(cell))


# ---- results (a coordinator's WriteOutcome and ReadOutcome) ----

def write_result(outcome):
    return ttypes.WriteResult(outcome.timestamp, outcome.acknowledged, outcome.hinted)


def read_result(outcome):
    return ttypes.ReadResult(to_cell(outcome.cell), outcome.answered, outcome.repaired)


def key_outcome(kind, key, outcome, to_result):
    """One key's outcome of a batch (kind: KeyWriteOutcome or KeyReadOutcome): its result, or its error in the
    IDL's field for that error."""
    if not isinstance(outcome, Exception):
        return kind(key, to_result(outcome))
    error = to_idl(outcome)
    return kind(key, **{KEY_ERROR_FIELDS[type(error)]: error})


# ---- errors ----

def to_idl(exc):
    """One of CLIENT_ERRORS as the IDL's exception; the message is the one the user reads."""
    if isinstance(exc, InvalidRequest):
        return ttypes.InvalidRequest(why=str(exc))
    if isinstance(exc, Unavailable):
        return ttypes.Unavailable(why=str(exc), alive=exc.alive, needed=exc.needed,
                                  clock_offset=True if isinstance(exc, ClockOffset) else None)
    if isinstance(exc, TimedOut):
        return ttypes.TimedOut(why=str(exc), acknowledged=exc.acknowledged, needed=exc.needed)
    if isinstance(exc, StaleRead):
        return ttypes.StaleRead(why=str(exc), wanted=exc.wanted, seen=exc.seen)
    raise TypeError(f"{type(exc).__name__} has no IDL exception")


def from_idl(exc):
    """One of IDL_CLIENT_ERRORS as ours, with the message the node gave."""
    if isinstance(exc, ttypes.InvalidRequest):
        return InvalidRequest(exc.why)
    if isinstance(exc, ttypes.Unavailable):
        if exc.clock_offset:
            return ClockOffset(exc.why)
        return Unavailable(exc.alive, exc.needed, message=exc.why)
    if isinstance(exc, ttypes.TimedOut):
        return TimedOut(exc.why, exc.acknowledged, exc.needed)
    if isinstance(exc, ttypes.Unauthorized):
        return Unauthorized(exc.why)
    if isinstance(exc, ttypes.StaleRead):
        return StaleRead(exc.why, exc.wanted, exc.seen)
    raise TypeError(f"{type(exc).__name__} is not an error of a client call")


def key_error(outcome):
    """Ours of the error one key of a batch met, or None."""
    for field in KEY_ERROR_FIELDS.values():
        error = getattr(outcome, field, None)
        if error is not None:
            return from_idl(error)
    return None


# ---- a call's arguments ----

@functools.lru_cache(maxsize=None)
def arity(service, method):
    """How many arguments method of the generated service module takes."""
    spec = getattr(service, f"{method}_args").thrift_spec
    return sum(1 for field in spec if field is not None)


def check_arguments(service, method, args):
    """InvalidRequest when one of args (as the generated send_METHOD takes them) is a number its IDL type
    cannot hold: the generated code would raise OverflowError from deep inside, and send nothing."""
    fields = [field for field in getattr(service, f"{method}_args").thrift_spec if field is not None]
    for (_, kind, name, *_rest), value in zip(fields, args):
        bits = BITS.get(kind)
        if bits is None or not isinstance(value, int):
            continue
        low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if not low <= value <= high:
            raise InvalidRequest(f"{name} must be a whole number from {low} to {high} (the IDL's "
                                 f"{bits}-bit type), not {value}")
