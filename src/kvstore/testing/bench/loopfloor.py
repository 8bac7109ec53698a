"""Reference floors: the same framed transport and accelerated binary protocol, another server
design. Each process is one thread running one selector loop: no thread per connection, no
thread pool, no interpreter lock to take turns at. The fan-out coordinator keeps one connection
to each replica and pipelines every call on it (answers are matched by sequence id).

Replicas are no-op ("noop"), or durable ("durable"): each put's bytes are written to a file and
answered once an fdatasync covers them, a syncer thread sharing one fdatasync among all the puts
that arrived while the last one ran (group commit), and nothing else (gets are answered at
once). Over durable replicas, the fan-out is the least any design of this shape pays for fsync
before acknowledging, on this disk.

The thread floor (floor.py: thread per connection, a thread pool forwarding) is the one the
store's ratios were first taken against; these are reported beside it, to show how much a node built
as an event loop could gain, and what durability alone costs. in_process() runs the fan-out's
Python for one get or put without sockets, for bench/layers.py. A benchmark tool, not a server: it
trusts its clients (no limits, no timeouts) and stops when killed.
"""
import os
import selectors
import socket
import tempfile
import threading

from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
from thrift.Thrift import TMessageType
from thrift.transport.TTransport import TMemoryBuffer

from kvstore_rpc import KVStore, ttypes

from kvstore.net.codec import FRAME_LENGTH

_ARGS = {"put": KVStore.put_args, "get": KVStore.get_args, "describe_ring": KVStore.describe_ring_args}
_RESULTS = {"put": KVStore.put_result, "get": KVStore.get_result}
_ANSWERS = {"put": KVStore.put_result(success=ttypes.WriteResult(1, [0], [])),
            "get": KVStore.get_result(success=ttypes.ReadResult(ttypes.Cell(b"x" * 100, 1), [0], [])),
            "describe_ring": KVStore.describe_ring_result(success=[])}   # what readiness is asked with


def frame(name, kind, seqid, body):
    out = TBinaryProtocolAccelerated(TMemoryBuffer())
    out.writeMessageBegin(name, kind, seqid)
    body.write(out)
    out.writeMessageEnd()
    payload = out.trans.getvalue()
    return FRAME_LENGTH.pack(len(payload)) + payload


def parse(payload, classes):
    """(method name, sequence id, decoded body) of one message."""
    protocol = TBinaryProtocolAccelerated(TMemoryBuffer(payload))
    name, _, seqid = protocol.readMessageBegin()
    body = classes[name]()
    body.read(protocol)
    protocol.readMessageEnd()
    return name, seqid, body


class Link:
    """One non-blocking connection: frames in to on_frame(link, payload), bytes out buffered."""

    def __init__(self, loop, sock, on_frame):
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._loop, self.sock, self._on_frame = loop, sock, on_frame
        self._in, self._out = bytearray(), bytearray()
        loop.register(sock, selectors.EVENT_READ, self)

    def readable(self):
        try:
            data = self.sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        self._in += data
        while len(self._in) >= FRAME_LENGTH.size:
            length, = FRAME_LENGTH.unpack_from(self._in)
            if len(self._in) < FRAME_LENGTH.size + length:
                break
            payload = bytes(self._in[FRAME_LENGTH.size:FRAME_LENGTH.size + length])
            del self._in[:FRAME_LENGTH.size + length]
            self._on_frame(self, payload)

    def close(self):
        if self.sock.fileno() != -1:
            self._loop.unregister(self.sock)
            self.sock.close()

    def send(self, data):
        """Send now what the socket takes, keep the rest for when it is writable (a peer that has
        gone, for example a client that left before its answer, is closed and forgotten)."""
        if self.sock.fileno() == -1:
            return
        if self._out:
            self._out += data
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.close()
            return
        if sent < len(data):
            self._out += data[sent:]
            self._loop.modify(self.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, self)

    def writable(self):
        try:
            del self._out[:self.sock.send(self._out)]
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        if not self._out:
            self._loop.modify(self.sock, selectors.EVENT_READ, self)


def _answer_at_once(link, payload):
    name, seqid, _ = parse(payload, _ARGS)
    link.send(frame(name, TMessageType.REPLY, seqid, _ANSWERS[name]))


class _Fanout:
    """Forwards each put and get to every replica; answers after 1 (ONE) or 2 (QUORUM)."""

    def __init__(self, loop, replicas):
        self._pending = {}   # our sequence id -> [client link, its sequence id, method, needed, answers]
        self._next = 0
        self._replicas = [Link(loop, socket.create_connection(address), self._answered) for address in replicas]

    def request(self, link, payload):
        name, seqid, args = parse(payload, _ARGS)
        if name == "describe_ring":
            link.send(frame(name, TMessageType.REPLY, seqid, _ANSWERS[name]))
            return
        self._next += 1
        needed = 1 if args.level == ttypes.ConsistencyLevel.ONE else 2
        self._pending[self._next] = [link, seqid, name, needed, 0]
        call = frame(name, TMessageType.CALL, self._next, args)
        for replica in self._replicas:
            replica.send(call)

    def _answered(self, _, payload):
        _, seqid, _ = parse(payload, _RESULTS)
        pending = self._pending.get(seqid)
        if pending is None:
            return
        pending[4] += 1
        client, client_seqid, name, needed, answers = pending
        if answers == needed:
            client.send(frame(name, TMessageType.REPLY, client_seqid, _ANSWERS[name]))
        if answers == len(self._replicas):
            del self._pending[seqid]


class SyncedLog:
    """Records written with pwrite, on the loop, into a file written ahead in zeros; a syncer thread shares one
    fdatasync among all the records written while the last one ran, and wakes the loop to run their completions
    (group commit)."""

    LOG_BYTES = 64 << 20   # written as zeros first and then overwritten in a ring, as the store's log grows

    def __init__(self, loop):
        self._log = tempfile.TemporaryFile(prefix="kvstore-floor-")   # on the disk the store uses
        self._fd, self._offset = self._log.fileno(), 0
        os.pwrite(self._fd, bytes(self.LOG_BYTES), 0)
        os.fsync(self._fd)
        self._lock = threading.Lock()
        self._written = threading.Condition(self._lock)
        self._unsynced, self._synced = [], []   # completions to run once synced / synced, not run
        self._wake_read, self._wake_write = os.pipe()   # the syncer wakes the loop through it
        os.set_blocking(self._wake_read, False)
        self.sock = self   # for the loop: fileno() and the read event are this object's
        loop.register(self._wake_read, selectors.EVENT_READ, self)
        threading.Thread(target=self._sync, name="syncer", daemon=True).start()

    def fileno(self):
        return self._wake_read

    def append(self, record, completion):
        """Write record now; completion() on the loop once an fdatasync covers it."""
        if self._offset + len(record) > self.LOG_BYTES:
            self._offset = 0
        os.pwrite(self._fd, record, self._offset)
        self._offset += len(record)
        with self._lock:
            self._unsynced.append(completion)
            self._written.notify()

    def _sync(self):
        while True:
            with self._lock:
                while not self._unsynced:
                    self._written.wait()
                group, self._unsynced = self._unsynced, []
            os.fdatasync(self._fd)
            with self._lock:
                wake = not self._synced
                self._synced += group
            if wake:
                os.write(self._wake_write, b"!")

    def readable(self):
        """The syncer's wake-up: run the completions it synced."""
        try:
            os.read(self._wake_read, 4096)
        except BlockingIOError:
            pass
        with self._lock:
            synced, self._synced = self._synced, []
        for completion in synced:
            completion()


class _Durable:
    """A replica that answers each put once its bytes are written and fdatasynced."""

    def __init__(self, loop):
        self._log = SyncedLog(loop)

    def request(self, link, payload):
        name, seqid, _ = parse(payload, _ARGS)
        answer = frame(name, TMessageType.REPLY, seqid, _ANSWERS[name])
        if name != "put":   # a read, or a readiness check: nothing to make durable
            link.send(answer)
            return
        self._log.append(payload, lambda: link.send(answer))


class _SocketStandIn:
    """A socket for in_process: what is sent is kept; what is put in `data` is received once."""

    def __init__(self):
        self.data, self.sent = b"", []

    def recv(self, size):
        data, self.data = self.data, b""
        return data

    def send(self, data):
        self.sent.append(data)
        return len(data)

    def fileno(self):
        return 0


def _stand_in_link(on_frame):
    link = object.__new__(Link)
    link._loop, link.sock, link._on_frame = None, _SocketStandIn(), on_frame
    link._in, link._out = bytearray(), bytearray()
    return link


def in_process(method):
    """A function that makes one `method` ("get" or "put") at QUORUM through a fan-out coordinator and its 3
    no-op replicas, framing included, in this process: the floor's Python per call, without the kernel's share."""
    replicas = [_stand_in_link(_answer_at_once) for _ in range(3)]   # each replica's end of its connection
    fanout = object.__new__(_Fanout)
    fanout._pending, fanout._next = {}, 0
    fanout._replicas = [_stand_in_link(None) for _ in replicas]
    answers = _stand_in_link(fanout._answered)   # the coordinator's end of its replica connections
    client = _stand_in_link(fanout.request)
    level = ttypes.ConsistencyLevel.QUORUM
    args = (KVStore.get_args(key=b"key", level=level) if method == "get" else
            KVStore.put_args(key=b"key", value=b"x" * 100, level=level))
    request = frame(method, TMessageType.CALL, 1, args)

    def call():
        client.sock.data = request
        client.readable()
        for to_replica, replica in zip(fanout._replicas, replicas):
            replica.sock.data = to_replica.sock.sent.pop()
            replica.readable()
            answers.sock.data = replica.sock.sent.pop()
            answers.readable()
        client.sock.sent.clear()
    return call


def serve_loop(kind, host, port, replicas=()):
    """kind: "noop", "durable" or "fanout" (over replicas [(host, port)]); runs until killed."""
    loop = selectors.DefaultSelector()
    if kind == "noop":
        on_frame = _answer_at_once
    elif kind == "durable":
        on_frame = _Durable(loop).request
    else:
        on_frame = _Fanout(loop, replicas).request
    serve_forever(loop, host, port, on_frame)


def serve_forever(loop, host, port, on_frame):
    """Accept connections on host:port, each a Link on loop handing its frames to on_frame; runs until killed."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(128)
    listener.setblocking(False)
    loop.register(listener, selectors.EVENT_READ, None)
    while True:
        for key, events in loop.select():
            if key.data is None:
                try:
                    sock, _ = listener.accept()
                except BlockingIOError:
                    continue
                Link(loop, sock, on_frame)
                continue
            if events & selectors.EVENT_READ:
                key.data.readable()
            if events & selectors.EVENT_WRITE and key.data.sock.fileno() != -1:
                key.data.writable()
