"""The network: how bytes become calls and calls become bytes, for the node and for its clients.

The node's server (server.py: one event loop, its connections in connection.py, their idle timers), the one
frame codec (codec.py), what a port lets a connection cost (limits.py), the node's links to its peers
(peer_link.py), the blocking connection the client library and the tools use (blocking.py, frames.py), the
peers' proof of the cluster secret, TLS, and the one mapping between the IDL's types and ours (wire.py).

May import: core.
"""
