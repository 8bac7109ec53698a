"""A threaded Thrift server: framed binary protocol, one thread per connection. The node serves on its event
loop (kvstore.net.server); this is the server of the benchmark's thread floor (bench/floor.py), the design
the node had before, kept as the baseline it is measured against, and the tests' stand-in peer.

Why not the library's servers: TThreadPoolServer pins a pool thread to every
idle connection (new clients wait), none of them put a deadline on a half-sent
message. Here:
- each connection has its own thread, up to max_connections, and at most
  max_connections_per_host from one remote address; one more is told why in a
  frame any Thrift client raises as a TApplicationException (type UNKNOWN,
  "... at its connection limit"), then closed, as Redis answers "max number of
  clients reached";
- between requests a connection may stay idle up to its door's idle_timeout
  (a few seconds for a client connection that has not logged in);
- once a frame's length has arrived, the whole frame must arrive within
  read_timeout, or the connection is closed (a stalled or slow-loris client
  costs one thread for a bounded time and nobody else waits for it);
- frames over 64 KiB being read, summed over every connection of this port,
  hold at most request_memory bytes: a frame that cannot get its share within
  read_timeout closes its connection (logged); its bytes are read as they arrive,
  so memory follows what a client really sends, not what it claims;
- a frame over max_frame_bytes is read and thrown away, and answered with the
  call's InvalidRequest (TApplicationException for calls that have none): the
  connection stays open;
- the protocol's string and container length limits are set explicitly;
- anything undecodable closes that connection, never the server.
Frames are read and written through framing.FrameSocket (one recv and one send
for a small request).
"""
import logging
import socket
import threading
import time
from collections import Counter

from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
from thrift.transport.TTransport import TMemoryBuffer

from kvstore.net.codec import MAX_CONTAINER_LENGTH
from kvstore.net.frames import FrameSocket
from kvstore.net.limits import refusal_frame, refuse, too_large_answer

log = logging.getLogger(__name__)

REFUSAL_LOG_INTERVAL = 60.0      # seconds between WARNING lines for refused handshakes from one host
SMALL_FRAME = 1 << 16            # frames up to this size are read without taking from the memory budget


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


class ProcessorDoor:
    """What every connection of a port shares when none needs state of its own (the peer port)."""

    def __init__(self, processor, idle_timeout):
        self.processor = processor
        self.idle_timeout = idle_timeout


class RpcServer:
    def __init__(self, host, port, open_door, settings, service, per_host_limit=None):
        """open_door(who): for each new connection, an object with .processor (the generated Processor of
        `service`, the generated module) and .idle_timeout (seconds, read before each request);
        per_host_limit: connections one remote address may hold (None: max_connections)."""
        self._address = (host, port)
        self._open_door = open_door
        self._service = service
        self._settings = settings
        self._per_host_limit = per_host_limit or settings.max_connections
        self._budget = FrameBudget(settings.request_memory)
        self._listener = None
        self._stopped = threading.Event()
        self._active = 0
        self._connections = {}   # each connection's thread -> its socket: stop() wakes and joins them
        self._accepting = None   # the thread of serve_forever, once start() made it
        self._per_host = Counter()
        self._lock = threading.Lock()
        self._refusals_logged = {}   # remote host -> when a refused connection from it was last logged at WARNING
        self._refusal = refusal_frame(f"the node is at its connection limit: {settings.max_connections} connections "
                                      "open (--max-connections); try another node, or again later")
        self._host_refusal = refusal_frame(
            f"the node is at its connection limit for one address: {self._per_host_limit} connections open from "
            "yours (--max-connections-per-host); close some, or try again later")

    def bind(self):
        """Open the listening socket; OSError (for example: the port is in use) propagates."""
        listener = socket.socket(socket.AF_INET6 if ":" in self._address[0] else socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(self._address)
        listener.listen(128)
        listener.settimeout(0.2)  # so serve_forever notices stop()
        self._listener = listener

    def serve_forever(self):
        while not self._stopped.is_set():
            try:
                sock, peer = self._listener.accept()
            except socket.timeout:
                continue
            except OSError as exc:
                if self._stopped.is_set():
                    break
                log.warning("accept failed: %s", exc)
                self._stopped.wait(0.05)  # for example, out of file descriptors: do not spin
                continue
            with self._lock:
                refusal = (self._refusal if self._active >= self._settings.max_connections else
                           self._host_refusal if self._per_host[peer[0]] >= self._per_host_limit else None)
                if refusal is None:
                    self._active += 1
                    self._per_host[peer[0]] += 1
            if refusal is not None:
                self._log_refusal(peer[0], "refusing connection from %s:%s: %d connections open, %d from that "
                                  "address (the limits are %d and %d)", peer[0], peer[1], self._active,
                                  self._per_host[peer[0]], self._settings.max_connections, self._per_host_limit)
                refuse(sock, refusal)
                continue
            thread = threading.Thread(target=self._serve_connection, args=(sock, peer), daemon=True,
                                      name=f"serve-{peer[0]}:{peer[1]}")
            with self._lock:
                self._connections[thread] = sock
            thread.start()

    def start(self, name):
        """serve_forever in a thread of its own, which stop() joins."""
        self._accepting = threading.Thread(target=self.serve_forever, name=name, daemon=True)
        self._accepting.start()

    def stop(self, timeout=5.0):
        """Stop accepting, let the requests being served finish and answer (each connection's reading side is
        shut, so one waiting for its next request ends at once), and join every thread, within timeout.
        Returns the names of the threads still running then (none, unless a request outlasts it)."""
        deadline = time.monotonic() + timeout
        self._stopped.set()
        if self._listener is not None:
            self._listener.close()
        if self._accepting is not None:
            self._accepting.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            connections = list(self._connections.items())
        for _, sock in connections:
            try:
                sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass   # already closed
        for thread, _ in connections:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in [self._accepting, *(t for t, _ in connections)] if t is not None and t.is_alive()]

    def _serve_connection(self, sock, peer):
        who = f"{peer[0]}:{peer[1]}"
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not self._stopped.is_set():
                self._serve(sock, who)
        finally:
            sock.close()
            with self._lock:
                self._connections.pop(threading.current_thread(), None)
                self._active -= 1
                self._per_host[peer[0]] -= 1
                if not self._per_host[peer[0]]:
                    del self._per_host[peer[0]]

    def _serve(self, sock, who):
        # Every recv and send is bounded by read_timeout: a client that stops reading is cut off too.
        frames = FrameSocket(sock, self._settings.read_timeout)
        try:
            door = self._open_door(who)
            # One pair of protocol objects per connection; each request swaps in its own buffers.
            iprot, oprot = self._protocol(TMemoryBuffer()), self._protocol(TMemoryBuffer())
            while not self._stopped.is_set():
                try:
                    if not frames.wait_for_data(door.idle_timeout):
                        break  # closed between requests: the normal end
                except socket.timeout:
                    log.debug("closing connection from %s: idle for %g s", who, door.idle_timeout)
                    break
                deadline = time.monotonic() + self._settings.read_timeout
                answer = self._next_request(frames, door.processor, iprot, oprot, deadline, who)
                if answer is None:
                    break
                frames.send_frame(answer)
        except socket.timeout:
            log.info("closing connection from %s: it stalled (no complete request within the deadline)", who)
        except (OSError, EOFError) as exc:
            log.debug("connection from %s ended: %s", who, exc)
        except Exception as exc:  # undecodable input: close this connection, keep serving everyone else
            log.warning("closing connection from %s: malformed request (%s: %s)", who, type(exc).__name__, exc)

    def _next_request(self, frames, processor, iprot, oprot, deadline, who):
        """The answer to the next request frame, or None when the connection must close."""
        length = frames.announced_length(deadline)
        if length > self._settings.max_frame_bytes:
            return self._too_large(frames.skip_frame(length, SMALL_FRAME, deadline), length, who)
        held = length if length > SMALL_FRAME else 0
        if held and not self._budget.reserve(held, deadline):
            log.warning("closing connection from %s: its request of %d bytes found no room in the %d bytes that "
                        "requests being read may hold together (--request-memory)", who, length, self._budget.limit)
            return None
        try:
            return self._process(frames.read_frame(self._settings.max_frame_bytes, deadline), processor, iprot, oprot)
        finally:
            if held:
                self._budget.release(held)

    def _too_large(self, head, length, who):
        return too_large_answer(self._service, self._settings, head, length, who)

    def _log_refusal(self, host, message, *args):
        """A refused connection at WARNING once a minute per remote host (a misconfigured peer retries every
        heartbeat; a flood would fill the log), at DEBUG in between."""
        now = time.monotonic()
        with self._lock:
            quiet = now - self._refusals_logged.get(host, float("-inf")) < REFUSAL_LOG_INTERVAL
            if not quiet:
                self._refusals_logged[host] = now
        log.log(logging.DEBUG if quiet else logging.WARNING, message, *args)

    def _protocol(self, transport):
        # strictRead: every Thrift client sends the versioned header; anything else is garbage.
        return TBinaryProtocolAccelerated(
            transport, strictRead=True, string_length_limit=self._settings.max_frame_bytes,
            container_length_limit=MAX_CONTAINER_LENGTH, fallback=False)

    def _process(self, request, processor, iprot, oprot):
        """One request frame in, one response frame out."""
        iprot.trans, oprot.trans = TMemoryBuffer(request), TMemoryBuffer()
        processor.process(iprot, oprot)
        return oprot.trans.getvalue()
