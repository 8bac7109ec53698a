"""Where a node's clock keeps its reservation (kvstore.core.clock): `clock` in its data directory, one number, so
that a crash at any moment leaves the old bound or the new one.

A busy node renews its reservation several times a second, so a save must be cheap for the disk every node
shares: a new number of the same length (16 digits, until the year 2286) is written over the old one in place,
in one write well inside a sector, and fdatasynced: the file's size and directory entry do not change, so no
filesystem journal commit holds up the other nodes' fsyncs. A first save, or one whose length differs, replaces
the file atomically (written aside, fsynced, renamed)."""
import os
from pathlib import Path

from kvstore.storage.commitlog import replace_file
from kvstore.core.errors import ConfigError

CLOCK_FILE = "clock"


class ClockFile:
    def __init__(self, data_dir):
        self._path = Path(data_dir) / CLOCK_FILE
        self._fd = None
        self._length = None   # the length of what the file holds, when this object wrote it

    def load(self):
        try:
            text = self._path.read_text()
        except FileNotFoundError:
            return 0
        try:
            return int(text.split()[0])
        except (ValueError, IndexError):
            raise ConfigError(f"{self._path} is damaged ({text[:40]!r}): it holds the clock's reservation, "
                              "one number of microseconds. Write a time after every write this node made "
                              "(for example the current time in microseconds plus an hour), then start") from None

    def save(self, bound):
        data = b"%d\n" % bound
        if self._fd is not None and len(data) == self._length:
            os.pwrite(self._fd, data, 0)
            os.fdatasync(self._fd)
            return
        replace_file(self._path, data)
        self.close()
        self._fd = os.open(self._path, os.O_WRONLY)
        self._length = len(data)

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
