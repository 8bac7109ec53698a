"""Thrift calls on the event loop: decode a request frame into its method and arguments, and encode the
answer, with the accelerated binary protocol.

The generated Processor calls its handler synchronously and writes the answer
itself, so it cannot wait for anything. Here a call is decoded into the
generated `*_args` struct, handed to the handler's method (which may return a
value or a coroutine, awaited by the server), and its outcome is encoded as
the generated `*_result`: the value, a declared exception in its own field, or
(as the generated code does) a TApplicationException: INTERNAL_ERROR for a
failure inside, UNKNOWN_METHOD for a call the service does not have. The bytes
on the wire are exactly what the generated Processor writes.
"""
import inspect
import logging

from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
from thrift.Thrift import TApplicationException, TMessageType, TType
from thrift.transport.TTransport import TMemoryBuffer

log = logging.getLogger(__name__)

MAX_CONTAINER_LENGTH = 100_000   # items in one list or map of a request (hint batches are 100)


class Method:
    """One method of a service: how to read its arguments and write its result."""

    def __init__(self, service, name):
        self.name = name
        self.args = getattr(service, f"{name}_args")
        self.result = getattr(service, f"{name}_result")
        init = self.args.__dict__.get("__init__")   # the generated one, when the method takes arguments
        self.fields = list(inspect.signature(init).parameters)[1:] if init else []   # the Processor's order
        self.errors = [(spec[3][0], spec[2]) for spec in self.result.thrift_spec or () if spec
                       and spec[0] != 0 and spec[1] == TType.STRUCT]


class Service:
    """The methods of a generated service module, and the limits a request's decoding is held to."""

    def __init__(self, service, max_string):
        names = [name[:-len("_args")] for name in dir(service) if name.endswith("_args")]
        self.methods = {name: Method(service, name) for name in names}
        self._max_string = max_string

    def decode(self, payload):
        """(method name, sequence id, Method or None when unknown, its arguments in order). Raises what the
        protocol raises on bytes that do not decode (the caller closes the connection)."""
        protocol = TBinaryProtocolAccelerated(TMemoryBuffer(payload), strictRead=True,
                                              string_length_limit=self._max_string,
                                              container_length_limit=MAX_CONTAINER_LENGTH, fallback=False)
        name, kind, seqid = protocol.readMessageBegin()
        method = self.methods.get(name)
        if method is None or kind not in (TMessageType.CALL, TMessageType.ONEWAY):
            return name, seqid, None, ()
        args = method.args()
        args.read(protocol)
        protocol.readMessageEnd()
        return name, seqid, method, [getattr(args, field) for field in method.fields]


def unknown_method(name, seqid):
    return _encode(name, TMessageType.EXCEPTION, seqid,
                   TApplicationException(TApplicationException.UNKNOWN_METHOD, f"Unknown function {name}"))


def answer(method, seqid, value):
    result = method.result()
    result.success = value
    return _encode(method.name, TMessageType.REPLY, seqid, result)


def failure(method, seqid, exc, who=""):
    """The answer to a call that raised exc: in its declared field, else a TApplicationException."""
    for kind, field in method.errors:
        if isinstance(exc, kind):
            result = method.result()
            setattr(result, field, exc)
            return _encode(method.name, TMessageType.REPLY, seqid, result)
    if not isinstance(exc, TApplicationException):
        log.error("%s from %s failed inside", method.name, who, exc_info=exc)
        exc = TApplicationException(TApplicationException.INTERNAL_ERROR, "Internal error")
    return _encode(method.name, TMessageType.EXCEPTION, seqid, exc)


def _encode(name, kind, seqid, body):
    protocol = TBinaryProtocolAccelerated(TMemoryBuffer())
    protocol.writeMessageBegin(name, kind, seqid)
    body.write(protocol)
    protocol.writeMessageEnd()
    return protocol.trans.getvalue()
