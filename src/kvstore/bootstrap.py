"""What the checkout's entry scripts (src/server.py, inspector.py, ...) need to run with the plain `python3`.

run(module) puts gen-py/ on the path and, when the packages the project needs (thrift, psutil) are missing
from this interpreter, runs the same command again under .venv/bin/python (made by ./server.sh or
./run_tests.sh); then it calls the module's main() and exits with what it returns. An installed kvstore
(pip install .) has console entry points instead and needs none of this.
"""
import importlib
import importlib.util
import os
import sys

from kvstore.core.config import CHECKOUT as ROOT   # no third-party import: safe before setup()

VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
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


def run(module):
    """Run module's main() as this process's program, with the paths and the interpreter it needs."""
    setup()
    sys.exit(importlib.import_module(module).main())
