"""The commit log's record format, and reading a log back: where its good records are, and
whether what follows them is a torn tail (cut, a crash mid-append) or corruption (refused).

Record layout: [length u32][crc32 of the length u32][payload][crc32 of the payload u32],
big-endian. The log is written into zeros grown ahead of it (commitlog.py), so
a record torn by a crash can also end in zeros: a record whose checksum
trailer and everything after it are still zero is torn; a record whose
trailer landed but whose middle did not is reported as corruption (the safe
side).
"""
import struct
import zlib

from kvstore.core.errors import CorruptLogError

_HEADER = struct.Struct("!II")
RECORD_HEADER = _HEADER.size   # bytes before a record's payload: a payload at p is the record at p - this
_TRAILER = struct.Struct("!I")
_LENGTH = struct.Struct("!I")
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
