"""This node's copy of the ring: `ring.json` in its data directory, the newest RingState it has adopted.

Why it is durable: a node that restarted with an older ring than it had adopted could read from replicas
that no longer hold a range, or drop at load a range it was streaming into. So a node adopts a new epoch
only once its file says so (written aside, fsynced, renamed, on the disk worker), and at start reads it
before the cluster file: the cluster file is the first epoch, used only when no ring.json exists.
A damaged file stops the node (exit 2): guessing the ring could lose data.

`cleaned.json` says a cleanup ran here (at which epoch). Only then does a node, at start, drop the keys its
ring gives it no range of, which a crash before the cleanup's compaction ended would replay: a node that
never cleaned up keeps whatever its log holds (a cluster file edited by hand, data from an older version).
"""
import json
from pathlib import Path

from kvstore.core.errors import ConfigError
from kvstore.core.ring_state import RingState
from kvstore.storage.commitlog import replace_file

RING_FILE = "ring.json"
CLEANED_FILE = "cleaned.json"


class RingFile:
    def __init__(self, data_dir):
        self.path = Path(data_dir) / RING_FILE

    def load(self, first_nodes):
        """The saved RingState, or epoch 1 of first_nodes (the cluster file's) when none was saved."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return RingState(1, tuple(first_nodes))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {self.path}: {exc}") from None
        return RingState.from_json(text, source=str(self.path))

    def save(self, state):
        """On the disk worker: make state this node's ring, durably."""
        replace_file(self.path, state.to_json().encode())

    def cleaned(self):
        """The epoch of the last cleanup here (0: none; a damaged file counts as none, the safe side)."""
        try:
            return int(json.loads((self.path.parent / CLEANED_FILE).read_text())["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def save_cleaned(self, epoch):
        """On the disk worker, before a cleanup drops anything: a cleanup runs at this epoch."""
        replace_file(self.path.parent / CLEANED_FILE, json.dumps({"epoch": epoch}).encode())
