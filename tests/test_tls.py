"""TLS on both ports (kvstore.net.tls): clients and peers work through it, and neither a plaintext client nor
one that never finishes its handshake stalls anyone else."""
import socket
import ssl
import threading
import time

import pytest

from kvstore.core.errors import NodeUnavailable
from kvstore.testing.localcluster import FAST_SETTINGS, Cluster
from kvstore.net.blocking import Connection
from kvstore.net.tls import CA_FILE, NODE_CERT, NODE_KEY, client_context, create_local_ca, tls_dir
from kvstore_rpc import Internode
from kvstore_rpc.ttypes import ConsistencyLevel

QUORUM = ConsistencyLevel.QUORUM
ALL = ConsistencyLevel.ALL


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("tls"), extra_args=FAST_SETTINGS + ("--tls", "--internode-tls")).start()
    yield c
    c.close()


def test_clients_and_peers_work_through_tls(tls_cluster):
    with tls_cluster.client(0) as kv:
        kv.put(b"secret-key", b"over tls", level="ALL")   # every replica: the peers' calls go through TLS too
        assert kv.get(b"secret-key", level="ALL").value == b"over tls"
    for i in tls_cluster.replicas(b"secret-key"):
        assert tls_cluster.cell_on(i, b"secret-key").value == b"over tls"
    assert "(TLS) and peers on port" in tls_cluster.log(0) and "(TLS) (data in" in tls_cluster.log(0)


def test_a_plaintext_client_against_a_tls_port_is_refused_and_others_are_served(tls_cluster):
    node = tls_cluster.nodes[1]
    with pytest.raises(NodeUnavailable):
        with Connection(node.host, node.port, 2.0, credentials=tls_cluster.credentials) as plain:
            plain.call("get", (b"secret-key", QUORUM, 0), 3)
    with tls_cluster.client(1) as kv:
        assert kv.get(b"secret-key", level="QUORUM").value == b"over tls"


def test_a_client_that_never_sends_its_hello_stalls_nobody_and_is_closed(tls_cluster):
    node = tls_cluster.nodes[2]
    silent = [socket.create_connection((node.host, port), timeout=15) for port in (node.port, node.peer_port)]
    try:
        started = time.monotonic()
        with tls_cluster.client(2) as kv:   # while both wait for a hello that never comes
            assert kv.get(b"secret-key", level="QUORUM").value == b"over tls"
        assert time.monotonic() - started < 2.0
        for sock in silent:
            assert sock.recv(1) == b""      # closed once the handshake's deadline passed
        assert time.monotonic() - started < 10.0
    finally:
        for sock in silent:
            sock.close()
    assert "no TLS handshake within 5 s" in tls_cluster.log(2)


def test_a_peer_without_a_certificate_of_the_cluster_is_refused(tls_cluster, tmp_path):
    node = tls_cluster.nodes[3]
    files = tls_dir(tls_cluster.cluster_file)
    no_cert = client_context(files / CA_FILE)                  # trusts the nodes, but shows no certificate
    other_ca, other_cert, other_key = create_local_ca(tmp_path / "other", ["127.0.0.1"])
    foreign = client_context(files / CA_FILE, other_cert, other_key)   # a certificate of another CA
    for context in (no_cert, foreign):
        with pytest.raises(NodeUnavailable):
            with Connection(node.host, node.peer_port, 2.0, service=Internode, secret=tls_cluster.secret,
                            tls=context) as connection:
                connection.call("heartbeat", (0,), 3)
    right = client_context(files / CA_FILE, files / NODE_CERT, files / NODE_KEY)
    with Connection(node.host, node.peer_port, 2.0, service=Internode, secret=tls_cluster.secret,
                    tls=right) as connection:
        assert connection.call("heartbeat", (0,), 3).node_id == 3
    assert isinstance(right, ssl.SSLContext)


def test_a_tls_alert_in_place_of_an_answer_is_named_as_tls():
    """Any TLS server answers plain text with an alert record, not a frame: the client says what to do, and
    allocates nothing for the 350 MB frame those bytes would announce."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def alert_once():
        sock, _ = listener.accept()
        with sock:
            sock.recv(4096)
            sock.sendall(b"\x15\x03\x03\x00\x02\x02\x46")   # fatal alert: protocol_version
    thread = threading.Thread(target=alert_once)
    thread.start()
    try:
        with pytest.raises(NodeUnavailable, match=rf"^127.0.0.1:{port} speaks TLS: connect with TLS \(add --tls\)$"):
            with Connection("127.0.0.1", port, 2.0) as plain:
                plain.call("describe_ring", (), 3)
    finally:
        thread.join(10)
        listener.close()
