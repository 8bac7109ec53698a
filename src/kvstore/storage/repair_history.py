"""When each token range this node holds was last repaired in full: `repairs.json` in its data directory.

Why it is durable: compaction may drop a tombstone only once a full repair of its range (every replica)
finished after the tombstone was written; a node that forgot its repairs on restart would keep tombstones
longer (safe), but one that remembered a repair that never finished could purge a tombstone a replica lacks,
and the value would come back. So a repair counts once its record is on disk (written aside, fsynced,
renamed), and a damaged file counts as no repair at all, which is the safe side, said in the log.

Each record: the range, `since` (a stamp of the cluster's clock: every write stamped below it was on every
replica when the repair ended) and `finished` (wall-clock microseconds, for the operator).
"""
import json
import logging
from pathlib import Path

from kvstore.storage.commitlog import replace_file

log = logging.getLogger(__name__)

REPAIR_FILE = "repairs.json"


class RepairHistory:
    def __init__(self, data_dir):
        self._path = Path(data_dir) / REPAIR_FILE
        self._records = {}   # (start, end) bytes -> (since, finished)

    def load(self):
        """Read the file (before the node serves). Missing: no repairs yet; damaged: none, with a warning."""
        try:
            entries = json.loads(self._path.read_text())["ranges"]
            self._records = {(bytes.fromhex(e["start"]), bytes.fromhex(e["end"])): (int(e["since"]),
                                                                                     int(e["finished"]))
                             for e in entries}
        except FileNotFoundError:
            self._records = {}
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("%s is damaged (%s): counting no range as repaired, so tombstones are kept until the "
                        "next full repair of their range", self._path, exc)
            self._records = {}

    def since(self, token_range):
        """The stamp below which every write to the range is known to be on all its replicas (0: never)."""
        return self._records.get(tuple(token_range), (0, 0))[0]

    def finished(self, token_range):
        """When the range's last full repair finished (wall-clock microseconds; 0: never)."""
        return self._records.get(tuple(token_range), (0, 0))[1]

    def recorded(self, token_range, since, finished):
        """The file's new contents once this repair is added (the record itself counts after save())."""
        records = dict(self._records)
        old = records.get(tuple(token_range), (0, 0))
        records[tuple(token_range)] = (max(old[0], since), finished)
        return records

    def save(self, records):
        """On the disk worker: write the records durably; then they count."""
        text = json.dumps({"ranges": [{"start": s.hex(), "end": e.hex(), "since": since, "finished": finished}
                                      for (s, e), (since, finished) in sorted(records.items())]}, indent=1)
        replace_file(self._path, text.encode())
        self._records = records
