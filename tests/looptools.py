"""What the unit tests of the node's loop-owned parts need: a test run as a coroutine on a loop of its own,
and the disk worker and background tasks those parts are built with (stopped and joined after)."""
import asyncio
import contextlib
import functools

from kvstore.storage.diskworker import DiskWorker
from kvstore.core.tasks import Background


def on_loop(test):
    """Run the async test function on a new event loop (pytest's fixtures still reach it)."""
    @functools.wraps(test)
    def run(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))
    return run


@contextlib.asynccontextmanager
async def workers():
    """(a started DiskWorker, a Background), stopped and joined when the block ends."""
    disk, background = DiskWorker(asyncio.get_running_loop()), Background()
    disk.start()
    try:
        yield disk, background
    finally:
        await background.stop(10)
        disk.stop()
