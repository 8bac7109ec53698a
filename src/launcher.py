"""What ./server.sh runs: python3 src/launcher.py [start [N] | crash ID | stop ID | restart ID | status]."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kvstore.bootstrap import setup  # noqa: E402

setup()
from kvstore.tools.launcher import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
