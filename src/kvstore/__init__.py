"""kvstore: a replicated, durable key-value store spoken to over Apache Thrift.

The package never imports Thrift at import time; only the modules that speak
it (peers, rpcserver, handler, node, console, inspection) do.
"""
