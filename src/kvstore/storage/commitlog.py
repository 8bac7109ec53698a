"""An append-only, checksummed log whose appends are durable when they return.

Records and reading them back: records.py. Invariants:
- append_all() returns only after its records are fsynced, written with one
  pwrite and one fdatasync. While a node serves, its disk worker
  (diskworker.py) is the one writer, and hands over in one call every append
  queued while it was busy: group commit without leaders or waiting appenders
  (Cassandra's batch commit-log writer). A lock keeps a write, a rewrite, the
  periodic sync and close apart.
- A failed write (disk full) is cut back off the file, so the log stays a clean
  sequence of records and every record of that append_all gets StorageError.
- A failed fsync leaves the file's state unknown: the log refuses every later
  append until the node restarts and replays it.
- With a sync period (an operator's choice, Cassandra's commitlog_sync: periodic),
  an append returns once written to the file, and a thread syncs every period:
  a write then survives the node's process crashing, not the machine.
- The file grows ahead of the records, 1 MiB of zeros at a time, and records are
  written into those zeros: an fdatasync that does not change the file's size
  needs no filesystem journal commit, which on one shared disk made every
  replica's fsync wait for the others'. A clean close cuts the zeros off; after
  a crash they are the log's preallocated tail. Growing is best effort: when it
  fails (disk full), the record is written as is and fails on its own.
- replay() tells three endings apart: a clean end (perhaps followed by zeros);
  a torn tail (the last record incomplete: cut short, or in the zeros with its
  checksum trailer still zero, as a crash mid-append leaves it), which is cut
  off with a warning; and corruption (any other record failing its checksum),
  which raises CorruptLogError naming the file and offset. A torn record whose
  trailer landed but whose middle did not is reported as corruption: the safe
  side, and the operator's --skip-corrupt-records recovers everything else.
"""
import logging
import os
import threading
import time

from kvstore.core.errors import StorageError
from kvstore.storage.records import content_end_of, encode_record, scan_records

log = logging.getLogger(__name__)

GROW_BYTES = 1 << 20        # zeros added ahead of the records at a time


class CommitLog:
    def __init__(self, path, sync=None, sync_period=None):
        """sync: how the file is synced (os.fdatasync, looked up at each call); sync_period: None (the
        default) syncs before every append returns; a number of seconds syncs that often instead, in a
        thread of its own that close() joins (not durable at acknowledgement)."""
        self.path = str(path)
        self._sync = sync or (lambda fd: os.fdatasync(fd))
        self._sync_period = sync_period
        self._closing = threading.Event()
        self._synced = 0        # the offset the last sync covered
        self._periodic = None   # the periodic sync's thread
        self._fd = None
        self._lock = threading.Lock()   # held across every write, sync, rewrite and close of the file
        self._written = 0
        self._failed = None
        self.fsync_count = 0
        self.records_written = 0   # with fsync_count: how well the disk worker groups appends

    def replay(self, skip_corrupt=False):
        """Open the log and return every payload in it, in order (see replay_spans)."""
        data, spans = self.replay_spans(skip_corrupt)
        return [data[start:end] for start, end in spans]

    def replay_spans(self, skip_corrupt=False):
        """Open the log; (its bytes, [(start, end)] of every payload in order). See the module docstring.

        skip_corrupt (an operator's choice, after a CorruptLogError): skip damaged records,
        keep the damaged file aside as PATH.corrupt-TIME, and go on from a clean log."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        spans, good_end, skipped = scan_records(data, self.path, skip_corrupt)
        if skipped:
            aside = f"{self.path}.corrupt-{int(time.time())}"
            os.replace(self.path, aside)
            for offset, length in skipped:
                log.warning("skipped %d damaged bytes at offset %d of %s", length, offset, self.path)
            log.warning("recovered %d records from %s; the damaged file is kept as %s",
                        len(spans), self.path, aside)
            self._open(0)
            self.rewrite([data[start:end] for start, end in spans])
            os.close(self._fd)  # replay the clean log as if it had always been so
            return self.replay_spans()
        if good_end < len(data) and good_end >= content_end_of(data):
            os.truncate(self.path, good_end)  # the zeros grown ahead of the records: nothing was lost
        elif good_end < len(data):
            log.warning("torn tail in %s: cut %d bytes at offset %d (a crash during an append; "
                        "that write was never acknowledged)", self.path, len(data) - good_end, good_end)
            os.truncate(self.path, good_end)
        self._open(good_end)
        return data, spans

    def _open(self, size):
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self._written = self._synced = size
        self._allocated = os.fstat(self._fd).st_size
        if self._sync_period is not None and self._periodic is None:
            self._periodic = threading.Thread(target=self._sync_periodically, name="commitlog-sync")
            self._periodic.start()
        _sync_directory(self.path)

    def append(self, payload):
        """Append one record; durable when this returns."""
        self.append_all([payload])

    def append_all(self, payloads):
        """Append records in order; all durable when this returns (one write, one fsync)."""
        data = b"".join(encode_record(p) for p in payloads)
        with self._lock:
            self._check_usable()
            error = self._write_and_sync(data, len(payloads))
        if error is not None:
            raise error

    def _write_and_sync(self, data, count):
        """None, or the StorageError every record of data gets. Called holding the lock."""
        start = self._written
        if start + len(data) > self._allocated:
            self._grow(start + len(data))
        try:
            _write_fully(self._fd, data, start)
        except OSError as exc:
            os.ftruncate(self._fd, start)  # keep the log a clean sequence of records
            self._allocated = start
            return StorageError(f"cannot append to {self.path}: {exc.strerror or exc}")
        self._written = start + len(data)
        self.records_written += count
        if self._sync_period is not None:
            return None   # the periodic thread syncs it
        return self._sync_written()

    def _sync_written(self):
        """Sync everything written; None, or the StorageError of a failed sync (every later append
        is then refused). Called holding the lock."""
        try:
            self._sync(self._fd)
        except OSError as exc:
            self._failed = exc.strerror or str(exc)
            return StorageError(f"fsync of {self.path} failed: {self._failed}")
        self.fsync_count += 1
        self._synced = self._written
        return None

    def _sync_periodically(self):
        while not self._closing.wait(self._sync_period):
            with self._lock:
                if self._fd is not None and self._failed is None and self._synced < self._written:
                    error = self._sync_written()
                    if error is not None:
                        log.error("%s", error)

    def _grow(self, needed):
        """Zeros ahead of the records, up to at least `needed` bytes; best effort (see the docstring)."""
        size = needed + GROW_BYTES
        try:
            _write_fully(self._fd, bytes(size - self._allocated), self._allocated)
        except OSError as exc:
            log.debug("could not grow %s ahead of its records: %s", self.path, exc)
        self._allocated = os.fstat(self._fd).st_size

    def _check_usable(self):
        """StorageError when the log takes no write: it is closed, or an fsync failed."""
        if self._fd is None:
            raise StorageError(f"{self.path} is not open")
        if self._failed is not None:
            raise StorageError(f"{self.path} failed an fsync earlier ({self._failed}); restart the node to replay it")

    def rewrite(self, payloads):
        """Replace the whole log with these payloads, atomically (write aside, fsync, rename)."""
        with self._lock:
            self._check_usable()
            data = b"".join(encode_record(p) for p in payloads)
            try:   # the directory is synced when the new file is opened
                replace_file(self.path, data, sync_directory=False)
            except OSError as exc:
                raise StorageError(f"cannot rewrite {self.path}: {exc.strerror or exc}") from exc
            os.close(self._fd)
            self._open(len(data))

    @property
    def size(self):
        """Bytes of records written."""
        return self._written

    @property
    def file_bytes(self):
        """The file's size on disk: its records and the zeros allocated ahead of them."""
        return self._allocated

    def close(self):
        self._closing.set()
        if self._periodic is not None:
            self._periodic.join()
        with self._lock:
            if self._fd is None:
                return
            if self._synced < self._written and self._failed is None:
                self._sync_written()   # periodic sync: what is written is durable after a clean stop
            try:
                os.ftruncate(self._fd, self._written)  # a clean log ends at its last record
            except OSError as exc:
                log.warning("could not cut the preallocated zeros off %s: %s", self.path, exc)
            os.close(self._fd)
            self._fd = None


def _write_fully(fd, data, offset):
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def replace_file(path, data, sync=None, sync_directory=True):
    """Replace the small file at path by data atomically: written aside, synced, renamed over it (a crash
    leaves the old content or the new), and with sync_directory the rename made durable too. OSError when
    it cannot."""
    temporary = f"{path}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_fully(fd, data, 0)
        (sync or os.fsync)(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    if sync_directory:
        _sync_directory(path)


def _sync_directory(path):
    # A new or renamed file is durable only once its directory entry is.
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
