"""The benchmark: python3 src/bench.py [--clients 1,16] [--duration 5] [--json] [--cluster FILE] ..."""
from kvstore.bootstrap import run

run("kvstore.testing.bench.run")
