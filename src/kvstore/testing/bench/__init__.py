"""The benchmark: the store's throughput and latency beside the floor that Python and Thrift allow.

load runs client processes and measures; floor serves the no-op single server
and the no-op fan-out cluster; durability measures restart, memory and hint
delivery; run ties them together (python3 src/bench.py).
"""
