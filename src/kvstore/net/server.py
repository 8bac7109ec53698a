"""The node's Thrift server on its event loop: framed binary protocol, each connection a protocol object.

Why not the library's servers: they give every connection a thread, none puts
a deadline on a half-sent message, and TSSLServerSocket does the TLS handshake
inside accept(). Here, for each port:
- at most max_connections connections, max_connections_per_host from one
  remote address, and on the client port the pool of connections that have not
  logged in (kvstore.service.slots); one more is told why in a frame any Thrift client raises as a
  TApplicationException (type UNKNOWN, "... at its connection limit"), then
  closed without a reset, as Redis answers "max number of clients reached";
- a TLS handshake (the loop's, under HANDSHAKE_SECONDS), and on the peer port
  the proof of the cluster secret (kvstore.net.peerauth) within the same time,
  before any request is read;
- between requests a connection may stay idle up to its door's idle_timeout
  (a few seconds for a client connection that has not logged in);
- once a frame has begun to arrive, all of it must arrive within read_timeout,
  or the connection is closed (a stalled or slow-loris client costs a buffer
  for a bounded time and nobody waits for it); an answer the client does not
  read within read_timeout closes it too;
- frames over 64 KiB being read, summed over every connection of the port,
  hold at most request_memory bytes: a frame that cannot get its share closes
  its connection (logged); its bytes are buffered only as they arrive;
- a frame over max_frame_bytes is thrown away as it arrives and answered with
  the call's InvalidRequest (TApplicationException for calls that have none):
  the connection stays open;
- the protocol's string and container length limits are set explicitly
  (kvstore.net.codec); anything undecodable closes that connection only.
A client connection is served one request at a time, in order (a login comes
before the calls it allows); a peer connection is pipelined: up to
PEER_IN_FLIGHT requests at once, each answered when it is done, matched by its
sequence id. One connection's reading, limits and calls: kvstore.net.connection.
"""
import asyncio
import logging
import socket
import time
from collections import Counter

from kvstore.net import codec
from kvstore.net.connection import Inbound
from kvstore.net.peerauth import HANDSHAKE_SECONDS
from kvstore.net.limits import LoopFrameBudget, refusal_answer, refusal_frame, refuse, too_large_answer

log = logging.getLogger(__name__)

REFUSAL_LOG_INTERVAL = 60.0      # seconds between WARNING lines for refused handshakes from one host
PEER_IN_FLIGHT = 256             # requests one peer connection may have in progress at once
TLS_HANDSHAKE_RECORD = 0x16      # the first byte of every TLS client hello


class SharedDoor:
    """What every connection of a port shares when none needs state of its own (the peer port)."""

    frame_limit = None   # the port's own
    logged_in = True     # no login on this port: its callers proved the cluster secret

    def __init__(self, calls, idle_timeout):
        self.calls = calls
        self.idle_timeout = idle_timeout

    def closed(self):
        pass


class LoopServer:
    def __init__(self, host, port, open_door, settings, service, secret=None, tls=None, per_host_limit=None,
                 slots=None):
        """open_door(who): for each new connection, an object with .calls ({method name: function, returning
        the result or a coroutine}), .idle_timeout (seconds, read before each request), .frame_limit (the
        largest request it may send now; None: the port's) and .closed() (told when it closes); service: the
        generated module; secret: the cluster secret a caller must prove first (the peer port); tls: an
        ssl.SSLContext (server side); per_host_limit: connections one remote address may hold; slots: a
        kvstore.service.slots.ConnectionSlots, whose pool of connections not logged in is checked at accept."""
        self.address = (host, port)
        self.open_door = open_door   # who -> the door of a new connection
        self.service = codec.Service(service, settings.max_frame_bytes)
        self._service_module = service
        self.secret = secret
        self._tls = tls
        self.settings = settings
        self._per_host_limit = per_host_limit or settings.max_connections
        self._slots = slots
        self.budget = LoopFrameBudget(settings.request_memory)
        self.in_flight = PEER_IN_FLIGHT if secret is not None else 1
        self._listener = None
        self._opening = set()      # tasks making accepted sockets connections (a TLS handshake under way)
        self._accepted = 0         # connections counted against the limits: opening, and open
        self.connections = set()   # the open ones (kvstore.net.connection.Inbound)
        self.per_host = Counter()
        self._refusals_logged = {}
        self._refusal = refusal_frame(f"the node is at its connection limit: {settings.max_connections} connections "
                                      "open (--max-connections); try another node, or again later")
        self._host_refusal = refusal_frame(
            f"the node is at its connection limit for one address: {self._per_host_limit} connections open from "
            "yours (--max-connections-per-host); close some, or try again later")
        self._anonymous_refusal = slots and refusal_frame(slots.anonymous_refusal)

    async def start(self):
        """Listen; OSError (for example: the port is in use) propagates."""
        listener = socket.socket(socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(self.address)
            listener.listen(128)
        except OSError:
            listener.close()
            raise
        listener.setblocking(False)
        self._listener = listener
        asyncio.get_running_loop().add_reader(listener.fileno(), self._accept)

    def _accept(self):
        """Every connection waiting: refused at once when over a limit (on a TLS port it is only closed: it
        cannot read plain text), else counted from now, through its TLS handshake, until it closes."""
        for _ in range(64):
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:   # for example, out of file descriptors
                log.warning("accept failed: %s", exc)
                return
            host = peer[0]
            refusal = self._refusal_of(host)
            if refusal is not None:
                frame, why = refusal
                self.log_refusal(host, "refusing connection from %s:%s: %s", host, peer[1], why)
                refuse(sock, None if self._tls else frame)
                continue
            self._accepted += 1
            self.per_host[host] += 1
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = asyncio.get_running_loop().create_task(self._open(sock, peer), name=f"open-{host}:{peer[1]}")
            self._opening.add(task)
            task.add_done_callback(self._opening.discard)

    def _refusal_of(self, host):
        """(the frame that tells a client why, the words the log says) when one more connection from `host` is
        over a limit, else None."""
        if self._accepted >= self.settings.max_connections:
            return self._refusal, f"{self._accepted} connections open, the limit"
        if self.per_host[host] >= self._per_host_limit:
            return self._host_refusal, f"{self.per_host[host]} connections open from that address, the limit"
        if self._slots and self._slots.anonymous_full(self._accepted) and not self._make_anonymous_room(host):
            return (self._anonymous_refusal, f"{self._slots.unauthenticated_limit} connections that have not logged "
                    "in open, the limit, and that address holds as many of them as any")
        return None

    def _make_anonymous_room(self, host):
        """The pool of connections that have not logged in is full and one comes from `host`: close the oldest
        such connection of the addresses that hold the most of them, if they hold more than `host` does, so that
        a flood from some addresses does not keep others from logging in. True if one was closed."""
        waiting = [c for c in self.connections if not c.logged_in and not c.evicted]
        held = Counter(c.host for c in waiting)
        most = max(held.values(), default=0)
        if most <= held[host]:
            return False
        victim = min((c for c in waiting if held[c.host] == most), key=lambda c: c.opened)
        self.log_refusal(victim.host, "closing connection from %s, which has not logged in: of the %d such "
                         "connections (--max-unauthenticated-connections) its address holds the most, and %s wants one",
                         victim.who, self._slots.unauthenticated_limit, host)
        victim.evicted = True
        victim.abort()
        return True

    async def _open(self, sock, peer):
        try:   # our own deadline, so that the refusal is logged before the connection closes
            async with asyncio.timeout(HANDSHAKE_SECONDS):
                if self._tls and not await _begins_tls(sock):
                    self.log_refusal(peer[0], "refusing connection from %s:%s: it spoke plain text to this TLS port "
                                     "(a client without --tls?); told it so", *peer[:2])
                    refuse(sock, self._plaintext_refusal)
                    self.released(peer[0])
                    return
                await asyncio.get_running_loop().connect_accepted_socket(
                    lambda: Inbound(self, peer), sock, ssl=self._tls,
                    ssl_handshake_timeout=HANDSHAKE_SECONDS + 1 if self._tls else None)
        except (OSError, ValueError, asyncio.CancelledError) as exc:   # ssl.SSLError, a timeout, a reset
            if not isinstance(exc, asyncio.CancelledError):
                why = (f"no TLS handshake within {HANDSHAKE_SECONDS:g} s" if isinstance(exc, TimeoutError) else
                       f"its TLS handshake failed ({exc or type(exc).__name__})")
                self.log_refusal(peer[0], "refusing connection from %s:%s: %s", peer[0], peer[1], why)
            sock.close()
            self.released(peer[0])

    _plaintext_refusal = refusal_frame("this node speaks TLS on this port: connect with TLS (add --tls)")

    def released(self, host):
        """A connection counted against the limits has closed."""
        self._accepted -= 1
        self.per_host[host] -= 1
        if not self.per_host[host]:
            del self.per_host[host]

    async def stop(self, timeout):
        """Stop accepting; let the requests being served answer, and close every connection (one waiting for
        its next request at once), within timeout; those still open then are cut off."""
        if self._listener is not None:
            asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
        for task in list(self._opening):
            task.cancel()
        if self._opening:
            await asyncio.wait(set(self._opening))
        for connection in list(self.connections):
            connection.finish()
        deadline = time.monotonic() + timeout
        while self.connections and time.monotonic() < deadline:
            await asyncio.wait([c.closed for c in self.connections], timeout=deadline - time.monotonic())
        for connection in list(self.connections):
            connection.abort()
        while self.connections:   # aborted: each is lost at the loop's next turn
            await asyncio.wait([c.closed for c in self.connections])

    def log_refusal(self, host, message, *args):
        """A refused connection or request at WARNING once a minute per remote host (a misconfigured peer retries every
        heartbeat; a flood would fill the log), at DEBUG in between."""
        now = time.monotonic()
        quiet = now - self._refusals_logged.get(host, float("-inf")) < REFUSAL_LOG_INTERVAL
        if not quiet:
            self._refusals_logged[host] = now
        log.log(logging.DEBUG if quiet else logging.WARNING, message, *args)

    def too_large(self, head, length, limit, who):
        """The answer to a request too large to read: its call's InvalidRequest, or before login (limit: the
        connection's, not None) its Unauthorized; None when head is no message."""
        if limit is None:
            return too_large_answer(self._service_module, self.settings, head, length, who)
        why = (f"a request of {length} bytes before login: a connection that has not logged in may send at most "
               f"{limit} bytes (log in first)")
        self.log_refusal(who.rpartition(":")[0], "refusing a request from %s: %s", who, why)
        return refusal_answer(self._service_module, head, ("unauthorized", "failed"), why)

    def no_room(self, head, length, who):
        """The answer to a request that found no room in the port's frame memory: Unavailable (nothing was done),
        or InvalidRequest for a call that has no Unavailable."""
        why = (f"this node's memory for large requests being read (--request-memory, {self.budget.limit} bytes) "
               f"is held by other requests: this one ({length} bytes) was not read and nothing was done; try again, "
               "or another node")
        self.log_refusal(who.rpartition(":")[0], "a request of %d bytes from %s found no room in the %d bytes that "
                         "requests being read may hold together (--request-memory): answered Unavailable", length,
                         who, self.budget.limit)
        return refusal_answer(self._service_module, head, ("unavailable", "invalid"), why)


async def _begins_tls(sock):
    """False when what the client sends first is not a TLS handshake record (plain text, as a Thrift frame);
    True for a TLS hello, or a client that closed without a byte. Peeks: nothing is consumed."""
    loop = asyncio.get_running_loop()
    readable = loop.create_future()
    loop.add_reader(sock.fileno(), lambda: readable.done() or readable.set_result(None))
    try:
        await readable
    finally:
        loop.remove_reader(sock.fileno())
    first = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    return not first or first[0] == TLS_HANDSHAKE_RECORD
