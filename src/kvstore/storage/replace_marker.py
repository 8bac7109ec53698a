"""`replacing.json` in a node's data directory: the token ranges a node being replaced has not synced yet.

Why durable: a replaced node answers no reads of a range until it has synced the range from all its other
replicas. If it crashed mid-way and forgot which ranges were still missing, it would come back answering ONE
reads from a half-filled replica. So the list is written before the node serves, rewritten as each range is
done, and removed at the end; a damaged file counts as every range still missing (the safe side).
"""
import json
import logging
import os
from pathlib import Path

from kvstore.storage.commitlog import replace_file

log = logging.getLogger(__name__)

REPLACE_FILE = "replacing.json"


class ReplaceMarker:
    def __init__(self, data_dir):
        self.path = Path(data_dir) / REPLACE_FILE

    def load(self, held):
        """The held ranges still to sync (a set of (start, end)), or None when no replace is under way."""
        try:
            entries = json.loads(self.path.read_text())["pending"]
            pending = {(bytes.fromhex(e["start"]), bytes.fromhex(e["end"])) for e in entries}
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("%s is damaged (%s): counting every range this node holds as not synced yet", self.path, exc)
            return set(held)
        return {r for r in held if tuple(r) in pending}

    def save(self, pending):
        """Write the ranges still to sync (durably; on the disk worker once the node serves)."""
        text = json.dumps({"pending": [{"start": s.hex(), "end": e.hex()} for s, e in sorted(pending)]}, indent=1)
        replace_file(self.path, text.encode())

    def remove(self):
        """The replace is over (on the disk worker)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
