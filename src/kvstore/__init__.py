"""kvstore: a replicated, durable key-value store spoken to over Apache Thrift.

The package is built in layers, each a sub-package whose __init__ says what it may import:
core <- storage <- cluster <- service <- node; net uses core; client uses net and core; tools use client,
net, storage and core; testing (the local cluster, chaos, the benchmark) uses anything and nothing uses it.
docs/ARCHITECTURE.md draws it. bootstrap.py is for the checkout's entry scripts only.
"""
