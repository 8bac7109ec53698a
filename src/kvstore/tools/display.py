"""How the console and the inspector show things: times, nodes, results (bytes: kvstore.core.notation)."""
import datetime

from kvstore.core.errors import AuthenticationFailed, InvalidRequest, StaleRead, TimedOut, Unauthorized, Unavailable

# The errors a node answers with, shown as the IDL names them: "Unavailable: 1 of 3 replicas alive, ...".
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
