"""One connection to a node's port, on its event loop (kvstore.net.server owns them): frames in, each within
the port's limits (its share of the frame memory, the half-sent-frame and idle deadlines, the frame cap, a few
KiB before login, the peer handshake first on the peer port), calls dispatched to its door (kvstore.net.codec),
answers out, a client that does not read its answers cut off. A frame refused (its size, or no room in the
frame memory) is thrown away as it arrives and answered with its call's typed error; the connection goes on."""
import asyncio
import collections
import logging

from kvstore.net import codec
from kvstore.net.codec import FRAME_LENGTH
from kvstore.net.idle_timer import ConnectionDeadline
from kvstore.net.peerauth import HANDSHAKE_SECONDS, HELLO_BYTES, PROOF_BYTES, NotAPeer, answer_hello, check_proof

log = logging.getLogger("kvstore.net.server")   # its connections log as the server

SMALL_FRAME = 1 << 16            # frames up to this size are read without taking from the memory budget
HEAD_BYTES = 256                 # of a frame, what names its call: read before the frame is judged
WRITE_BUFFER = 1 << 20           # answer bytes a connection may have unsent before it must drain them


class Inbound(asyncio.Protocol):
    """One connection: frames in, calls dispatched, answers out; every limit of the module docstring."""

    def __init__(self, server, peer):
        self._server = server
        self.host, self.who = peer[0], f"{peer[0]}:{peer[1]}"
        self._loop = asyncio.get_running_loop()
        self.opened, self.evicted = self._loop.time(), False   # kvstore.net.server may close it to make room
        self.closed = self._loop.create_future()
        self._transport, self._buffer, self._door = None, bytearray(), None
        self._handshake = None     # the peer port: None until the hello, then the proof expected
        self._held = 0             # bytes of the frame being read taken from the port's budget
        self._large, self._filled = None, 0   # that frame's buffer, of its size, and how much of it has arrived
        self._skipping, self._deferred = 0, None   # a refused frame's bytes still to throw away; then its answer
        self._deadline = ConnectionDeadline(self._loop)   # the idle, handshake, half-sent-frame or unread one
        self._waiting = collections.deque()   # request frames not started (in order)
        self._running = 0          # requests started and not answered
        self._finishing = False    # stop(): no new request; close once those started are answered
        self._paused_writing = self._paused_reading = False
        self._partial = False      # a frame has begun to arrive (its deadline is armed)

    # ---- the connection's life ----

    def connection_made(self, transport):
        self._transport = transport
        transport.set_write_buffer_limits(high=WRITE_BUFFER)
        self._server.connections.add(self)
        if self._server.secret is not None:
            self._deadline.set(HANDSHAKE_SECONDS, self._no_handshake)
        else:
            self._door = self._server.open_door(self.who)
            self._deadline.idle(self._door.idle_timeout, self._idle)

    def connection_lost(self, exc):
        self._deadline.cancel()
        if self._door is not None:
            self._door.closed()
        if self._held:
            self._server.budget.release(self._held)
            self._held = 0
        if self._door is None and self._handshake is not None:   # it had our proof, and hung up
            self._server.log_refusal(self.host, "refusing connection from %s: it hung up on our proof: it has "
                                     "another secret (a node of another cluster?)", self.who)
        self._server.connections.discard(self)
        self._server.released(self.host)
        if not self.closed.done():
            self.closed.set_result(None)

    @property
    def logged_in(self):
        return self._door is not None and self._door.logged_in

    def finish(self):
        """The node is stopping: no new request; close at once if none is being served."""
        self._finishing = True
        self._waiting.clear()
        if not self._running:
            self._transport.close()

    def abort(self):
        self._transport.abort()

    def _idle(self):
        log.debug("closing connection from %s: idle for %g s", self.who, self._door.idle_timeout)
        self._transport.close()

    def _stalled(self):
        log.info("closing connection from %s: it stalled (no complete request within the deadline)", self.who)
        self._transport.abort()

    def _no_handshake(self):
        self._server.log_refusal(self.host, "refusing connection from %s: it sent no peer handshake within %g s",
                                 self.who, HANDSHAKE_SECONDS)
        self._transport.abort()

    # ---- reading frames ----

    def data_received(self, data):
        if self._skipping:
            data = self._skip(data)
            if not data:
                return
        if self._large is not None:
            data = self._fill(data)
            if data is None:
                return
        self._buffer += data
        buffer = self._buffer
        while len(buffer) >= 4 and not self._finishing:
            length, = FRAME_LENGTH.unpack_from(buffer)
            if length < 0:
                self._malformed(f"frame of {length} bytes announced")
                return
            if self._door is None and length > HELLO_BYTES:
                self._server.log_refusal(self.host, "refusing connection from %s: it sent no peer handshake (a "
                                         "client on the peer port?)", self.who)
                self._transport.abort()
                return
            if len(buffer) < 4 + min(length, HEAD_BYTES) and self._door is not None:
                break   # a refusal answers the call its head names: wait for the head
            if length > self._frame_limit():
                self._throw_away(length, self._server.too_large(self._head(), length, self._door.frame_limit,
                                                                self.who))
                return
            if len(buffer) < 4 + length:
                self._incomplete(length)
                return
            frame = bytes(buffer[4:4 + length])
            del buffer[:4 + length]
            self._partial = False
            if self._held:
                self._server.budget.release(self._held)
                self._held = 0
            self._frame(frame)
        if buffer and not self._partial and self._door is not None:
            self._partial = True   # a frame's first bytes: all of it within read_timeout
            self._deadline.set(self._server.settings.read_timeout, self._stalled)
        elif not buffer:
            self._rearm()

    def _incomplete(self, length):
        """A frame of `length` bytes has begun to arrive: it must get its share of the port's budget, and
        arrive whole within read_timeout of its first bytes."""
        if length > SMALL_FRAME and not self._held:
            if not self._server.budget.reserve(length):
                self._throw_away(length, self._server.no_room(self._head(), length, self.who))
                return
            self._held = length
            # Read straight into a buffer of its size as it arrives: no regrowing copies.
            self._large, self._filled = bytearray(length), len(self._buffer) - 4
            self._large[:self._filled] = self._buffer[4:]
            self._buffer.clear()
        if not self._partial and self._door is not None:
            self._partial = True
            self._deadline.set(self._server.settings.read_timeout, self._stalled)

    def _fill(self, data):
        """Bytes of the large frame being read; once it is whole it is handled, and what follows it returned."""
        take = min(len(data), len(self._large) - self._filled)
        self._large[self._filled:self._filled + take] = data[:take]
        self._filled += take
        if self._filled < len(self._large):
            return None
        frame, self._large = bytes(self._large), None
        self._server.budget.release(self._held)
        self._held = 0
        self._partial = False
        self._frame(frame)
        return data[take:]

    def _rearm(self):
        """Nothing half-sent is left: the idle deadline runs if no request is in progress either."""
        if self._door is None or self._finishing or self._paused_writing or self._buffer or self._large is not None:
            return
        self._partial = False
        if self._running or self._waiting:
            self._deadline.busy()
        else:
            self._deadline.idle(self._door.idle_timeout, self._idle)

    def _frame_limit(self):
        limit = self._door.frame_limit if self._door is not None else None
        return self._server.settings.max_frame_bytes if limit is None else limit

    def _head(self):   # what names the call of the frame begun
        return bytes(self._buffer[4:4 + HEAD_BYTES])

    def _throw_away(self, length, answer):
        """Throw the frame of `length` bytes away as it arrives; send `answer` (its call's typed refusal) once it
        is gone. The connection stays open."""
        if answer is None:
            self._malformed("a refused frame that is not a message")
            return
        self._deferred = answer
        rest = bytes(self._buffer)
        self._buffer.clear()
        self._skipping = 4 + length
        self._deadline.set(self._server.settings.read_timeout, self._stalled)
        left = self._skip(rest)
        if left:
            self.data_received(left)

    def _skip(self, data):
        """What follows the frame being thrown away (b"" while it lasts)."""
        if len(data) < self._skipping:
            self._skipping -= len(data)
            return b""
        data, self._skipping = data[self._skipping:], 0
        answer, self._deferred = self._deferred, None
        self._send(answer)
        self._rearm()
        return data

    def _malformed(self, why):
        log.warning("closing connection from %s: malformed request (%s)", self.who, why)
        self._transport.abort()

    def _frame(self, frame):
        if self._door is None:
            self._handshake_step(frame)
            return
        if self._running >= self._server.in_flight:
            self._waiting.append(frame)
            if len(self._waiting) > self._server.in_flight and not self._paused_reading:
                self._paused_reading = True
                self._transport.pause_reading()
            return
        self._start(frame)

    def _handshake_step(self, frame):
        server = self._server
        try:
            if self._handshake is None:
                answer, self._handshake = answer_hello(server.secret, frame, self.who)
                self._send(answer)
                return
            if len(frame) != PROOF_BYTES:
                raise NotAPeer(f"{self.who} sent {len(frame)} bytes in place of its proof")
            check_proof(self._handshake, frame, self.who)
        except NotAPeer as exc:
            server.log_refusal(self.host, "refusing connection from %s: %s", self.who, exc)
            self._transport.abort()
            return
        self._door = server.open_door(self.who)
        self._deadline.cancel()

    # ---- calls ----

    def _start(self, frame):
        try:
            name, seqid, method, args = self._server.service.decode(frame)
        except Exception as exc:   # undecodable input: close this connection, keep serving everyone else
            self._malformed(f"{type(exc).__name__}: {exc}")
            return
        if method is None:
            self._send(codec.unknown_method(name, seqid))
            return
        self._running += 1
        try:
            outcome = self._door.calls[name](*args)
            if isinstance(outcome, codec.Later):   # settled by a callback, in the turn its outcome is known
                outcome.start(lambda error, result: self._settle(method, seqid, error, result))
                return
        except Exception as exc:
            self._done(codec.failure(method, seqid, exc, self.who))
            return
        if not asyncio.iscoroutine(outcome):
            self._done(codec.answer(method, seqid, outcome))
            return
        self._loop.create_task(self._answer(outcome, method, seqid))

    async def _answer(self, call, method, seqid):
        """Await the call, and send its answer from the same turn (a task's done callback runs a turn later)."""
        try:
            result = await call
        except asyncio.CancelledError:
            self._done(None)
            raise
        except Exception as exc:
            self._done(codec.failure(method, seqid, exc, self.who))
            return
        self._done(codec.answer(method, seqid, result))

    def _settle(self, method, seqid, error, result):
        self._done(codec.answer(method, seqid, result) if error is None else
                   codec.failure(method, seqid, error, self.who))

    def _done(self, answer):
        self._running -= 1
        if answer is not None:
            self._send(answer)
        if self._finishing and not self._running:
            self._transport.close()
            return
        while self._waiting and self._running < self._server.in_flight and not self._finishing:
            self._start(self._waiting.popleft())
        if self._paused_reading and len(self._waiting) <= self._server.in_flight and not self._paused_writing:
            self._paused_reading = False
            self._transport.resume_reading()
        self._rearm()

    def _send(self, payload):
        if not self._transport.is_closing():
            self._transport.write(FRAME_LENGTH.pack(len(payload)) + payload)

    def pause_writing(self):
        """The client is not reading its answers: read nothing more from it, and cut it off if it does not
        drain them within read_timeout."""
        self._paused_writing = True
        self._transport.pause_reading()
        self._deadline.set(self._server.settings.read_timeout, self._stalled)

    def resume_writing(self):
        self._paused_writing = False
        if not self._paused_reading:
            self._transport.resume_reading()
        self._deadline.cancel()
        self._rearm()
