"""Where a node's clock keeps its reservation (kvstore.clock): `clock` in its data directory, one number,
replaced atomically and fsynced, so that a crash at any moment leaves the old bound or the new one."""
from pathlib import Path

from kvstore.commitlog import replace_file
from kvstore.errors import ConfigError

CLOCK_FILE = "clock"


class ClockFile:
    def __init__(self, data_dir):
        self._path = Path(data_dir) / CLOCK_FILE

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
        replace_file(self._path, b"%d\n" % bound)
