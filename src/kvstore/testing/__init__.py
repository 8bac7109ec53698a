"""Testing: real clusters for the tests and the harnesses, kept out of the product.

The local cluster (real node processes, with verbs that say what survives: crash, stop, restart, wipe), network
namespaces, the clock shim, the chaos harness (chaos/) and the benchmark with its floors (bench/, and the
threaded server of its thread floor).

May import: anything of kvstore; nothing of the product imports it.
"""
