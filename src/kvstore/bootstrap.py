"""Make an entry point runnable with the plain `python3`: paths, and the project's virtualenv.

Every entry point puts src/ on sys.path and calls setup() before importing
anything else of ours. setup() adds gen-py/ to the path and, when the packages
we need (thrift, psutil) are missing from this interpreter, re-executes the
same command under .venv/bin/python (made by ./server.sh or ./run_tests.sh).
"""
import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
# Where ./server.sh keeps a local cluster, and so where every tool looks for it by default.
DEFAULT_DATA_DIR = Path(os.environ.get("KVSTORE_DATA_DIR", ROOT / "data"))
DEFAULT_CLUSTER_FILE = DEFAULT_DATA_DIR / "cluster.txt"
REQUIRED = ("thrift", "psutil")


def add_paths():
    for path in (ROOT / "src", ROOT / "gen-py"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def setup():
    add_paths()
    missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
    if not missing:
        return
    if VENV_PYTHON.exists() and os.environ.get("KVSTORE_REEXEC") != "1":
        os.environ["KVSTORE_REEXEC"] = "1"
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON)] + sys.argv)
    sys.exit(f"missing Python packages: {', '.join(missing)}. Run ./server.sh (or ./run_tests.sh) once: "
             "it creates .venv and installs requirements.txt into it.")
