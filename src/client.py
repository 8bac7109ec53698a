"""The kvstore console: python3 src/client.py [--node HOST:PORT] [--cluster data/cluster.txt]"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kvstore.bootstrap import setup  # noqa: E402

setup()
from kvstore.tools.console import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
