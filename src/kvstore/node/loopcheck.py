"""The rule that a node's loop never blocks, checked where it runs under test.

With KVSTORE_CHECK_LOOP=1 in its environment (the test clusters set it), a
node runs its loop in asyncio's debug mode, which logs every callback or task
step that holds the loop longer than SLOW_CALLBACK seconds ("Executing ... took
... seconds"), and logs as an error, with the stack, every call on the loop's
thread that syncs a file or opens one for writing: those belong to the disk
worker. A test reads the nodes' logs and fails on either.
"""
import builtins
import functools
import logging
import os
import threading
import traceback

log = logging.getLogger(__name__)

ENV = "KVSTORE_CHECK_LOOP"
SLOW_CALLBACK = 0.2   # seconds; the loop's own debug threshold is 0.1, which a cold start can pass
VIOLATION = "the loop thread called"
_WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def enabled():
    return os.environ.get(ENV) == "1"


def watch(loop):
    """From now on (the node serves), check the rule on this thread, the loop's, if enabled."""
    if not enabled():
        return
    loop.slow_callback_duration = SLOW_CALLBACK
    thread = threading.get_ident()

    def guarded(function, what, applies=lambda *args, **kwargs: True):
        @functools.wraps(function)
        def call(*args, **kwargs):
            if threading.get_ident() == thread and applies(*args, **kwargs):
                log.error("%s %s:\n%s", VIOLATION, what, "".join(traceback.format_stack(limit=10)))
            return function(*args, **kwargs)
        return call
    os.fsync = guarded(os.fsync, "os.fsync")
    os.fdatasync = guarded(os.fdatasync, "os.fdatasync")
    os.pwrite = guarded(os.pwrite, "os.pwrite")
    os.open = guarded(os.open, "os.open for writing", lambda path, flags, *a, **k: flags & _WRITING)
    builtins.open = guarded(builtins.open, "open for writing",
                            lambda file, mode="r", *a, **k: any(c in mode for c in "wax+"))
    log.info("checking that the loop never blocks: callbacks over %g s and file syncs or writes on its thread "
             "are logged", SLOW_CALLBACK)
