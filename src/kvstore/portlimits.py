"""What one port lets its connections cost, and how it says no: the budget of bytes that large frames being
read may hold together, and the refusal a connection over a limit gets (a frame any Thrift client raises as a
TApplicationException, then an orderly close). Used by rpcserver."""
import socket
import threading
import time

from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TMemoryBuffer

from kvstore.framing import encode_frame


class FrameBudget:
    """Bytes that large frames being read may hold, summed over a port's connections."""

    def __init__(self, limit):
        self.limit = limit
        self._held = 0
        self._freed = threading.Condition()

    def reserve(self, amount, deadline):
        """True once `amount` bytes are this caller's; False if they are not free by `deadline`."""
        with self._freed:
            while self._held + amount > self.limit:
                left = deadline - time.monotonic()
                if left <= 0 or amount > self.limit:
                    return False
                self._freed.wait(left)
            self._held += amount
            return True

    def release(self, amount):
        with self._freed:
            self._held -= amount
            self._freed.notify_all()


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
