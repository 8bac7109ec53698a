"""The node's Thrift server: framed binary protocol, one thread per connection.

Why not the library's servers: TThreadPoolServer pins a pool thread to every
idle connection (new clients wait), and none of them put a deadline on a
half-sent message. Here:
- each connection has its own thread, up to max_connections; one more is told why
  in a frame any Thrift client raises as a TApplicationException (type UNKNOWN,
  "... at its connection limit"), then closed, as Redis answers "max number of
  clients reached";
- between requests a connection may stay idle up to idle_timeout;
- once a frame's length has arrived, the whole frame must arrive within
  read_timeout, or the connection is closed (a stalled or slow-loris client
  costs one thread for a bounded time and nobody else waits for it);
- a frame may announce at most max_frame_bytes, and its bytes are read as they
  arrive, so memory follows what a client really sends, not what it claims;
- the protocol's string and container length limits are set explicitly;
- anything undecodable closes that connection, never the server.
Frames are read and written through framing.FrameSocket (one recv and one send
for a small request).
"""
import logging
import socket
import threading
import time

from thrift.protocol.TBinaryProtocol import TBinaryProtocol, TBinaryProtocolAccelerated
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TMemoryBuffer

from kvstore.framing import FrameSocket, encode_frame
from kvstore.peerauth import HANDSHAKE_SECONDS, NotAPeer

log = logging.getLogger(__name__)

MAX_CONTAINER_LENGTH = 100_000   # items in one list or map of a request (hint batches are 100)
REFUSAL_LOG_INTERVAL = 60.0      # seconds between WARNING lines for refused handshakes from one host


class RpcServer:
    def __init__(self, host, port, processor, settings, handshake=None):
        """handshake(frames, who): run on each new connection before any request is read (the peer
        port's proof of the cluster secret); raising NotAPeer, a timeout or a malformed frame closes it."""
        self._address = (host, port)
        self._handshake = handshake
        self._processor = processor
        self._settings = settings
        self._listener = None
        self._stopped = threading.Event()
        self._active = 0
        self._lock = threading.Lock()
        self._refusals_logged = {}   # remote host -> when a refused handshake from it was last logged at WARNING
        self._refusal = refusal_frame(f"the node is at its connection limit: {settings.max_connections} connections "
                                      "open (--max-connections); try another node, or again later")

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
                time.sleep(0.05)  # for example, out of file descriptors: do not spin
                continue
            with self._lock:
                full = self._active >= self._settings.max_connections
                if not full:
                    self._active += 1
            if full:
                log.warning("refusing connection from %s:%s: %d connections open (the limit)",
                            peer[0], peer[1], self._settings.max_connections)
                _refuse(sock, self._refusal)
                continue
            threading.Thread(target=self._serve_connection, args=(sock, peer), daemon=True).start()

    def stop(self):
        self._stopped.set()
        if self._listener is not None:
            self._listener.close()

    def _serve_connection(self, sock, peer):
        who = f"{peer[0]}:{peer[1]}"
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # One pair of protocol objects per connection; each request swaps in its own buffers.
        iprot, oprot = self._protocol(TMemoryBuffer()), self._protocol(TMemoryBuffer())
        # Every recv and send is bounded by read_timeout: a client that stops reading is cut off too.
        frames = FrameSocket(sock, self._settings.read_timeout)
        try:
            if self._handshake is not None:
                frames.set_timeout(HANDSHAKE_SECONDS)   # a connection that proves nothing is not kept waiting on
                try:
                    self._handshake(frames, who)
                except NotAPeer as exc:
                    self._log_refusal(peer[0], "refusing connection from %s: %s", who, exc)
                    return
                except (ValueError, socket.timeout, EOFError) as exc:
                    self._log_refusal(peer[0], "refusing connection from %s: it sent no peer handshake within "
                                      "%g s (%s)", who, HANDSHAKE_SECONDS, exc)
                    return
                frames.set_timeout(self._settings.read_timeout)
            while not self._stopped.is_set():
                if not frames.wait_for_data(self._settings.idle_timeout):
                    break  # closed between requests: the normal end
                deadline = time.monotonic() + self._settings.read_timeout
                frames.send_frame(self._process(frames.read_frame(self._settings.max_frame_bytes, deadline),
                                                iprot, oprot))
        except socket.timeout:
            log.info("closing connection from %s: it stalled (no complete request within the deadline)", who)
        except (OSError, EOFError) as exc:
            log.debug("connection from %s ended: %s", who, exc)
        except Exception as exc:  # undecodable input: close this connection, keep serving everyone else
            log.warning("closing connection from %s: malformed request (%s: %s)", who, type(exc).__name__, exc)
        finally:
            sock.close()
            with self._lock:
                self._active -= 1

    def _log_refusal(self, host, message, *args):
        """A refused handshake at WARNING once a minute per remote host (a misconfigured peer retries every
        heartbeat), at DEBUG in between."""
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

    def _process(self, request, iprot, oprot):
        """One request frame in, one response frame out."""
        iprot.trans, oprot.trans = TMemoryBuffer(request), TMemoryBuffer()
        self._processor.process(iprot, oprot)
        return oprot.trans.getvalue()


def refusal_frame(message):
    """A framed Thrift exception message that any Thrift client, whatever it called, raises as a
    TApplicationException of type UNKNOWN carrying `message`."""
    buffer = TMemoryBuffer()
    protocol = TBinaryProtocol(buffer)
    protocol.writeMessageBegin("", TMessageType.EXCEPTION, 0)
    TApplicationException(TApplicationException.UNKNOWN, message).write(protocol)
    protocol.writeMessageEnd()
    return encode_frame(buffer.getvalue())


def _refuse(sock, frame):
    """Send the refusal, then close without a reset: what the client sent is drained first, so the close
    is an orderly end and the client reads the refusal before it. Never blocks the accepting thread."""
    try:
        sock.setblocking(False)
        sock.send(frame)   # a few hundred bytes: an empty socket buffer always takes them
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(1 << 16):
            pass
    except OSError:
        pass   # nothing more to read (BlockingIOError), or the client is already gone
    finally:
        sock.close()
