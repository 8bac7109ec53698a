"""The disk worker: the one thread that touches a serving node's files, so that its event loop never waits on a
disk.

The loop queues work and gets a future back. An append (`append(log, payloads)`) waits in the queue with
every other append that arrives before the worker gets to it; the worker then takes everything queued, writes
each log's records with one pwrite and one fdatasync (`CommitLog.append_all`), and completes that batch's
futures on the loop in one wake-up: the shape of Cassandra's batch commit-log writer, with no leader among the
appenders. Any other file work (a compaction's rewrite, a hint checkpoint, the clock's reservation) is a
job (`run(function, *args)`), done in queue order between batches of appends.

The worker is started and stopped by its owner (the node): `stop()` finishes what is queued and joins the
thread.
"""
import asyncio
import logging
import queue
import threading

from kvstore.core.errors import StorageError

log = logging.getLogger(__name__)


class DiskWorker:
    def __init__(self, loop, name="disk"):
        self._loop = loop
        # ("append", log, payloads, future) or ("job", function, args, future); None: stop after what is before it
        self._queue = queue.SimpleQueue()
        self._stopping = False   # read and set on the loop's thread only
        self._thread = threading.Thread(target=self._run, name=name)
        self.batches = 0   # how many batches of appends it wrote: with the logs' fsync counts, how well it groups

    def start(self):
        self._thread.start()

    def append(self, commit_log, payloads, done=None):
        """Make payloads durable in commit_log, in order. done(error or None) is called on the loop, straight from
        the batch's completion; without done: a future (on the loop), its exception the log's StorageError when
        they could not be."""
        return self._put("append", commit_log, payloads, done)

    def run(self, function, *args):
        """A future (on the loop) of function(*args), called on the worker's thread."""
        return self._put("job", function, args)

    def _put(self, kind, target, argument, done=None):
        if self._stopping:
            raise StorageError("the node is stopping: its disk worker takes no more writes")
        future = self._loop.create_future() if done is None else done
        self._queue.put((kind, target, argument, future))
        return future

    def stop(self):
        """Do what is queued, then end the thread and join it."""
        if not self._stopping:
            self._stopping = True
            self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join()

    def _run(self):
        stopped = False
        while not stopped:
            work = [self._queue.get()]   # waits for the first, then takes everything queued meanwhile
            while not self._queue.empty():
                work.append(self._queue.get())
            if None in work:
                stopped, work = True, work[:work.index(None)]
            done = []
            appends = {}   # log -> [(payloads, future)], written together before the next job
            for kind, target, argument, future in work:
                if kind == "append":
                    appends.setdefault(target, []).append((argument, future))
                    continue
                done += self._write(appends)
                appends = {}
                try:
                    done.append((future, target(*argument), None))
                except Exception as exc:   # the job's caller decides what its failure means
                    done.append((future, None, exc))
            done += self._write(appends)
            self._loop.call_soon_threadsafe(_complete, done)

    def _write(self, appends):
        done = []
        for commit_log, waiting in appends.items():
            error = None
            try:
                commit_log.append_all([payload for payloads, _ in waiting for payload in payloads])
            except Exception as exc:   # StorageError, or a bug: every append of the batch gets it
                error = exc
            self.batches += 1
            done += [(future, None, error) for _, future in waiting]
        return done


def _complete(done):
    for future, result, error in done:
        if not isinstance(future, asyncio.Future):   # a callback: called now, in this turn of the loop
            try:
                future(error)
            except Exception:
                log.exception("an append's callback failed")
            continue
        if future.cancelled():
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
