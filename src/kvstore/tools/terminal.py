"""The console on a terminal: line editing and history, paging, and saying what it waits for.

kvstore.tools.console runs the commands; this module is what only a person at a
terminal needs. History lives in ~/.kvstore_history and holds commands only
(not the answers typed at a ---MORE--- prompt). Once a call has waited a second
for its node, a note on stderr says which node and how long it will wait; Ctrl-C
stops waiting (the connection is dropped, and a write may or may not have been
applied, which the note after it says).
"""
import os
import sys
import threading

HISTORY_FILE = os.path.expanduser("~/.kvstore_history")
NOTICE_AFTER = 1.0   # seconds a call waits before the note


class WaitNotice:
    """A context manager around one call to a node: after `after` seconds of waiting, one line on `out`.
    Its timer thread is stopped and joined when the call ends."""

    def __init__(self, address, method, timeout, out=sys.stderr, after=NOTICE_AFTER):
        self._text = (f"(waiting for {address[0]}:{address[1]} to answer {method}; giving up after "
                      f"{timeout:g} s; Ctrl-C to stop waiting)") if address else None
        self._out = out
        self._timer = threading.Timer(after, self._say)

    def _say(self):
        print(self._text, file=self._out, flush=True)

    def __enter__(self):
        if self._text:
            self._timer.start()
        return self

    def __exit__(self, *exc):
        self._timer.cancel()
        if self._timer.is_alive():
            self._timer.join()


def _readline():
    try:
        import readline  # line editing and history for input()
    except ImportError:
        return None
    return readline


def ask_more(readline=None):
    """The ---MORE--- prompt between pages of a scan: False to stop. Its answer is not kept in the history."""
    readline = readline or _readline()
    before = readline.get_current_history_length() if readline else 0
    try:
        answer = input("---MORE--- (Enter for the next page, q to stop) ")
    except (EOFError, KeyboardInterrupt):
        print()
        return False
    if readline and readline.get_current_history_length() > before:
        readline.remove_history_item(readline.get_current_history_length() - 1)
    return answer.strip().lower() not in ("q", "quit")


def watch(timeout):
    """The client's watch hook for a terminal: a WaitNotice around each call to a node."""
    return lambda address, method: WaitNotice(address, method, timeout)


def run_interactive(client, make_console):
    """The prompt loop: make_console(client, ask_more=...) runs each line. The client should have been
    made with watch=watch(its timeout)."""
    readline = _readline()
    if readline is not None:
        try:
            readline.read_history_file(HISTORY_FILE)
        except OSError:
            pass  # no history yet
    console = make_console(client, ask_more=lambda: ask_more(readline))
    print("kvstore console; type help for the commands, exit or Ctrl-D to leave.")
    try:
        while True:
            try:
                line = input("kvstore> ")
            except EOFError:
                print()
                break
            except KeyboardInterrupt:
                print()
                continue
            if line.strip().lower() in ("exit", "quit"):
                break
            try:
                console.execute(line)
            except KeyboardInterrupt:
                client.close()   # the connection's state is unknown: the next command opens a new one
                print("\nInterrupted: stopped waiting. A write may or may not have been applied.", file=sys.stderr)
    finally:
        client.close()
        if readline is not None:
            try:
                readline.write_history_file(HISTORY_FILE)
            except OSError:
                pass
    return 0
