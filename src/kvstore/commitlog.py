"""An append-only, checksummed log whose appends are durable when they return.

Record layout: [length u32][crc32 of the length u32][payload][crc32 of the payload u32],
big-endian. Invariants:
- append() returns only after the record is fsynced; concurrent appenders share
  one fsync (group commit): whoever finds no sync running syncs everything
  written so far, the others wait for it.
- A failed write (disk full) is cut back off the file, so the log stays a clean
  sequence of records and the caller gets StorageError.
- A failed fsync leaves the file's state unknown: the log refuses every later
  append until the node restarts and replays it.
- replay() tells three endings apart: a clean end; a torn tail (the last record
  incomplete, or zero-filled, as a crash mid-append leaves it), which is cut off
  with a warning; and corruption (a complete record failing its checksum),
  which raises CorruptLogError naming the file and offset.
"""
import logging
import os
import struct
import threading
import time
import zlib

from kvstore.errors import CorruptLogError, StorageError

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!II")
_TRAILER = struct.Struct("!I")
_LENGTH = struct.Struct("!I")
MAX_RECORD_BYTES = 1 << 30
RECORD_OVERHEAD = 12 + 25   # the record's framing plus a mutation's head (see cell.encode_mutation)


def encode_record(payload):
    length = _LENGTH.pack(len(payload))
    return (length + _LENGTH.pack(zlib.crc32(length)) + payload
            + _TRAILER.pack(zlib.crc32(payload)))


def scan_records(data, path="<memory>", skip_corrupt=False):
    """(payload spans [(start, end)], end of the last good record, skipped [(offset, length)]).

    Everything from the returned end on is a torn tail (or nothing). Corruption
    raises CorruptLogError, unless skip_corrupt: then the damaged bytes are
    skipped up to the next record that passes both checksums, and reported."""
    spans, skipped = [], []
    pos, size = 0, len(data)
    view, crc32 = memoryview(data), zlib.crc32
    header, trailer = _HEADER.unpack_from, _TRAILER.unpack_from
    while pos < size:
        if size - pos >= _HEADER.size:  # the common case inline: a whole record, both checksums good
            length, header_crc = header(data, pos)
            start = pos + _HEADER.size
            stop = start + length
            if (stop + _TRAILER.size <= size and crc32(view[pos:pos + 4]) == header_crc
                    and crc32(view[start:stop]) == trailer(data, stop)[0]):
                spans.append((start, stop))
                pos = stop + _TRAILER.size
                continue
        record = _record_at(data, pos, size)  # anything else: tell a torn tail from corruption
        if record is _TORN:
            break
        if isinstance(record, str):  # what is wrong with the record at pos
            if not skip_corrupt:
                raise CorruptLogError(path, pos, record)
            resume = next((p for p in range(pos + 1, size) if isinstance(_record_at(data, p, size), tuple)), size)
            skipped.append((pos, resume - pos))
            pos = resume
            continue
        span, pos = record
        spans.append(span)
    return spans, pos, skipped


_TORN = object()


def _record_at(data, pos, size):
    """((start, end) of the payload, next offset) for a good record; _TORN for a torn tail; else why
    it is corrupt."""
    if size - pos < _HEADER.size:
        return _TORN  # a header cut short
    length, header_crc = _HEADER.unpack_from(data, pos)
    if zlib.crc32(data[pos:pos + 4]) != header_crc:
        if not any(data[pos:]):
            return _TORN  # zero-filled tail: the file grew but the bytes never landed
        return "record header fails its checksum"
    end = pos + _HEADER.size + length + _TRAILER.size
    if end > size:
        return _TORN  # payload cut short
    start, stop = pos + _HEADER.size, end - _TRAILER.size
    if zlib.crc32(memoryview(data)[start:stop]) != _TRAILER.unpack_from(data, stop)[0]:
        return f"record of {length} bytes fails its checksum"
    return (start, stop), end


class CommitLog:
    def __init__(self, path, sync=os.fdatasync):
        self.path = str(path)
        self._sync = sync
        self._fd = None
        self._write_lock = threading.Lock()   # orders writes and guards the offsets
        self._sync_cond = threading.Condition()
        self._written = 0
        self._synced = 0
        self._syncing = False
        self._failed = None
        self.fsync_count = 0
        self.records_written = 0   # with fsync_count: how well group commit groups

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
        if good_end < len(data):
            log.warning("torn tail in %s: cut %d bytes at offset %d (a crash during an append; "
                        "that write was never acknowledged)", self.path, len(data) - good_end, good_end)
            os.truncate(self.path, good_end)
        self._open(good_end)
        return data, spans

    def _open(self, size):
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self._written = self._synced = size
        _sync_directory(self.path)

    def append(self, payload):
        """Append one record; durable when this returns."""
        self.append_all([payload])

    def append_all(self, payloads):
        """Append records in order; all durable when this returns (one fsync, shared)."""
        record = b"".join(encode_record(p) for p in payloads)
        with self._write_lock:
            self._check_usable()
            start = self._written
            try:
                _write_fully(self._fd, record)
            except OSError as exc:
                os.ftruncate(self._fd, start)  # keep the log a clean sequence of records
                raise StorageError(f"cannot append to {self.path}: {exc.strerror or exc}") from exc
            self._written = start + len(record)
            self.records_written += len(payloads)
            end = self._written
        self._sync_to(end)

    def _check_usable(self):
        if self._fd is None:
            raise StorageError(f"{self.path} is not open")
        if self._failed is not None:
            raise StorageError(f"{self.path} failed an fsync earlier ({self._failed}); "
                               "restart the node to replay it")

    def _sync_to(self, end):
        with self._sync_cond:
            while self._synced < end:
                if self._syncing:
                    self._sync_cond.wait()
                    continue
                if self._failed is not None:
                    raise StorageError(f"fsync of {self.path} failed: {self._failed}")
                self._syncing = True
                target = self._written
                self._sync_cond.release()
                try:
                    self._sync(self._fd)
                    self.fsync_count += 1
                except OSError as exc:
                    self._failed = exc.strerror or str(exc)
                finally:
                    self._sync_cond.acquire()
                    self._syncing = False
                    if self._failed is None:
                        self._synced = max(self._synced, target)
                    self._sync_cond.notify_all()

    def rewrite(self, payloads):
        """Replace the whole log with these payloads, atomically (write aside, fsync, rename)."""
        tmp = self.path + ".rewrite"
        with self._write_lock:
            self._check_usable()
            self._sync_to(self._written)  # no fsync may still run on the descriptor we close below
            data = b"".join(encode_record(p) for p in payloads)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    _write_fully(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, self.path)
            except OSError as exc:
                raise StorageError(f"cannot rewrite {self.path}: {exc.strerror or exc}") from exc
            os.close(self._fd)
            self._open(len(data))

    @property
    def size(self):
        return self._written

    def close(self):
        with self._write_lock:
            if self._fd is None:
                return
            try:
                self._sync_to(self._written)
            except StorageError as exc:
                log.error("closing %s without a final sync: %s", self.path, exc)
            os.close(self._fd)
            self._fd = None


def _write_fully(fd, data):
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _sync_directory(path):
    # A new or renamed file is durable only once its directory entry is.
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
