"""Run one kvstore node: python3 src/server.py --id ID [--cluster data/cluster.txt] [--data-dir DIR] ..."""
from kvstore.bootstrap import run

run("kvstore.node.node")
