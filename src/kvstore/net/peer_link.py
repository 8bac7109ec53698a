"""One pipelined connection from this node to a peer's peer port, on the event loop.

Every call to the peer (replica batches, hints, heartbeats) goes over it: each
is written at once with its own sequence id and answered whenever the peer is
done with it, matched by that id, so no call waits behind another. A call
gives a deadline and a callback, called exactly once, on the loop: with the
answer, the IDL's declared exception, or ours (kvstore.core.errors):
- ConnectFailed: no connection could be made (the peer is down); nothing left;
- NodeRefused: the peer is at its connection limit; nothing left;
- NotAPeer: the peer did not prove it knows the cluster secret;
- NodeUnavailable(sent=True): the connection broke, or the deadline passed,
  after the call was written (it may or may not have been applied);
- NodeFailed: the peer failed inside the call (Thrift's internal error); the
  connection goes on.
The connection is opened when a call needs it (TLS, then the proof of the
cluster secret, under the connect and handshake deadlines) and dropped when
it breaks, or when a call's deadline passes without a word from the peer
since it was written (a paused or cut-off peer: the next call reconnects, and
a partition shows as a failed connect). A restarted peer closes the old
connection, which is noticed at once: the loop is always reading it. The
deadlines are kept by one timer per link, set for the earliest call out.
"""
import asyncio
import logging
import ssl
import time

from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TMemoryBuffer

from kvstore.net.codec import FRAME_LENGTH, buffer_at, error_text, message, read_header, refusal_in
from kvstore.core.errors import ConnectFailed, NodeFailed, NodeRefused, NodeUnavailable
from kvstore.net.peerauth import HANDSHAKE_SECONDS, MAX_ANSWER, NotAPeer, UnexpectedAnswer, answer_proof, hello, hung_up
from kvstore.net.limits import CLIENT_MAX_CONTAINER, CLIENT_MAX_FRAME
from kvstore.net.wire import arity
from kvstore.core.tasks import settle
from kvstore_rpc import Internode

log = logging.getLogger(__name__)



class PeerLink:
    def __init__(self, node, connect_timeout, secret=None, tls=None, service=Internode):
        self.node_id = node.node_id
        self.address = f"{node.host}:{node.peer_port}"
        self._host, self._port = node.host, node.peer_port
        self._connect_timeout = connect_timeout
        self._secret = secret
        self._tls = tls
        self._service = service
        self._protocol = None     # the open connection's protocol, once it has proved itself
        self._connecting = None   # the task opening one
        self._unsent = []         # (seqid, frame) waiting for the connection
        self._pending = {}        # seqid -> _Call
        self._timer, self._timer_due = None, None   # the one deadline timer: the earliest call's (see _watch)
        self._seqid = 0
        self._closed = False
        # Answers are decoded by the C accelerator through one protocol object, its transport swapped each time.
        self._reader = TBinaryProtocolAccelerated(TMemoryBuffer(), string_length_limit=CLIENT_MAX_FRAME,
                                                  container_length_limit=CLIENT_MAX_CONTAINER)

    # ---- calls ----

    def send(self, method, args, deadline, done):
        """Call method(*args) on the peer; done(error, result) once, on the loop, by `deadline`
        (time.monotonic(), the loop's clock)."""
        loop = asyncio.get_running_loop()
        if self._closed:
            loop.call_soon(done, NodeUnavailable(f"{self.address}: the link is closed", sent=False), None)
            return
        self._seqid = seqid = (self._seqid + 1) & 0x7FFFFFFF
        missing = arity(self._service, method) - len(args)
        call = _Call(method, done, deadline)
        self._pending[seqid] = call
        self._watch(deadline)
        frame = _call_frame(self._service, method, seqid, tuple(args) + (None,) * max(0, missing))
        if self._protocol is not None:
            call.sent = time.monotonic()
            self._protocol.write(frame)
            return
        self._unsent.append((seqid, frame))
        if self._connecting is None:
            self._connecting = loop.create_task(self._connect(deadline), name=f"connect-to-{self.node_id}")

    async def call(self, method, *args, timeout):
        """The answer of method(*args) within timeout seconds (raises what send() would call back with)."""
        future = asyncio.get_running_loop().create_future()
        self.send(method, args, time.monotonic() + timeout, lambda error, result: settle(future, error, result))
        return await future

    def _watch(self, deadline):
        """Keep the link's timer running for the earliest deadline of the calls out. A call has no timer of its
        own: thousands a second are made, and almost all are answered long before their deadline."""
        if self._timer is None or deadline < self._timer_due:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_due = deadline
            self._timer = asyncio.get_running_loop().call_later(max(0.0, deadline - time.monotonic()), self._sweep)

    def _sweep(self):
        """The earliest deadline came: every call past its own fails (_expired); the timer runs on for the
        earliest of those left."""
        self._timer = None
        now = time.monotonic()
        for seqid in [seqid for seqid, call in self._pending.items() if call.deadline <= now]:
            self._expired(seqid)
        if self._pending:
            self._watch(min(call.deadline for call in self._pending.values()))

    def _expired(self, seqid):
        call = self._pending.pop(seqid, None)
        if call is None:
            return
        protocol = self._protocol
        if call.sent is None:
            call.done(NodeUnavailable(f"node {self.node_id}: the request deadline passed before it was sent",
                                      sent=False), None)
            self._unsent = [(s, f) for s, f in self._unsent if s != seqid]
            return
        call.done(NodeUnavailable(f"{self.address} did not answer {call.method} in time", sent=True), None)
        if protocol is not None and protocol.last_answer < call.sent:   # not a word since: paused, or cut off
            self._drop(protocol, "it stopped answering")

    def answered(self, protocol, payload):
        try:
            _, kind, seqid, offset = read_header(payload)
            reader = self._reader
            reader.trans = buffer_at(payload, offset)
        except Exception as exc:
            self._drop(protocol, f"an answer that does not decode ({exc})")
            return
        protocol.last_answer = time.monotonic()
        call = self._pending.pop(seqid, None)
        if call is None:
            return   # the answer to a call whose deadline passed
        error, result = None, None
        try:
            if kind == TMessageType.EXCEPTION:
                failure = TApplicationException()
                failure.read(reader)
                if failure.type == TApplicationException.UNKNOWN:   # at its connection limit: it says so, closes
                    error = NodeRefused(f"{self.address} refused the connection: {failure.message}")
                else:
                    error = NodeFailed(f"{self.address} failed inside {call.method}: {failure.message}")
            else:
                answer = getattr(self._service, f"{call.method}_result")()
                answer.read(reader)
                error, result = _outcome(answer, call.method, self.address)
        except Exception as exc:   # the bytes did not decode: the connection's state is unknown
            error = NodeUnavailable(f"{self.address} did not answer {call.method}: {error_text(exc)}", sent=True)
            self._drop(protocol, str(exc))
        call.done(error, result)

    # ---- the connection ----

    async def _connect(self, deadline):
        loop = asyncio.get_running_loop()
        try:
            timeout = max(0.001, min(self._connect_timeout, deadline - time.monotonic()))
            try:
                async with asyncio.timeout(timeout):
                    _, protocol = await loop.create_connection(
                        lambda: _LinkProtocol(self), self._host, self._port, ssl=self._tls,
                        server_hostname=self._host if self._tls else None)
            except ssl.SSLError as exc:
                raise NodeUnavailable(f"no TLS connection to {self.address}: {exc.reason or exc}",
                                      sent=False) from None
            except (OSError, TimeoutError) as exc:
                raise ConnectFailed(f"cannot connect to {self.address}: {error_text(exc)}") from None
            if self._secret is not None:
                await self._prove(protocol)
        except NodeUnavailable as exc:
            self._connecting = None
            self._fail_unsent(exc)
            return
        except asyncio.CancelledError:
            self._connecting = None
            self._fail_unsent(NodeUnavailable(f"{self.address}: the link is closed", sent=False))
            raise
        self._connecting = None
        protocol.proved = True
        self._protocol = protocol
        now = time.monotonic()
        for seqid, frame in self._unsent:
            call = self._pending.get(seqid)
            if call is not None:
                call.sent = now
                protocol.write(frame)
        self._unsent = []

    async def _prove(self, protocol):
        first, ours = hello()
        protocol.write(first)
        try:
            async with asyncio.timeout(HANDSHAKE_SECONDS):
                answer = await protocol.next_frame
            protocol.write(answer_proof(self._secret, ours, answer, self.address))
        except UnexpectedAnswer as exc:
            protocol.close()
            refusal = refusal_in(exc.frame)
            if refusal is None:
                raise
            raise NodeRefused(f"{self.address} refused the connection: {refusal}") from None
        except (NotAPeer, EOFError) as exc:
            protocol.close()
            raise hung_up(self.address) if isinstance(exc, EOFError) else exc from None
        except (TimeoutError, OSError) as exc:
            protocol.close()
            raise NodeUnavailable(f"{self.address} did not finish the peer handshake: {error_text(exc)}",
                                  sent=False) from None

    def _fail_unsent(self, error):
        unsent, self._unsent = self._unsent, []
        for seqid, _ in unsent:
            call = self._pending.pop(seqid, None)
            if call is not None:
                call.done(error, None)

    def _drop(self, protocol, why):
        protocol.close()
        self.lost(protocol, why)

    def lost(self, protocol, why):
        """The connection broke (or was dropped): every call written on it fails."""
        if self._protocol is not protocol:
            return
        self._protocol = None
        sent = [(seqid, call) for seqid, call in self._pending.items() if call.sent is not None]
        for seqid, call in sent:
            del self._pending[seqid]
            call.done(NodeUnavailable(f"{self.address} did not answer {call.method}: {why}", sent=True), None)

    async def close(self):
        """Close the connection; calls not answered yet fail."""
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
            try:
                await self._connecting
            except asyncio.CancelledError:
                pass
        if self._protocol is not None:
            self._drop(self._protocol, "the link is closed")
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _Call:
    __slots__ = ("method", "done", "deadline", "sent")

    def __init__(self, method, done, deadline):
        self.method, self.done, self.deadline, self.sent = method, done, deadline, None


class _LinkProtocol(asyncio.Protocol):
    def __init__(self, link):
        self._link = link
        self._buffer = bytearray()
        self._transport = None
        self.proved = False
        self.next_frame = asyncio.get_running_loop().create_future()   # the handshake's answer
        self.last_answer = float("-inf")

    def connection_made(self, transport):
        self._transport = transport

    def write(self, frame):
        if not self._transport.is_closing():
            self._transport.write(FRAME_LENGTH.pack(len(frame)) + frame)

    def close(self):
        self._transport.close()

    def data_received(self, data):
        self._buffer += data
        buffer = self._buffer
        while len(buffer) >= 4:
            length, = FRAME_LENGTH.unpack_from(buffer)
            if length < 0 or length > (CLIENT_MAX_FRAME if self.proved else MAX_ANSWER):
                self._transport.abort()
                return
            if len(buffer) < 4 + length:
                return
            frame = bytes(buffer[4:4 + length])
            del buffer[:4 + length]
            if self.proved:
                self._link.answered(self, frame)
            elif not self.next_frame.done():
                self.next_frame.set_result(frame)

    def connection_lost(self, exc):
        if not self.next_frame.done():
            self.next_frame.set_exception(EOFError("the node closed the connection"))
        why = error_text(exc) if exc else "the node closed the connection"
        self._link.lost(self, why)


def _call_frame(service, method, seqid, args):
    return message(method, TMessageType.CALL, seqid, getattr(service, f"{method}_args")(*args))


def _outcome(answer, method, address):
    """(error, result) from a decoded *_result: its value, a declared exception, or None for a void call."""
    if getattr(answer, "success", None) is not None:
        return None, answer.success
    for spec in answer.thrift_spec[1:]:
        if spec and getattr(answer, spec[2]) is not None:
            return getattr(answer, spec[2]), None
    if answer.thrift_spec[0] is None:   # void
        return None, None
    return NodeFailed(f"{address} answered {method} with no result"), None
