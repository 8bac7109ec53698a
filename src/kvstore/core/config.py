"""The cluster file and a node's settings, as frozen dataclasses.

The cluster file is what every tool reads: one node a line,
`ID HOST:PORT TOKEN PEER_PORT`: the client port, the token in hex (the last
key of the node's range), and the port other nodes call it on (the internode
service). A line without PEER_PORT (a file written before nodes had two ports)
means the client port + 100. Lines starting with # are comments. It is the ring's
first epoch: once the ring changes (./server.sh add, move, balance, ...), each node
follows its own ring.json and ./server.sh keeps this file in step.
"""
import os
from dataclasses import dataclass
from pathlib import Path

from kvstore.core.errors import ConfigError

# The checkout this package runs from (src/kvstore in it), or None when it is installed (pip install .).
_PACKAGE = Path(__file__).resolve().parents[1]
CHECKOUT = _PACKAGE.parents[1] if _PACKAGE.parent.name == "src" else None
# Where ./server.sh keeps a local cluster, and so where every tool looks for it by default: $KVSTORE_DATA_DIR,
# else data/ in the checkout, else data/ in the working directory.
DEFAULT_DATA_DIR = Path(os.environ.get("KVSTORE_DATA_DIR", (CHECKOUT or Path.cwd()) / "data"))
DEFAULT_CLUSTER_FILE = DEFAULT_DATA_DIR / "cluster.txt"

MAX_KEY_BYTES = 64 * 1024
# Stock Thrift clients refuse a frame over 16,384,000 bytes (the Python library's TFramedTransport default;
# other languages' libraries are alike). Every answer a node gives a client stays within this budget: a scan
# page, a multi_get or a dump page stops at it and says where to go on.
MAX_ANSWER_BYTES = 16_000_000
ENTRY_OVERHEAD = 64   # what one key and its cell cost in an answer beyond their bytes (field headers, stamps)
# The largest --max-value-bytes: one value and its key must fit in one answer.
MAX_VALUE_LIMIT = MAX_ANSWER_BYTES - MAX_KEY_BYTES - 4096


PEER_PORT_OFFSET = 100   # a node's peer port when the cluster file does not name one: its client port + 100


@dataclass(frozen=True)
class NodeConfig:
    node_id: int
    host: str
    port: int          # the client port: the KVStore service
    token: bytes
    peer_port: int = 0   # the internode service; 0: port + PEER_PORT_OFFSET

    def __post_init__(self):
        if not self.peer_port:
            object.__setattr__(self, "peer_port", self.port + PEER_PORT_OFFSET)

    @property
    def address(self):
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Settings:
    """What one node needs to know besides the ring. Times are in seconds."""
    max_value_bytes: int = 15 * 1024 * 1024   # at most MAX_VALUE_LIMIT, so every value can be read back
    request_timeout: float = 2.0        # one deadline per client request, passed down the fan-out
    connect_timeout: float = 1.0
    heartbeat_interval: float = 0.5
    hint_window: float = 3 * 3600.0     # hints older than this are dropped, as Cassandra's max_hint_window
    gc_grace: float = 10 * 24 * 3600.0  # tombstones are kept this long, as Cassandra's gc_grace_seconds
    idle_timeout: float = 3600.0        # a connection silent between requests this long is closed
    read_timeout: float = 10.0          # once a frame has begun, all of it must arrive within this
    max_connections: int = 512          # on each of the two ports
    max_connections_per_host: int = 128 # client connections from one remote address
    max_unauthenticated_connections: int = 64   # client connections that have not logged in yet
    admin_reserved_connections: int = 8         # client connection slots only an admin may log in to
    max_connections_per_user: int = 128         # client connections one user may hold logged in
    request_memory: int = 128 * 1024 * 1024   # bytes that large requests being read may hold, per port
    commitlog_sync_period: float = 0.0  # 0: fsync before acknowledging; N: every N seconds (not durable at ack)
    max_key_bytes: int = MAX_KEY_BYTES
    max_clock_offset: float = 0.5       # seconds ahead of this node's clock a timestamp from elsewhere is believed
    repair_interval: float = 60.0       # seconds between automatic repairs of the ranges a node is first replica of
    repair_rate: float = 4 * 2**20      # bytes a second a repair may send (0: no bound)

    @property
    def max_frame_bytes(self):
        # A put carries a key, a value and a few dozen bytes of framing.
        return self.max_value_bytes + self.max_key_bytes + 4096


def entry_bytes(key, value):
    """What one key and its value (None: a tombstone) cost in an answer, for the answer budget."""
    return len(key) + len(value or b"") + ENTRY_OVERHEAD


# How often English words begin with each letter a..z (percent): the model of text keys the default tokens split.
_FIRST_LETTERS = (5.7, 6.0, 9.4, 6.1, 3.9, 4.1, 3.3, 3.7, 3.9, 1.1, 1.0, 3.1, 5.6, 2.2, 2.5, 7.7, 0.5, 6.0, 11.0, 5.0,
                  2.9, 1.5, 2.7, 0.05, 0.4, 0.3)


def _text_weight(byte):
    """How likely a byte of a text key is, by the model: lowercase words most, then capitals and digits, other
    printable ASCII, the lead bytes of UTF-8 sequences; anything else hardly at all."""
    if 0x61 <= byte <= 0x7a:
        return 4.0 * 26 * _FIRST_LETTERS[byte - 0x61] / 100
    if 0x41 <= byte <= 0x5a:
        return 26 * _FIRST_LETTERS[byte - 0x41] / 100
    if 0x30 <= byte <= 0x39:
        return 1.0
    if 0x20 <= byte <= 0x7e:
        return 0.2
    if 0xc2 <= byte <= 0xf4:
        return 0.4
    return 0.01


def default_tokens(count):
    """Tokens of a new cluster, for text keys: each node's range holds an equal share of keys drawn from the model
    of _text_weight (by their first two bytes); the last token is ff. For 4 nodes: 6064, 6866, 7365, ff (digits,
    capitals and punctuation; a..h; h..s; s..z and UTF-8). Keys that share a long prefix (user:00001, ...) still
    fall in one range: ./server.sh add --token, move or balance place tokens by the data."""
    if not 1 <= count <= 256:
        raise ConfigError(f"a cluster has 1 to 256 nodes, not {count}")
    weights = [_text_weight(b) for b in range(256)]
    total = sum(weights) ** 2
    tokens, seen = [], 0.0
    for first in range(256):
        for second in range(256):
            seen += weights[first] * weights[second] / total
            while len(tokens) < count - 1 and seen >= (len(tokens) + 1) / count:
                tokens.append(bytes([first, second]))
    return tokens + [b"\xff"]


def even_tokens(count):
    """Tokens that split the first byte evenly (for 4 nodes 3f, 7f, bf, ff): for keys whose first byte is spread
    evenly (hashes, binary keys); the test harness's clusters use them."""
    if not 1 <= count <= 256:
        raise ConfigError(f"a cluster has 1 to 256 nodes, not {count}")
    return [bytes([(i + 1) * 256 // count - 1]) for i in range(count)]


def make_cluster(count, host="127.0.0.1", base_port=9000, peer_base_port=None, tokens=None):
    """Node i on client port base_port + i and peer port peer_base_port + i (default base_port + 100), with
    tokens (default: default_tokens)."""
    peer_base_port = base_port + PEER_PORT_OFFSET if peer_base_port is None else peer_base_port
    return [NodeConfig(i, host, base_port + i, token, peer_base_port + i)
            for i, token in enumerate(tokens or default_tokens(count))]


def format_cluster(nodes):
    lines = ["# kvstore cluster file: one node a line: ID HOST:PORT TOKEN PEER_PORT",
             "# (PORT: clients; TOKEN in hex: the node owns (previous token, token]; PEER_PORT: other nodes)"]
    lines += [f"{n.node_id} {n.host}:{n.port} {n.token.hex()} {n.peer_port}" for n in nodes]
    return "\n".join(lines) + "\n"


def write_cluster_file(path, nodes):
    with open(path, "w", encoding="utf-8") as f:
        f.write(format_cluster(nodes))


def parse_cluster(text, source="cluster file"):
    nodes = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            node_id, address, token_hex, *peer = line.split()
            if len(peer) > 1:
                raise ValueError("too many fields")
            host, port = address.rsplit(":", 1)
            node = NodeConfig(int(node_id), host, int(port), bytes.fromhex(token_hex), int(peer[0]) if peer else 0)
        except ValueError:
            raise ConfigError(
                f"{source} line {number}: expected 'ID HOST:PORT TOKEN_HEX [PEER_PORT]', got {raw!r}") from None
        if not node.token:
            raise ConfigError(f"{source} line {number}: the token must not be empty")
        nodes.append(node)
    if not nodes:
        raise ConfigError(f"{source} names no nodes")
    ports = [(n.host, p) for n in nodes for p in (n.port, n.peer_port)]
    if len(set(ports)) != len(ports):
        raise ConfigError(f"{source}: two ports are the same (each node's client and peer ports must differ "
                          "from each other and from every other node's on the same host)")
    for what, values in (("id", [n.node_id for n in nodes]), ("token", [n.token for n in nodes]),
                         ("address", [n.address for n in nodes])):
        if len(set(values)) != len(values):
            raise ConfigError(f"{source}: two nodes share an {what}")
    return nodes


def read_cluster_file(path):
    try:
        with open(path, encoding="utf-8") as f:
            return parse_cluster(f.read(), source=str(path))
    except FileNotFoundError:
        raise ConfigError(f"no cluster file at {path}; start the cluster with ./server.sh first") from None
