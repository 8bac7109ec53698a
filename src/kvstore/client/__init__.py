"""The client library: what a Python program imports to use a cluster (pip install .).

    from kvstore.client import Client
    client = Client.from_cluster_file("data/cluster.txt")
    client.put(b"k", b"v", level="QUORUM")

Its errors (InvalidRequest, Unavailable, TimedOut, StaleRead, Unauthorized, AuthenticationFailed,
NodeUnavailable) and client_context(ca_file), for nodes started with --tls, are here too.

May import: core, net.
"""
from kvstore.client.client import Client
from kvstore.client.results import ReadDetail, Value, Written
from kvstore.core.errors import (AuthenticationFailed, ConfigError, InvalidRequest, KVStoreError, NodeFailed,
                                 NodeUnavailable, StaleRead, TimedOut, Unauthorized, Unavailable)
from kvstore.net.tls import client_context

__all__ = ["Client", "ReadDetail", "Value", "Written", "client_context", "KVStoreError", "InvalidRequest",
           "Unavailable", "TimedOut", "StaleRead", "Unauthorized", "AuthenticationFailed", "NodeUnavailable",
           "NodeFailed", "ConfigError"]
