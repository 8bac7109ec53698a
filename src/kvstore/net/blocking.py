"""Thrift connections to nodes: persistent, pooled, and always under a deadline.

This is the one place where transport errors are caught: any socket or Thrift
transport failure becomes NodeUnavailable, and the connection it happened on is
thrown away (its state is unknown). Declared IDL exceptions (Unavailable,
StorageFailure, ...) pass through untouched and the connection is reused; a
node's internal error (Thrift's TApplicationException) becomes NodeFailed, on a
connection that is reused too.
"""
import socket
import ssl
import time

from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
from thrift.Thrift import TApplicationException
from thrift.transport.TTransport import TMemoryBuffer

from kvstore.core.errors import AuthenticationFailed, ConnectFailed, NodeFailed, NodeRefused, NodeUnavailable
from kvstore.net.codec import TRANSPORT_ERRORS, error_text, refusal_in
from kvstore.net.frames import FrameSocket
from kvstore.net.limits import CLIENT_MAX_CONTAINER, CLIENT_MAX_FRAME
from kvstore.net.wire import arity, check_arguments
from kvstore.net.peerauth import NotAPeer, UnexpectedAnswer, prove_to_node
from kvstore_rpc import Internode, KVStore, ttypes

LOGIN_TIMEOUT = 5.0   # a node checks one password at a time (scrypt): under a flood of logins, one waits


class Connection:
    """One open Thrift client to one node, for one caller at a time."""

    def __init__(self, host, port, connect_timeout, service=KVStore, secret=None, tls=None, credentials=None,
                 source=None, login_timeout=LOGIN_TIMEOUT):
        """service: the generated module of the service that port serves (KVStore on a client port,
        Internode on a peer port); secret: the cluster secret, proved before the first call (peer ports
        take no call without it); NotAPeer when the node and we do not share it. tls: an ssl.SSLContext
        (client side) for a node's TLS port. credentials: (user, password) to log in with before the first
        call (AuthenticationFailed when refused), its answer awaited login_timeout seconds. source: the local
        address to connect from."""
        self.address = f"{host}:{port}"
        self._service = service
        try:
            sock = socket.create_connection((host, port), timeout=connect_timeout,
                                            source_address=(source, 0) if source else None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=host)
        except ssl.SSLError as exc:
            raise NodeUnavailable(f"no TLS connection to {self.address}: {exc.reason or exc}", sent=False) from None
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {self.address}: {error_text(exc)}") from None
        self._frames = FrameSocket(sock, connect_timeout)
        if secret is not None:
            try:
                prove_to_node(self._frames, secret, self.address)
            except UnexpectedAnswer as exc:
                refusal = refusal_in(exc.frame)
                if refusal is None:
                    self._frames.close()
                    raise
                raise self._refused(refusal) from None
            except NotAPeer:
                self._frames.close()
                raise
            except TRANSPORT_ERRORS as exc:
                self._frames.close()
                raise NodeUnavailable(f"{self.address} did not finish the peer handshake: {error_text(exc)}",
                                      sent=False) from None
        # The generated client writes a call into one memory buffer and reads the answer from another;
        # the frames travel through FrameSocket.
        self.client = service.Client(
            TBinaryProtocolAccelerated(TMemoryBuffer(), string_length_limit=CLIENT_MAX_FRAME,
                                       container_length_limit=CLIENT_MAX_CONTAINER),
            TBinaryProtocolAccelerated(TMemoryBuffer()))
        self.broken = False
        self.last_answer = float("-inf")   # time.monotonic() when the last answer arrived
        self.role = None
        if credentials is not None:
            try:
                self.login(*credentials, timeout=login_timeout)
            except AuthenticationFailed:
                self.close()
                raise

    def login(self, user, password, timeout=None):
        """Log this connection in; its role ("read", "readwrite", "admin"). AuthenticationFailed when refused
        (the connection stays open, logged out)."""
        self.role = None
        try:
            self.role = self.call("login", (user, password), timeout or LOGIN_TIMEOUT).role
        except ttypes.AuthenticationFailed as exc:
            raise AuthenticationFailed(exc.why) from None
        return self.role

    def call(self, method, args, timeout):
        """Call one RPC; its answer must arrive within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        try:
            self._frames.set_timeout(timeout)
        except OSError as exc:
            raise self._lost(method, exc) from None
        self.send_call(method, args)
        return self.read_answer(method, deadline)

    def send_call(self, method, args):
        """Send one call and return without its answer (read_answer reads it). Arguments left off at
        the end are sent unset (as a caller built before they were added would send them)."""
        missing = arity(self._service, method) - len(args)
        if missing > 0:
            args = tuple(args) + (None,) * missing
        check_arguments(self._service, method, args)
        client = self.client
        try:
            client._oprot.trans = TMemoryBuffer()
            getattr(client, f"send_{method}")(*args)
            self._frames.send_frame(client._oprot.trans.getvalue())
        except TRANSPORT_ERRORS as exc:
            raise self._lost(method, exc) from None

    def read_answer(self, method, deadline):
        """The answer to the call sent before, all of it arrived before `deadline` (time.monotonic());
        the IDL's declared exceptions are raised as they are."""
        client = self.client
        try:
            client._iprot.trans = TMemoryBuffer(self._frames.read_frame(CLIENT_MAX_FRAME, deadline))
            self.last_answer = time.monotonic()
            return getattr(client, f"recv_{method}")()
        except TRANSPORT_ERRORS as exc:
            raise self._lost(method, exc) from None
        except TApplicationException as exc:
            if exc.type == TApplicationException.UNKNOWN:   # a node at its connection limit says so, and closes
                raise self._refused(exc.message) from None
            # The node is alive but failed inside (a bug on its side); the connection stays usable.
            raise NodeFailed(f"{self.address} failed inside {method}: {exc.message}") from None

    def _refused(self, why):
        """A node at its connection limit said so (as an answer, or in place of the handshake's proof): the
        connection is closed, never reused."""
        self.broken = True
        self.close()
        return NodeRefused(f"{self.address} refused the connection: {why}")

    def _lost(self, method, exc):
        """The connection's state is unknown after a transport failure: it is closed, never reused."""
        self.broken = True
        self.close()
        if self._frames.begins_like_tls():   # a TLS alert where a frame was expected
            return NodeUnavailable(f"{self.address} speaks TLS: connect with TLS (add --tls)", sent=True)
        return NodeUnavailable(f"{self.address} did not answer {method}: {error_text(exc)}", sent=True)

    def peer_closed(self):
        """True when the other side has closed the connection (checked without blocking)."""
        return self._frames.peer_closed()

    def close(self):
        self._frames.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def call_once(node, method, args, timeout, secret=None, connect_timeout=None, credentials=None, tls=None,
              peer_tls=None):
    """method on node (a NodeConfig) over a connection of its own, closed after: on its peer port, proving
    secret (with peer_tls, the context for a TLS peer port), when method is a call between nodes, else on its
    client port, logged in with credentials (with tls, for a TLS client port). NodeUnavailable when it cannot."""
    peer = hasattr(Internode, f"{method}_args")
    connection = Connection(node.host, node.peer_port if peer else node.port, connect_timeout or timeout,
                            service=Internode if peer else KVStore, secret=secret if peer else None,
                            credentials=None if peer else credentials, tls=peer_tls if peer else tls)
    try:
        return connection.call(method, args, timeout)
    finally:
        connection.close()


def probe(host, port, timeout=1.0, tls=None):
    """How a node's client port answers within timeout: ("up", its describe_ring), ("refusing", why: it is
    up but refused the connection), or ("down", why: no connection, or no answer). describe_ring needs no
    login. tls: the context, for a TLS client port."""
    try:
        connection = Connection(host, port, timeout, tls=tls)
    except NodeUnavailable as exc:
        return "down", str(exc)
    try:
        return "up", connection.call("describe_ring", (), timeout)
    except NodeRefused as exc:
        return "refusing", str(exc)
    except NodeUnavailable as exc:
        return "down", str(exc)
    finally:
        connection.close()


def ping(host, port, timeout=1.0, tls=None):
    """The node's answer (its view of the ring) if its client port answers within timeout, else None."""
    state, answer = probe(host, port, timeout, tls)
    return answer if state == "up" else None
