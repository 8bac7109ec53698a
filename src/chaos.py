"""The fault-injection harness: python3 src/chaos.py [--duration 60] [--seed 7] [--hosts auto|netns|loopback] ..."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kvstore.bootstrap import setup  # noqa: E402

setup()
from kvstore.testing.chaos.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
