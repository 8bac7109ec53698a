"""Byte-ordered placement at its edges."""
import pytest

from kvstore.core.config import ConfigError, default_tokens, even_tokens, make_cluster, parse_cluster
from kvstore.core.errors import InvalidRequest
from kvstore.core.ring import Ring
from kvstore.testing.textkeys import text_keys


@pytest.fixture
def ring():
    return Ring(make_cluster(4, tokens=even_tokens(4)))  # tokens 3f, 7f, bf, ff


def owners(ring, key):
    return [n.node_id for n in ring.replicas_for(key)]


def test_even_tokens_split_the_first_byte_evenly():
    assert even_tokens(4) == [b"\x3f", b"\x7f", b"\xbf", b"\xff"]
    assert even_tokens(1) == [b"\xff"]


@pytest.mark.parametrize("count", [3, 4, 5, 6])
def test_default_tokens_spread_text_keys_over_every_node(count):
    """20,000 text keys (words, names, dates, UTF-8): every node holds between 0.67x and 1.5x of the mean bytes
    (the first-byte split put them all on 3 of 4 nodes)."""
    ring, held = Ring(make_cluster(count)), {}
    for key in text_keys(20_000):
        for node_id in ring.replica_ids(key):
            held[node_id] = held.get(node_id, 0) + len(key) + 100
    mean = sum(held.values()) / count
    assert len(held) == count and all(0.67 <= held[i] / mean <= 1.5 for i in held), {
        i: round(b / mean, 2) for i, b in held.items()}
    assert default_tokens(count)[-1] == b"\xff" and default_tokens(1) == [b"\xff"]


def test_empty_key_is_rejected(ring):
    with pytest.raises(InvalidRequest, match="empty"):
        ring.replicas_for(b"")


@pytest.mark.parametrize("key, expected", [
    (b"\x00", [0, 1, 2]),                 # the smallest key: first range
    (b"\x3f", [0, 1, 2]),                 # equal to a token: that node owns it (previous, token]
    (b"\x3f\x00", [1, 2, 3]),             # just past a token: the next node
    (b"\x40", [1, 2, 3]),
    (b"\x7f", [1, 2, 3]),
    (b"\xbf\x01", [3, 0, 1]),             # the owner is the last node: replicas wrap around
    (b"\xff", [3, 0, 1]),                 # equal to the largest token
    (b"\xff\x00", [0, 1, 2]),             # above the largest token: wraps to the first node
    (b"\xff" * 100, [0, 1, 2]),
])
def test_owner_and_replicas_clockwise(ring, key, expected):
    assert owners(ring, key) == expected


def test_replicas_are_distinct_and_capped_by_cluster_size():
    assert owners(Ring(make_cluster(2, tokens=even_tokens(2))), b"a") == [0, 1]   # tokens 7f, ff
    assert owners(Ring(make_cluster(2, tokens=even_tokens(2))), b"\x80") == [1, 0]
    assert owners(Ring(make_cluster(1)), b"a") == [0]


def test_cluster_file_round_trip_and_errors():
    nodes = parse_cluster("# comment\n0 127.0.0.1:9000 3f\n1 127.0.0.1:9001 ff  # tail\n")
    assert [(n.node_id, n.port, n.token) for n in nodes] == [(0, 9000, b"\x3f"), (1, 9001, b"\xff")]
    with pytest.raises(ConfigError, match="line 1"):
        parse_cluster("0 127.0.0.1 3f\n")
    with pytest.raises(ConfigError, match="share an token"):
        parse_cluster("0 h:1 3f\n1 h:2 3f\n")
