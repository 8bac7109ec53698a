"""Peers prove they belong to the cluster: a mutual challenge over the cluster secret.

Every node of a cluster is given the same secret (`cluster.secret` beside the
cluster file: 32 random bytes, hex, readable only by its owner). Before the
first call on a peer connection, each side proves it knows the secret without
sending it, and learns that the other side does too:

    caller -> node:   HELLO + caller's nonce (32 bytes)
    node   -> caller: node's nonce + HMAC(secret, "node" + caller's nonce + node's nonce)
    caller -> node:   HMAC(secret, "caller" + node's nonce + caller's nonce)

Each message is one frame (framing.FrameSocket). Fresh nonces on both sides
mean a recorded exchange proves nothing later, and the two proofs differ by
their label, so one cannot be played back as the other. A node closes a
connection that fails, or that has not finished within the handshake's
deadline, before it reads any Thrift message from it. This proves membership;
it does not hide traffic (internode TLS is for that).
"""
import hashlib
import hmac
import os
import secrets
import stat
import time
from pathlib import Path

from kvstore.core.errors import ConfigError, NodeUnavailable

SECRET_FILE = "cluster.secret"
HELLO = b"kvstore-peer/1 "
NONCE_BYTES = 32
HANDSHAKE_SECONDS = 5.0   # a connection that has not proved itself by then is closed
PROOF_BYTES = hashlib.sha256().digest_size
MAX_ANSWER = 4096   # a proof, or a short message in its place (a node at its connection limit says so)


class NotAPeer(NodeUnavailable):
    """The other side of a peer connection did not prove it knows the cluster secret."""

    def __init__(self, message):
        super().__init__(message, sent=False)


class UnexpectedAnswer(NotAPeer):
    """The node answered the hello with something other than a proof (for example, that it is at its
    connection limit); `frame` is what it sent, for the caller to read."""

    def __init__(self, address, frame):
        self.frame = frame
        super().__init__(f"{address} answered the peer handshake with {len(frame)} bytes that are not a proof")


def secret_path(cluster_file):
    """Where a cluster's secret lives: beside its cluster file."""
    return Path(cluster_file).resolve().parent / SECRET_FILE


def create_secret(path):
    """Write a new random secret to path, readable only by its owner; returns it."""
    value = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value.hex() + "\n")
    return value


def read_secret(path):
    """The secret at path; ConfigError naming the fix when it is missing, malformed or readable by others."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except FileNotFoundError:
        raise ConfigError(f"no cluster secret at {path}: ./server.sh creates one with a new cluster; across hosts, "
                          "copy the cluster's secret to every node (mode 0600)") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"the cluster secret {path} is readable by others (mode {stat.S_IMODE(mode):o}); "
                          f"chmod 600 {path}")
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) < 16:
        raise ConfigError(f"the cluster secret {path} is not at least 16 bytes in hex")
    return value


def _proof(secret, label, first, second):
    return hmac.new(secret, label + first + second, hashlib.sha256).digest()


def hello():
    """(the caller's first frame, its nonce)."""
    ours = secrets.token_bytes(NONCE_BYTES)
    return HELLO + ours, ours


def answer_proof(secret, ours, answer, address):
    """The caller's last frame, from the node's answer to its hello; NotAPeer when the node's proof is wrong,
    UnexpectedAnswer when it is not a proof at all."""
    if len(answer) != NONCE_BYTES + PROOF_BYTES:
        raise UnexpectedAnswer(address, answer)
    theirs, proof = answer[:NONCE_BYTES], answer[NONCE_BYTES:]
    if not hmac.compare_digest(proof, _proof(secret, b"node", ours, theirs)):
        raise NotAPeer(f"{address} does not know our cluster secret: it is not a node of this cluster")
    return _proof(secret, b"caller", theirs, ours)


def hung_up(address):
    return NotAPeer(f"{address} closed the connection at the handshake: it does not take our cluster secret "
                    "(is it a node of another cluster?)")


def prove_to_node(frames, secret, address):
    """The calling side of the handshake, on a fresh connection; NotAPeer when the node's proof is wrong."""
    deadline = time.monotonic() + HANDSHAKE_SECONDS
    first, ours = hello()
    frames.send_frame(first)
    try:
        answer = frames.read_frame(MAX_ANSWER, deadline)
    except EOFError:
        raise hung_up(address) from None
    frames.send_frame(answer_proof(secret, ours, answer, address))


HELLO_BYTES = len(HELLO) + NONCE_BYTES


def answer_hello(secret, first, who):
    """The node's side, step one: (its answer to the caller's hello, the proof it must get back); NotAPeer when
    the hello is not one."""
    if not first.startswith(HELLO) or len(first) != HELLO_BYTES:
        raise NotAPeer(f"{who} sent no peer handshake (a client on the peer port?)")
    theirs, ours = first[len(HELLO):], secrets.token_bytes(NONCE_BYTES)
    return ours + _proof(secret, b"node", theirs, ours), _proof(secret, b"caller", ours, theirs)


def check_proof(expected, proof, who):
    """The node's side, step two; NotAPeer unless the caller proved it knows the secret."""
    if not hmac.compare_digest(proof, expected):
        raise NotAPeer(f"{who} does not know the cluster secret")
