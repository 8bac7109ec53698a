"""Thrift frames over a socket, in as few system calls as a request allows: the node's server and
every connection to a node use it.

A frame is a 4-byte big-endian length and that many bytes (Thrift's framed
transport). Python's own socket timeouts cost a poll() before every recv and
send, and an ioctl whenever the timeout changes; a request through the library's
transports made about nine system calls on each side. Here the socket stays in
blocking mode with the kernel's timeouts (SO_RCVTIMEO, SO_SNDTIMEO), set only
when they change (rounded up to a quarter second), and a read takes whatever has
arrived, up to 64 KiB, in one recv, keeping the rest for the next frame. So a
small request costs one recv and one send. Bytes are still read only as they
arrive: memory follows what the peer sends, not what a length prefix claims.

A TLS socket (ssl.SSLSocket) is read and written the same way, with Python's
own timeouts, which the ssl module needs.

Timeouts raise socket.timeout; the peer closing mid-frame raises EOFError; a
length over the limit raises ValueError.
"""
import math
import select
import socket
import ssl
import struct
import time

from kvstore.net.codec import FRAME_LENGTH, encode_frame

_CHUNK = 1 << 16
_TIMEVAL = struct.Struct("@ll")



class FrameSocket:
    def __init__(self, sock, timeout):
        self._tls = isinstance(sock, ssl.SSLSocket)
        sock.settimeout(None)  # blocking: the kernel's timeouts below bound every call
        self.sock = sock
        self._buffer = bytearray()
        self._timeout = None
        self.set_timeout(timeout)

    def set_timeout(self, seconds):
        """Bound each recv and send by `seconds`, rounded up to a quarter second so that deadlines
        that shrink from call to call seldom cost a system call."""
        seconds = math.ceil(max(seconds, 0.001) * 4) / 4
        if seconds != self._timeout and self._tls:
            self.sock.settimeout(seconds)
            self._timeout = seconds
        elif seconds != self._timeout:
            value = _TIMEVAL.pack(int(seconds), int(round(seconds % 1 * 1_000_000)))
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
            self._timeout = seconds

    def send_frame(self, payload):
        try:
            self.sock.sendall(encode_frame(payload))
        except BlockingIOError:
            raise socket.timeout("timed out sending") from None

    def wait_for_data(self, idle_timeout):
        """True once bytes of a next frame are here; False if the peer closed the connection first;
        socket.timeout after idle_timeout seconds of silence."""
        give_up = time.monotonic() + idle_timeout
        while not self._buffer:
            try:
                if not self._recv():
                    return False
            except socket.timeout:
                if time.monotonic() >= give_up:
                    raise
        return True

    def announced_length(self, deadline):
        """The length the next frame announces (its first 4 bytes), arrived before `deadline`."""
        while len(self._buffer) < FRAME_LENGTH.size:
            self._more(deadline)
        length, = FRAME_LENGTH.unpack_from(self._buffer)
        if length < 0:
            raise ValueError(f"frame of {length} bytes announced")
        if self.begins_like_tls():   # over every frame limit anyway: never allocated
            raise ValueError("a TLS record arrived where a frame was expected")
        return length

    def skip_frame(self, length, keep, deadline):
        """Read the next frame (of `length` bytes, as announced) and throw it away as it arrives, all of it
        before `deadline`; returns its first `keep` bytes."""
        end = FRAME_LENGTH.size + length
        while len(self._buffer) < min(end, FRAME_LENGTH.size + keep):
            self._more(deadline)
        head = bytes(self._buffer[FRAME_LENGTH.size:FRAME_LENGTH.size + keep])
        skipped = 0
        while True:
            if skipped + len(self._buffer) >= end:
                del self._buffer[:end - skipped]
                return head
            skipped += len(self._buffer)
            self._buffer.clear()
            self._more(deadline)

    def read_frame(self, max_bytes, deadline):
        """The next frame's payload, all of it arrived before `deadline` (time.monotonic())."""
        length = self.announced_length(deadline)
        if length > max_bytes:
            raise ValueError(f"frame of {length} bytes announced; the limit is {max_bytes}")
        end = FRAME_LENGTH.size + length
        if length > _CHUNK and len(self._buffer) < end:
            return self._read_large(length, deadline)
        while len(self._buffer) < end:
            self._more(deadline)
        frame = bytes(self._buffer[FRAME_LENGTH.size:end])
        del self._buffer[:end]
        return frame

    def _read_large(self, length, deadline):
        """A large frame read straight into a buffer of its size, as its bytes arrive: no regrowing copies, so
        it holds its length in memory while it is read (and twice that for a moment, when it is handed over)."""
        frame = bytearray(length)
        view = memoryview(frame)
        got = len(self._buffer) - FRAME_LENGTH.size
        view[:got] = self._buffer[FRAME_LENGTH.size:]
        self._buffer.clear()
        while got < length:
            if time.monotonic() > deadline:
                raise socket.timeout("deadline passed")
            try:
                count = self.sock.recv_into(view[got:], min(length - got, 1 << 20))
            except BlockingIOError:  # SO_RCVTIMEO passed
                raise socket.timeout("timed out") from None
            if not count:
                raise EOFError("the peer closed the connection mid-frame")
            got += count
        view.release()
        return bytes(frame)

    def peer_closed(self):
        """True when the other side has closed the connection or sent what nobody asked for
        (checked without blocking, in one system call)."""
        if self._buffer:
            return True
        if self._tls:   # TLS: anything readable (data, or the close's alert) means it is not ours to reuse
            return bool(self.sock.pending() or select.select([self.sock], [], [], 0)[0])
        try:
            return self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    def close(self):
        """Close the socket; a thread blocked reading it wakes at once (it reads the end of the stream)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass   # not connected, or already shut
        try:
            self.sock.close()
        except OSError:
            pass

    def begins_like_tls(self):
        """True when what arrived begins as a TLS record (an alert or a handshake), not a frame: the other
        side speaks TLS."""
        head = self._buffer[:3]
        return len(head) == 3 and head[0] in (0x15, 0x16) and head[1] == 3 and head[2] <= 4

    def _more(self, deadline):
        if time.monotonic() > deadline:
            raise socket.timeout("deadline passed")
        if not self._recv():
            raise EOFError("the peer closed the connection mid-frame")

    def _recv(self):
        try:
            chunk = self.sock.recv(_CHUNK)
        except BlockingIOError:  # SO_RCVTIMEO passed
            raise socket.timeout("timed out") from None
        self._buffer += chunk
        return len(chunk)
