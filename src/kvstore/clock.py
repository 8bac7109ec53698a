"""Write timestamps: microseconds since the epoch, strictly increasing per process.

If the wall clock steps back, timestamps keep climbing from the last one given,
so two writes through the same coordinator are always ordered as they were made.
"""
import threading
import time


class Clock:
    def __init__(self, wall=time.time):
        self._wall = wall
        self._last = 0
        self._lock = threading.Lock()

    def now(self):
        """A timestamp greater than every one this clock returned before."""
        with self._lock:
            self._last = max(int(self._wall() * 1_000_000), self._last + 1)
            return self._last
