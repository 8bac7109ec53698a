"""What ./server.sh runs: python3 src/launcher.py [start [N] | crash ID | stop ID | restart ID | status]."""
from kvstore.bootstrap import run

run("kvstore.tools.launcher")
