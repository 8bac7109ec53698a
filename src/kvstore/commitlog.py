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
GROW_BYTES = 1 << 20        # zeros added ahead of the records at a time
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
    pos, size, content_end = 0, len(data), content_end_of(data)
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
        record = _record_at(data, pos, size, content_end)  # anything else: tell a torn tail from corruption
        if record is _TORN:
            break
        if isinstance(record, str):  # what is wrong with the record at pos
            if not skip_corrupt:
                raise CorruptLogError(path, pos, record)
            resume = next((p for p in range(pos + 1, content_end)
                           if isinstance(_record_at(data, p, size, content_end), tuple)), content_end)
            skipped.append((pos, resume - pos))
            pos = resume
            continue
        span, pos = record
        spans.append(span)
    return spans, pos, skipped


_TORN = object()


def content_end_of(data):
    """The offset just past the last non-zero byte (0 when all are zero): the zeros after it are the
    log's grown tail, or the unlanded part of a torn record."""
    view, end = memoryview(data), len(data)
    while end > 0:
        start = max(0, end - (1 << 16))
        kept = len(bytes(view[start:end]).rstrip(b"\0"))
        if kept:
            return start + kept
        end = start
    return 0


def _record_at(data, pos, size, content_end):
    """((start, end) of the payload, next offset) for a good record; _TORN for a torn tail; else why
    it is corrupt."""
    if size - pos < _HEADER.size:
        return _TORN  # a header cut short
    length, header_crc = _HEADER.unpack_from(data, pos)
    if zlib.crc32(data[pos:pos + 4]) != header_crc:
        if pos + 4 >= content_end:
            return _TORN  # its checksum and everything after are zeros: the header never finished landing
        return "record header fails its checksum"
    end = pos + _HEADER.size + length + _TRAILER.size
    if end > size:
        return _TORN  # payload cut short
    start, stop = pos + _HEADER.size, end - _TRAILER.size
    if zlib.crc32(memoryview(data)[start:stop]) != _TRAILER.unpack_from(data, stop)[0]:
        if stop >= content_end:
            return _TORN  # written into the preallocated zeros, its trailer and all after it never landed
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
            if start + len(record) > self._allocated:
                self._grow(start + len(record))
            try:
                _write_fully(self._fd, record, start)
            except OSError as exc:
                os.ftruncate(self._fd, start)  # keep the log a clean sequence of records
                self._allocated = start
                raise StorageError(f"cannot append to {self.path}: {exc.strerror or exc}") from exc
            self._written = start + len(record)
            self.records_written += len(payloads)
            end = self._written
        self._sync_to(end)

    def _grow(self, needed):
        """Zeros ahead of the records, up to at least `needed` bytes; best effort (see the docstring)."""
        size = needed + GROW_BYTES
        try:
            _write_fully(self._fd, bytes(size - self._allocated), self._allocated)
        except OSError as exc:
            log.debug("could not grow %s ahead of its records: %s", self.path, exc)
        self._allocated = os.fstat(self._fd).st_size

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
                    _write_fully(fd, data, 0)
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


def _sync_directory(path):
    # A new or renamed file is durable only once its directory entry is.
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
