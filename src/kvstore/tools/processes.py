"""Finding, starting and signalling this project's node processes, and nothing else.

A node holds its data directory's lock (kvstore.storage.datadir) for as long as it
runs, and writes `node.pid` ("PID CREATE_TIME") beside it for people to read.
The tools find a node by asking the kernel which process holds that lock, then
check with psutil that the process runs a kvstore node. So a node is
found however it was started (by ./server.sh or by hand, with or without
--data-dir), and a pid file left behind by a dead node, or naming a process
that is not ours, is never believed. Processes are never found by name.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from kvstore.core.config import CHECKOUT
from kvstore.storage import datadir

# How a node is started: the checkout's src/server.py, or, installed, the package's `python -m kvstore.node`.
NODE_COMMAND = [str(CHECKOUT / "src" / "server.py")] if CHECKOUT else ["-m", "kvstore.node"]
LOG_FILE = "node.log"
OUT_FILE = "node.out"   # what a node prints outside its log


def find_node(data_dir):
    """The running node process that owns data_dir, or None (never a process that is not ours)."""
    pid = datadir.holder(data_dir)
    if pid is None:
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE or not runs_server(process.cmdline()):
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return process


def runs_server(cmdline):
    """True when cmdline runs a kvstore node: src/server.py, or python -m kvstore.node."""
    return (any(Path(arg).name == "server.py" and Path(arg).parent.name == "src" for arg in cmdline)
            or any(arg == "-m" and name == "kvstore.node" for arg, name in zip(cmdline, cmdline[1:])))


def spawn_node(cluster_file, node_id, data_dir, extra_args=(), python=sys.executable, prefix=(), env=None):
    """Start a node in its own session, logging to data_dir/node.log; returns the Popen.

    prefix: a command to run it under, e.g. ["ip", "netns", "exec", NAME] (it must exec the node);
    env: variables to add to its environment (the tests' libfaketime, for a clock of its own)."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    command = [*prefix, python, *NODE_COMMAND, "--cluster", str(Path(cluster_file).resolve()),
               "--id", str(node_id), "--data-dir", str(data_dir), "--log-file", str(data_dir / LOG_FILE), *extra_args]
    # The node writes (and rotates) node.log itself; what it prints outside its log (a crash before its log is
    # set up) goes to node.out.
    fd = os.open(data_dir / OUT_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log_file:
        return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=CHECKOUT,
                                env=dict(os.environ, **env) if env else None)


def signal_node(data_dir, sig):
    """Send sig to the node of data_dir; its pid, or None when no node of ours runs there."""
    process = find_node(data_dir)
    if process is None:
        return None
    process.send_signal(sig)
    return process.pid


def stop_node(data_dir, timeout=15.0):
    """SIGTERM, wait up to timeout, then SIGKILL. Returns the pid stopped, or None."""
    process = find_node(data_dir)
    if process is None:
        return None
    process.send_signal(signal.SIGTERM)
    if not wait_gone(process, timeout):
        process.kill()
        wait_gone(process, 5.0)
    return process.pid


def wait_gone(process, timeout):
    """True once the process has exited. A zombie counts as gone: psutil's wait() would wait for
    whoever reaps it, and a node started by server.sh is reaped by init, in its own time."""
    def gone():
        try:
            return process.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True
    return wait_until(gone, timeout, interval=0.01)


def log_tail(data_dir, lines=15):
    """The last lines of the node's log, and of what it printed outside it (node.out), if anything."""
    tails = []
    for name in (LOG_FILE, OUT_FILE):
        try:
            text = (Path(data_dir) / name).read_text(errors="replace")
        except OSError:
            continue
        if text.strip():
            tails.append("\n".join(text.splitlines()[-lines:]))
    return "\n".join(tails) or "(no log)"


def wait_until(predicate, timeout, interval=0.05):
    """Poll predicate until it is true or timeout seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
