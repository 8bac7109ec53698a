"""How the console and the inspector show things: times, nodes, results, cells, sizes (bytes: kvstore.core.notation)."""
import datetime
import time

from kvstore.core.cell import visible
from kvstore.core.notation import show
from kvstore.core.errors import AuthenticationFailed, InvalidRequest, StaleRead, TimedOut, Unauthorized, Unavailable

# The errors a node answers with, shown as the IDL names them: "Unavailable: 1 of 3 replicas alive, ...".
VALUE_WIDTH = 40
NAMED_ERRORS = (InvalidRequest, Unavailable, TimedOut, StaleRead, Unauthorized, AuthenticationFailed)


def nodes(ids):
    if not ids:
        return "no node"
    return ("node " if len(ids) == 1 else "nodes ") + ", ".join(str(i) for i in ids)


def show_time(timestamp_us):
    moment = datetime.datetime.fromtimestamp(timestamp_us / 1e6, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def written_text(written, level):
    line = f"timestamp {written.timestamp}, acknowledged by {nodes(written.acknowledged)} at {level.name}"
    if written.hinted:
        line += f"; hint kept for {nodes(written.hinted)}"
    return line


def stamp_text(value):
    text = f"timestamp {value.timestamp} ({show_time(value.timestamp)})"
    if value.expires_at:
        text += f", expires {show_time(value.expires_at)}"
    return text


def error_text(exc):
    """An error as a tool prints it: the IDL's name of a node's answer before its message (whose own text never
    repeats it), anything else (a node down, a bad configuration) by its message alone."""
    kind = next((kind for kind in NAMED_ERRORS if isinstance(exc, kind)), None)
    return f"{kind.__name__}: {exc}" if kind else str(exc)


def show_cell(cell, now=None):
    """A stored cell in one line: its value (or that it is a tombstone), timestamp and expiry."""
    now = time.time() * 1e6 if now is None else now
    if cell.value is None:
        return f"{'(tombstone)':<{VALUE_WIDTH}}  {cell.timestamp}  deleted {show_time(cell.expires)}"
    text = f"{show(cell.value, VALUE_WIDTH):<{VALUE_WIDTH}}  {cell.timestamp}"
    if cell.expires:
        text += f"  {'expired' if cell.expires <= now else 'expires'} {show_time(cell.expires)}"
    return text
def bytes_json(data):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"hex": data.hex()}
def cell_kinds(cells, now=None):
    """{"key_count": live keys, "tombstones": ..., "expired": ...} of a replica's cells."""
    now = time.time() * 1e6 if now is None else now
    live = sum(1 for c in cells.values() if visible(c, now) is not None)
    tombstones = sum(1 for c in cells.values() if c.value is None)
    return {"key_count": live, "tombstones": tombstones, "expired": len(cells) - live - tombstones}
def cell_counts(cells):
    """How many live keys a replica holds, and the tombstones and expired cells beside them, in words."""
    kinds = cell_kinds(cells)
    text = count_of(kinds["key_count"], "key")
    others = [count_of(kinds["tombstones"], "tombstone")] if kinds["tombstones"] else []
    others += [f"{kinds['expired']} expired"] if kinds["expired"] else []
    return text + (f" (and {', '.join(others)})" if others else "")
def count_of(number, noun):
    return f"{number} {noun}{'' if number == 1 else 's'}"
def size_text(count):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
