"""One connection's deadline (kvstore.net.connection): a single timer, for whichever of its limits is due.

A connection has at most one deadline running: its handshake's, a half-sent
frame's or an unread answer's (each set with set()), or the idle one (idle()).
The idle deadline moves with every request a connection finishes, thousands a
second on a busy one: instead of a timer cancelled and made again for each, the
time it is due is kept, and a timer that fires early (the connection has served
since it was armed) waits again for the rest. While a request is in progress
(busy()) it does not count.
"""


class ConnectionDeadline:
    def __init__(self, loop):
        self._loop = loop
        self._timer = None
        self._on_idle = None   # set while the timer is the idle deadline's: what to call once it is due
        self._idle_at = None   # when that is (the loop's clock); None while a request is in progress

    def set(self, seconds, then):
        """then() in `seconds`, unless cancelled or replaced first."""
        self.cancel()
        self._timer = self._loop.call_later(seconds, then)

    def cancel(self):
        self._on_idle = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def idle(self, seconds, then):
        """then() once the connection has stayed idle `seconds` from now; each call starts the count again."""
        self._idle_at = self._loop.time() + seconds
        if self._on_idle is None or self._timer.when() > self._idle_at:   # not armed, or armed too late
            self.set(seconds, self._fired)
            self._on_idle = then

    def busy(self):
        """A request is in progress: the idle deadline waits for the next idle(); any other is cancelled (the
        frame it was waiting for has arrived)."""
        if self._on_idle is None:
            self.cancel()
        else:
            self._idle_at = None

    def _fired(self):
        self._timer = None
        if self._idle_at is None:   # serving: the next idle() arms it again
            self._on_idle = None
            return
        left = self._idle_at - self._loop.time()
        if left > 0:   # it served since the timer was armed: wait for the rest
            self._timer = self._loop.call_later(left, self._fired)
            return
        then, self._on_idle = self._on_idle, None
        then()
