"""The node's background tasks, owned in one place: read repair, hint storage and delivery, heartbeats,
compaction. Work that no request waits for is started here, with a name, never inside whatever callback
completes a request; a task that fails is logged, never silent; `stop()` lets them finish within a deadline,
cancels the rest and awaits every one."""
import asyncio
import logging

log = logging.getLogger(__name__)


class Background:
    def __init__(self):
        self._tasks = set()
        self.stopping = False   # stop() has begun: work that checks it starts nothing new
        self._stopped = False   # stop() has ended: spawn() starts nothing

    def spawn(self, coroutine, name):
        """Run coroutine as a task of the node's; returns the task. Once stop() has ended, nothing more is run:
        the coroutine is closed, and a future already done with None is returned in its place."""
        if self._stopped:
            coroutine.close()
            log.debug("not started: %s (the node has stopped its tasks)", name)
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task):
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    def __len__(self):
        return len(self._tasks)

    async def wait(self, timeout):
        """Wait up to timeout for every task to end, those they start meanwhile too; True if none is left."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._tasks:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            await asyncio.wait(set(self._tasks), timeout=left)
        return True

    async def stop(self, timeout):
        """Start nothing new that checks `stopping`; wait up to timeout for the tasks to end, then cancel those
        left and await them all. Returns the names of those that had to be cancelled."""
        self.stopping = True
        await self.wait(timeout)
        left = set(self._tasks)
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left)
        self._stopped = True
        return sorted(task.get_name() for task in left)


def settle(future, error, result):
    """Complete future with result, or with error when it is not None (a future already done is left as it is)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
