"""A wall clock of its own for a test node: libfaketime, steered through a file, behind a small shim that keeps
the monotonic clock real (clockshim/realtime_only.c)."""
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

FAKETIME_LIBRARY = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"   # Debian's faketime package
CLOCK_SHIM = Path(__file__).resolve().parent / "clockshim" / "realtime_only.c"


@functools.lru_cache(maxsize=None)
def clock_preload():
    """LD_PRELOAD for a node with a wall clock of its own: libfaketime, behind clockshim/realtime_only.c
    (compiled once, into a temporary directory) so that only the real-time clock reaches it. Without a C
    compiler: libfaketime alone, which works, several times slower (see the C file)."""
    digest = hashlib.sha256(CLOCK_SHIM.read_bytes()).hexdigest()[:12]
    built = Path(tempfile.gettempdir()) / f"kvstore-realtime-only-{os.getuid()}-{digest}.so"
    if not built.exists():
        compiler = shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            return FAKETIME_LIBRARY
        partial = built.with_suffix(f".{os.getpid()}.tmp")
        subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(partial), str(CLOCK_SHIM), "-ldl"], check=True,
                       capture_output=True)
        os.replace(partial, built)
    return f"{built} {FAKETIME_LIBRARY}"
