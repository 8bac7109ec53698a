"""Thrift calls as raw frames on a plain socket, for tests that must hold a connection in a state no client
library would leave it in (half a frame sent, a frame announced and never finished)."""
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.transport.TTransport import TMemoryBuffer

from kvstore_rpc import KVStore


def frame(method, *args, seqid=1):
    """The framed call, as a Thrift client would send it."""
    buffer = TMemoryBuffer()
    client = KVStore.Client(TBinaryProtocol(buffer))
    client._seqid = seqid - 1
    getattr(client, f"send_{method}")(*args)
    payload = buffer.getvalue()
    return len(payload).to_bytes(4, "big") + payload


def read_answer(sock, method):
    """The answer to `method` read off the socket, as the generated client reads it (raises what it raises)."""
    length = int.from_bytes(_read(sock, 4), "big")
    client = KVStore.Client(TBinaryProtocol(TMemoryBuffer(_read(sock, length))))
    return getattr(client, f"recv_{method}")()


def log_in(sock, credentials):
    """Log the socket's connection in; the role the node gave."""
    sock.sendall(frame("login", *credentials))
    return read_answer(sock, "login").role


def _read(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise EOFError("closed")
        data += chunk
    return data
