"""What the IDL's numbers hold, checked before a call is sent.

The generated code raises OverflowError (a traceback, from deep inside it) for
a number its type cannot hold, such as `ttl 999999999999` for an i32. Every
call a tool or the client library makes is checked here first: a number out of
range is the caller's mistake, raised as InvalidRequest naming the argument
and the range, and nothing is sent.
"""
from thrift.Thrift import TType

from kvstore.core.errors import InvalidRequest

BITS = {TType.BYTE: 8, TType.I16: 16, TType.I32: 32, TType.I64: 64}


def check_arguments(service, method, args):
    """InvalidRequest when one of args (as the generated send_METHOD takes them) is a number its IDL type
    cannot hold."""
    fields = [field for field in getattr(service, f"{method}_args").thrift_spec if field is not None]
    for (_, kind, name, *_rest), value in zip(fields, args):
        bits = BITS.get(kind)
        if bits is None or not isinstance(value, int):
            continue
        low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if not low <= value <= high:
            raise InvalidRequest(f"{name} must be a whole number from {low} to {high} (the IDL's "
                                 f"{bits}-bit type), not {value}")
