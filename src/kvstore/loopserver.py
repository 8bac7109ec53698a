"""The node's Thrift server on its event loop: framed binary protocol, each connection a protocol object.

Why not the library's servers: they give every connection a thread, none puts
a deadline on a half-sent message, and TSSLServerSocket does the TLS handshake
inside accept(). Here, for each port:
- at most max_connections connections, and max_connections_per_host from one
  remote address; one more is told why in a frame any Thrift client raises as a
  TApplicationException (type UNKNOWN, "... at its connection limit"), then
  closed without a reset, as Redis answers "max number of clients reached";
- a TLS handshake (the loop's, under HANDSHAKE_SECONDS), and on the peer port
  the proof of the cluster secret (kvstore.peerauth) within the same time,
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
  (kvstore.dispatch); anything undecodable closes that connection only.
A client connection is served one request at a time, in order (a login comes
before the calls it allows); a peer connection is pipelined: up to
PEER_IN_FLIGHT requests at once, each answered when it is done, matched by its
sequence id. One connection's reading, limits and calls: kvstore.inbound.
"""
import asyncio
import logging
import socket
import time
from collections import Counter

from kvstore import dispatch
from kvstore.inbound import Inbound
from kvstore.peerauth import HANDSHAKE_SECONDS
from kvstore.portlimits import LoopFrameBudget, refuse, refusal_frame, too_large_answer

log = logging.getLogger(__name__)

REFUSAL_LOG_INTERVAL = 60.0      # seconds between WARNING lines for refused handshakes from one host
PEER_IN_FLIGHT = 256             # requests one peer connection may have in progress at once


class SharedDoor:
    """What every connection of a port shares when none needs state of its own (the peer port)."""

    def __init__(self, calls, idle_timeout):
        self.calls = calls
        self.idle_timeout = idle_timeout


class LoopServer:
    def __init__(self, host, port, open_door, settings, service, secret=None, tls=None, per_host_limit=None):
        """open_door(who): for each new connection, an object with .calls ({method name: function, returning
        the result or a coroutine}) and .idle_timeout (seconds, read before each request); service: the
        generated module; secret: the cluster secret a caller must prove first (the peer port); tls: an
        ssl.SSLContext (server side); per_host_limit: connections one remote address may hold."""
        self.address = (host, port)
        self.open_door = open_door   # who -> the door of a new connection
        self.service = dispatch.Service(service, settings.max_frame_bytes)
        self._service_module = service
        self.secret = secret
        self._tls = tls
        self.settings = settings
        self._per_host_limit = per_host_limit or settings.max_connections
        self.budget = LoopFrameBudget(settings.request_memory)
        self.in_flight = PEER_IN_FLIGHT if secret is not None else 1
        self._listener = None
        self._opening = set()      # tasks making accepted sockets connections (a TLS handshake under way)
        self._accepted = 0         # connections counted against the limits: opening, and open
        self.connections = set()   # the open ones (kvstore.inbound.Inbound)
        self.per_host = Counter()
        self._refusals_logged = {}
        self._refusal = refusal_frame(f"the node is at its connection limit: {settings.max_connections} connections "
                                      "open (--max-connections); try another node, or again later")
        self._host_refusal = refusal_frame(
            f"the node is at its connection limit for one address: {self._per_host_limit} connections open from "
            "yours (--max-connections-per-host); close some, or try again later")

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
            refusal = (self._refusal if self._accepted >= self.settings.max_connections else
                       self._host_refusal if self.per_host[host] >= self._per_host_limit else None)
            if refusal is not None:
                self.log_refusal(host, "refusing connection from %s:%s: %d connections open, %d from that address "
                                 "(the limits are %d and %d)", host, peer[1], self._accepted, self.per_host[host],
                                 self.settings.max_connections, self._per_host_limit)
                refuse(sock, None if self._tls else refusal)
                continue
            self._accepted += 1
            self.per_host[host] += 1
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = asyncio.get_running_loop().create_task(self._open(sock, peer), name=f"open-{host}:{peer[1]}")
            self._opening.add(task)
            task.add_done_callback(self._opening.discard)

    async def _open(self, sock, peer):
        try:   # our own deadline, so that the refusal is logged before the connection closes
            async with asyncio.timeout(HANDSHAKE_SECONDS):
                await asyncio.get_running_loop().connect_accepted_socket(
                    lambda: Inbound(self, peer), sock, ssl=self._tls,
                    ssl_handshake_timeout=HANDSHAKE_SECONDS + 1 if self._tls else None)
        except (OSError, ValueError, asyncio.CancelledError) as exc:   # ssl.SSLError, a timeout, a reset
            if not isinstance(exc, asyncio.CancelledError):
                self.log_refusal(peer[0], "refusing connection from %s:%s: no TLS handshake within %g s (%s)",
                                 peer[0], peer[1], HANDSHAKE_SECONDS, exc or type(exc).__name__)
            sock.close()
            self.released(peer[0])

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
        """A refused connection at WARNING once a minute per remote host (a misconfigured peer retries every
        heartbeat; a flood would fill the log), at DEBUG in between."""
        now = time.monotonic()
        quiet = now - self._refusals_logged.get(host, float("-inf")) < REFUSAL_LOG_INTERVAL
        if not quiet:
            self._refusals_logged[host] = now
        log.log(logging.DEBUG if quiet else logging.WARNING, message, *args)

    def too_large(self, head, length, who):
        """The answer to a request too large to read (its call's InvalidRequest), or None."""
        return too_large_answer(self._service_module, self.settings, head, length, who)
