"""Run one kvstore node: python3 src/server.py --id ID [--cluster data/cluster.txt] [--data-dir DIR] ..."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kvstore.bootstrap import setup  # noqa: E402

setup()
from kvstore.node.node import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
