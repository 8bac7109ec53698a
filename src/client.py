"""The kvstore console: python3 src/client.py [--node HOST:PORT] [--cluster data/cluster.txt]"""
from kvstore.bootstrap import run

run("kvstore.tools.console")
