"""Peers prove they know the cluster secret before their first call (kvstore.net.peerauth).

A stranger on the peer port, a caller with the wrong secret, and a node of
another cluster are refused before any of their calls is read; the cluster's
own nodes work as before.
"""
import os
import subprocess

import pytest
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.transport.TSocket import TSocket
from thrift.transport.TTransport import TFramedTransport, TTransportException

from kvstore.core.config import CHECKOUT
from kvstore.tools import processes
from kvstore.core.errors import ConfigError
from kvstore.testing.localcluster import FAST_SETTINGS, wait_for
from kvstore.net.peerauth import NotAPeer, create_secret, read_secret, secret_path
from kvstore.net.blocking import Connection
from kvstore_rpc import Internode
from kvstore_rpc.ttypes import Cell, ConsistencyLevel, Mutation

YEAR_2100 = 4_102_444_800 * 10**6


def test_a_stranger_on_the_peer_port_is_closed_before_its_call_is_read(shared_cluster):
    node = shared_cluster.nodes[1]
    sock = TSocket(node.host, node.peer_port)
    sock.setTimeout(10_000)
    transport = TFramedTransport(sock)
    transport.open()
    try:
        with pytest.raises((TTransportException, EOFError, ConnectionError)):
            Internode.Client(TBinaryProtocol(transport)).replica_write(
                Mutation(b"stranger", Cell(b"from 2100", YEAR_2100)))
    finally:
        transport.close()
    assert shared_cluster.cell_on(1, b"stranger") is None
    assert "sent no peer handshake" in shared_cluster.log(1)


def test_a_caller_with_the_wrong_secret_is_refused_and_learns_why(shared_cluster):
    node = shared_cluster.nodes[2]
    with pytest.raises(NotAPeer, match="not a node of this cluster|does not take our cluster secret"):
        Connection(node.host, node.peer_port, 2.0, service=Internode, secret=b"w" * 32)
    right = read_secret(secret_path(shared_cluster.cluster_file))
    connection = Connection(node.host, node.peer_port, 2.0, service=Internode, secret=right)
    try:
        assert connection.call("heartbeat", (0,), 5).node_id == 2
    finally:
        connection.close()


def test_a_node_given_another_clusters_secret_cannot_join(cluster, tmp_path):
    cluster.stop(3)
    other = tmp_path / "other.secret"
    create_secret(other)
    cluster.procs[3] = processes.spawn_node(cluster.cluster_file, 3, cluster.node_dir(3),
                                            FAST_SETTINGS + ("--cluster-secret", str(other)))
    cluster.wait_ready(3)
    cluster.wait_seen(0, 3, up=False)
    wait_for(lambda: cluster.seen_up(3, 0) is False, 10, "node 3 to see node 0 down")
    wait_for(lambda: "does not know our cluster secret" in cluster.log(3), 10, "node 3 to say why")
    wait_for(lambda: "it has another secret" in cluster.log(0), 10, "node 0 to say why")
    key = cluster.key_for([0, 1, 2])
    assert cluster.call(0, "put", key, b"v", ConsistencyLevel.QUORUM, 0).acknowledged   # the rest still serve


def test_a_secret_others_can_read_stops_start_up(tmp_path):
    loose = tmp_path / "cluster.secret"
    create_secret(loose)
    os.chmod(loose, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        read_secret(loose)
    (tmp_path / "cluster.txt").write_text("0 127.0.0.1:29990 ff 29991\n")
    started = subprocess.run(["python3", "src/server.py", "--cluster", str(tmp_path / "cluster.txt"), "--id", "0"],
                             cwd=CHECKOUT, capture_output=True, text=True, timeout=60)
    assert started.returncode == 2 and f"chmod 600 {loose}" in started.stderr
