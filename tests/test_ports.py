"""Two doors per node: clients on the client port, other nodes on the peer port.

A client connection cannot reach a call meant for nodes: on the client port it
does not exist. So an ordinary client can no longer plant a cell stamped in the
year 2100 (which would make every later write of the key a silent no-op), hand
a node hints.
"""
import pytest
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TApplicationException
from thrift.transport.TSocket import TSocket
from thrift.transport.TTransport import TFramedTransport

from kvstore.core.config import PEER_PORT_OFFSET, parse_cluster
from kvstore_rpc import Internode
from kvstore_rpc.ttypes import Cell, ConsistencyLevel, Mutation

YEAR_2100 = 4_102_444_800 * 10**6
QUORUM = ConsistencyLevel.QUORUM


def internode_client_on(host, port):
    """The stock Thrift client of the internode service, pointed at whatever port it is given."""
    sock = TSocket(host, port)
    sock.setTimeout(10_000)
    transport = TFramedTransport(sock)
    transport.open()
    return Internode.Client(TBinaryProtocol(transport)), transport


@pytest.mark.parametrize("call, args", [
    ("replica_write", (Mutation(b"victim", Cell(b"from 2100", YEAR_2100)),)),
    ("replica_write_batch", ([Mutation(b"victim", Cell(b"from 2100", YEAR_2100))],)),
    ("deliver_hints", ([Mutation(b"victim", Cell(None, YEAR_2100))],)),
    ("replica_read", (b"victim",)),
    ("heartbeat", (2,)),
])
def test_a_call_meant_for_nodes_does_not_exist_on_the_client_port(shared_cluster, call, args):
    node = shared_cluster.nodes[1]
    client, transport = internode_client_on(node.host, node.port)
    try:
        with pytest.raises(TApplicationException) as refused:
            getattr(client, call)(*args)
        assert refused.value.type == TApplicationException.UNKNOWN_METHOD
        assert f"Unknown function {call}" in refused.value.message
    finally:
        transport.close()


def test_a_far_future_write_from_a_client_is_not_applied_and_later_writes_win(shared_cluster):
    node = shared_cluster.nodes[1]
    client, transport = internode_client_on(node.host, node.port)
    try:
        with pytest.raises(TApplicationException):
            client.replica_write(Mutation(b"victim", Cell(b"from 2100", YEAR_2100)))
    finally:
        transport.close()
    shared_cluster.call(1, "put", b"victim", b"mine", QUORUM, 0)
    assert shared_cluster.call(2, "get", b"victim", QUORUM, 0).cell.value == b"mine"
    assert all(shared_cluster.cell_on(i, b"victim").timestamp < YEAR_2100 for i in shared_cluster.replicas(b"victim"))


def test_a_cluster_file_from_before_the_peer_port_means_the_client_port_plus_100():
    old, new = parse_cluster("0 127.0.0.1:9000 7f\n1 127.0.0.1:9001 ff 7001\n")
    assert (old.port, old.peer_port) == (9000, 9000 + PEER_PORT_OFFSET) and new.peer_port == 7001
