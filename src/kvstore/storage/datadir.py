"""A node's exclusive claim on its data directory, and how the tools find who holds it.

Two processes on one data directory destroy each other's data: the second one
replays the first one's live commit log and cuts what it takes for a torn tail.
So a node claims its directory before it reads or writes anything in it: it
takes a POSIX record lock on `node.lock` and holds it for the life of the
process (the kernel drops it when the process dies, however it dies). A second
process finds the lock held and refuses to start, naming the pid that holds it.

The tools never take the lock: they ask the kernel who holds it (F_GETLK), so a
status check cannot make a starting node fail, and a node is found however it
was started (by ./server.sh, by hand, under another cwd or with another path).
Invariant: the lock file is opened exactly once by its holder and never closed
while it serves (closing any descriptor of the file would drop a POSIX lock).
"""
import fcntl
import os
import stat
import struct
from pathlib import Path

import psutil

from kvstore.core.errors import KVStoreError

LOCK_FILE = "node.lock"
COMMIT_LOG_FILE = "commit.log"   # the replica's cells (kvstore.storage.commitlog); none yet: a new or wiped node
PID_FILE = "node.pid"   # "PID CREATE_TIME", for people to read: the tools believe the lock, never this

# struct flock on Linux (x86_64 and aarch64): short l_type, short l_whence, off_t l_start, off_t l_len,
# pid_t l_pid, padded to 8 bytes.
_FLOCK = struct.Struct("@hhqqi4x")


class DataDirInUse(KVStoreError):
    """Another live process holds the data directory's lock."""

    def __init__(self, data_dir, pid):
        self.pid = pid
        super().__init__(
            f"data directory {data_dir} is in use by another node process (pid {pid}); two processes on one "
            f"data directory would destroy its commit log. Stop that node first (./server.sh stop ID, or "
            f"python3 terminate_servers.py), or give this one its own --data-dir.")


class DataDirLock:
    """The held lock; release() (or process exit) gives it up."""

    def __init__(self, data_dir, fd):
        self.data_dir = data_dir
        self._fd = fd

    def release(self):
        if self._fd is not None:
            os.close(self._fd)   # closing drops the lock
            self._fd = None


def claim(data_dir):
    """Take data_dir's lock for this process (creating the directory); DataDirInUse if another holds it."""
    data_dir = Path(data_dir)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pid = _holder_of(fd)
        os.close(fd)
        raise DataDirInUse(data_dir, pid) from None
    return DataDirLock(data_dir, fd)


def open_to_others(data_dir):
    """What in data_dir (itself, and every file and directory in it) others than its owner may read, write or
    enter, each as "PATH (mode NNN)": a node creates its directories 0700 and its files 0600, as PostgreSQL
    keeps its data directory, since the logs hold every key and value."""
    data_dir = Path(data_dir)
    loose = []
    for path in [data_dir, *sorted(data_dir.rglob("*"))]:
        try:
            mode = path.lstat().st_mode
        except OSError:
            continue   # gone meanwhile
        if mode & (stat.S_IRWXG | stat.S_IRWXO) and not stat.S_ISLNK(mode):
            loose.append(f"{path} (mode {stat.S_IMODE(mode):o})")
    return loose


def holder(data_dir):
    """The pid of the process holding data_dir's lock, or None (no directory, no lock file, or free).
    For the tools only: never call it from the holder, since closing the descriptor it opens would drop
    the holder's own lock (and a process never conflicts with its own lock, so it would answer None)."""
    try:
        fd = os.open(Path(data_dir) / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _holder_of(fd)
    finally:
        os.close(fd)


def _holder_of(fd):
    # F_GETLK asks whether a write lock on the whole file could be taken, and by whom it is held if not.
    # A read-only descriptor may ask about a write lock.
    answer = fcntl.fcntl(fd, fcntl.F_GETLK, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
    lock_type, _, _, _, pid = _FLOCK.unpack(answer)
    return None if lock_type == fcntl.F_UNLCK else pid


def write_pid_file(data_dir):
    me = psutil.Process()
    tmp = Path(data_dir) / (PID_FILE + ".tmp")
    tmp.write_text(f"{me.pid} {me.create_time()}\n")
    os.replace(tmp, Path(data_dir) / PID_FILE)


def remove_pid_file(data_dir):
    path = Path(data_dir) / PID_FILE
    recorded = _read_pid_file(path)
    if recorded and recorded[0] == os.getpid():
        path.unlink(missing_ok=True)


def _read_pid_file(path):
    try:
        pid, created = path.read_text().split()
        return int(pid), float(created)
    except (OSError, ValueError):
        return None
