"""The benchmark: python3 src/bench.py [--clients 1,16] [--duration 5] [--json] [--cluster FILE] ..."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kvstore.bootstrap import setup  # noqa: E402

setup()
from kvstore.testing.bench.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
