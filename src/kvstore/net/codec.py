"""Thrift calls on the event loop: decode a request frame into its method and arguments, and encode the
answer, with the accelerated binary protocol.

The generated Processor calls its handler synchronously and writes the answer
itself, so it cannot wait for anything. Here a call is decoded into the
generated `*_args` struct, handed to the handler's method (which may return a
value, a coroutine awaited by the server, or a Later), and its outcome is
encoded as the generated `*_result`: the value, a declared exception in its
own field, or (as the generated code does) a TApplicationException:
INTERNAL_ERROR for a failure inside, UNKNOWN_METHOD for a call the service does
not have. The bytes on the wire are exactly what the generated Processor
writes.
"""
import inspect
import logging
import socket
import struct

from thrift.protocol import fastbinary
from thrift.protocol.TBinaryProtocol import TBinaryProtocol, TBinaryProtocolAccelerated
from thrift.Thrift import TApplicationException, TMessageType, TType
from thrift.protocol.TProtocol import TProtocolException
from thrift.transport.TTransport import TMemoryBuffer, TTransportException

log = logging.getLogger(__name__)

MAX_CONTAINER_LENGTH = 100_000   # items in one list or map of a request (hint batches are 100)
FRAME_LENGTH = struct.Struct("!i")   # what comes before every frame: its length
# What a connection or a frame that fails can raise: the connection's state is then unknown.
TRANSPORT_ERRORS = (TTransportException, TProtocolException, OSError, EOFError, ValueError)
_HEADER = struct.Struct("!ii")   # version and message type; the name's length
_SEQID = struct.Struct("!i")
VERSION_1, VERSION_MASK, TYPE_MASK = TBinaryProtocol.VERSION_1, TBinaryProtocol.VERSION_MASK, TBinaryProtocol.TYPE_MASK


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
        # One protocol object, its transport swapped for each message: only its limits and the accelerated
        # decoder are used.
        self._protocol = TBinaryProtocolAccelerated(TMemoryBuffer(), strictRead=True, string_length_limit=max_string,
                                                    container_length_limit=MAX_CONTAINER_LENGTH, fallback=False)

    def decode(self, payload):
        """(method name, sequence id, Method or None when unknown, its arguments in order). Raises ValueError
        (or what the decoder raises) on bytes that do not decode: the caller closes the connection."""
        name, kind, seqid, offset = read_header(payload)
        method = self.methods.get(name)
        if method is None or kind not in (TMessageType.CALL, TMessageType.ONEWAY):
            return name, seqid, None, ()
        args = method.args()
        self._protocol.trans = buffer_at(payload, offset)
        args.read(self._protocol)
        return name, seqid, method, [getattr(args, field) for field in method.fields]


class Later:
    """A call's outcome delivered by a callback: the server calls start(settle), and the work calls
    settle(error, result) once, in the turn its outcome is known (a future's done callbacks would run a turn
    later). For the hottest call, a replica's write: no task, no future."""
    __slots__ = ("start",)

    def __init__(self, start):
        self.start = start


def read_header(payload):
    """(name, message type, sequence id, where the body starts) of a strict binary-protocol message."""
    if len(payload) < 12:
        raise ValueError(f"a message of {len(payload)} bytes")
    version, length = _HEADER.unpack_from(payload)
    if version & VERSION_MASK != VERSION_1 or not 0 <= length <= len(payload) - 12:
        raise ValueError("not a strict binary-protocol message")
    name = payload[8:8 + length].decode("utf-8")
    seqid, = _SEQID.unpack_from(payload, 8 + length)
    return name, version & TYPE_MASK, seqid, 12 + length


def buffer_at(payload, offset):
    buffer = TMemoryBuffer(payload)
    buffer._buffer.seek(offset)   # the C decoder reads from the buffer's position
    return buffer


def message(name, kind, seqid, body):
    """A message: its header, then body encoded by the C accelerator."""
    encoded = name.encode("utf-8")
    return (_HEADER.pack(VERSION_1 | kind, len(encoded)) + encoded + _SEQID.pack(seqid)
            + fastbinary.encode_binary(body, [body.__class__, body.thrift_spec]))


def unknown_method(name, seqid):
    return _encode(name, TMessageType.EXCEPTION, seqid,
                   TApplicationException(TApplicationException.UNKNOWN_METHOD, f"Unknown function {name[:64]}"))


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
    if isinstance(body, TApplicationException):   # not a generated struct: written field by field
        protocol = TBinaryProtocolAccelerated(TMemoryBuffer())
        protocol.writeMessageBegin(name, kind, seqid)
        body.write(protocol)
        protocol.writeMessageEnd()
        return protocol.trans.getvalue()
    return message(name, kind, seqid, body)


def encode_frame(payload):
    """payload as one frame: its 4-byte length, then its bytes."""
    return FRAME_LENGTH.pack(len(payload)) + payload


def refusal_in(frame):
    """The message of a node's connection-limit refusal (a Thrift exception of type UNKNOWN) in frame, or None."""
    try:
        protocol = TBinaryProtocolAccelerated(TMemoryBuffer(frame))
        _, kind, _ = protocol.readMessageBegin()
        if kind != TMessageType.EXCEPTION:
            return None
        error = TApplicationException()
        error.read(protocol)
    except TRANSPORT_ERRORS:
        return None
    return error.message if error.type == TApplicationException.UNKNOWN else None


def error_text(exc):
    """A transport failure (a socket's or Thrift's) in words, for the error that names it."""
    if isinstance(exc, socket.timeout) or getattr(exc, "type", None) == TTransportException.TIMED_OUT:
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return getattr(exc, "message", None) or getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
