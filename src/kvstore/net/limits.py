"""What one port lets its connections cost, and how it says no: the budget of bytes that large frames being
read may hold together, the refusal a connection over a limit gets (a frame any Thrift client raises as a
TApplicationException, then an orderly close), and the answer to a frame over the limit. Used by the node's
server (server.py and connection.py), the clients' connections, and the benchmark's floors."""
import logging
import socket

from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import HARD_MAX_FRAME_SIZE, TMemoryBuffer

from kvstore.net.codec import encode_frame

log = logging.getLogger(__name__)

# What a client or a tool reads from a node: answers come from our own nodes, and a dump of a large replica
# may be big.
CLIENT_MAX_FRAME = HARD_MAX_FRAME_SIZE
CLIENT_MAX_CONTAINER = 100_000_000


class LoopFrameBudget:
    """Bytes that large frames being read may hold, summed over a port's connections (on the loop)."""

    def __init__(self, limit):
        self.limit = limit
        self.held = 0

    def reserve(self, amount):
        if self.held + amount > self.limit:
            return False
        self.held += amount
        return True

    def release(self, amount):
        self.held -= amount


def refusal_frame(message):
    """A framed Thrift exception message that any Thrift client, whatever it called, raises as a
    TApplicationException of type UNKNOWN carrying `message`."""
    buffer = TMemoryBuffer()
    protocol = TBinaryProtocol(buffer)
    protocol.writeMessageBegin("", TMessageType.EXCEPTION, 0)
    TApplicationException(TApplicationException.UNKNOWN, message).write(protocol)
    protocol.writeMessageEnd()
    return encode_frame(buffer.getvalue())


def refuse(sock, frame):
    """Send the refusal (unless None), then close without a reset: what the client sent is drained first, so
    the close is an orderly end and the client reads the refusal before it. Never blocks the accepting thread."""
    try:
        sock.setblocking(False)
        if frame is not None:
            sock.send(frame)   # a few hundred bytes: an empty socket buffer always takes them
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(1 << 16):
            pass
    except OSError:
        pass   # nothing more to read (BlockingIOError), or the client is already gone
    finally:
        sock.close()


def too_large_answer(service, settings, head, length, who):
    """The answer to a request too large to read, from its first bytes `head`: its call's InvalidRequest,
    naming the limits (TApplicationException for a call that has none); None when head is no message."""
    why = (f"a request of {length} bytes is over this node's limit of {settings.max_frame_bytes} bytes "
           f"(a value may be at most {settings.max_value_bytes} bytes: --max-value-bytes)")
    answer = refusal_answer(service, head, ("invalid",), why)
    if answer is not None:
        log.info("refusing a request from %s: %s", who, why)
    return answer


def refusal_answer(service, head, fields, why):
    """The answer to the call whose first bytes are `head`, refused without being read: the exception of the
    first of `fields` (names of its result's exception fields, as "invalid") that the call has, carrying
    `why`; TApplicationException for a call that has none of them; None when head is no message."""
    try:
        name, _, seqid = TBinaryProtocol(TMemoryBuffer(head)).readMessageBegin()
    except Exception:   # not even a message header: nothing to answer
        return None
    buffer = TMemoryBuffer()
    protocol = TBinaryProtocol(buffer)
    result = getattr(service, f"{name}_result", None)
    specs = {spec[2]: spec[3] for spec in getattr(result, "thrift_spec", None) or () if spec}
    field = next((f for f in fields if f in specs), None)
    if field is not None:
        kind = specs[field][0]
        counts = {spec[2]: 0 for spec in kind.thrift_spec if spec and spec[2] in ("alive", "needed")}   # Unavailable's
        error = kind(why=why, **counts)
        protocol.writeMessageBegin(name, TMessageType.REPLY, seqid)
        result(**{field: error}).write(protocol)
    else:
        protocol.writeMessageBegin(name, TMessageType.EXCEPTION, seqid)
        TApplicationException(TApplicationException.PROTOCOL_ERROR, why).write(protocol)
    protocol.writeMessageEnd()
    return buffer.getvalue()
