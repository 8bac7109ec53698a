"""How a node slows password guessing down, and logs failed logins without letting them fill its log.

Each failed login counts against its user name and against the address it came
from. Once either has failed, the next login for it is checked only after a
delay that doubles with each failure (0.1 s, 0.2 s, ... at most 5 s), one at a
time: guesses against one user, or from one address, come at most one per
delay, however many connections they use. A login that would wait more than
MAX_WAIT in that line is refused at once. A success clears its user's and its
address's count; counts are forgotten FORGET_SECONDS after their last failure.
Every refusal is the same AuthenticationFailed, whichever of the name or the
password was wrong. The cost of this: while someone guesses a user's password,
that user's own logins wait in the same line (at most MAX_WAIT each), and may be
refused until the guessing stops.

Failed logins are logged as one WARNING line per address per LOG_INTERVAL: the
first at once, the ones after it counted and reported with the next line.
"""
import logging
import time

log = logging.getLogger("kvstore.service.gate")   # the throttle logs as the gate it serves

FIRST_DELAY = 0.1
MAX_DELAY = 5.0
MAX_WAIT = 2 * MAX_DELAY
FORGET_SECONDS = 600.0
LOG_INTERVAL = 60.0
_MAX_KEYS = 10_000   # names and addresses remembered at once; the oldest go first past it


class LoginThrottled(Exception):
    """Too many failed logins for this user or from this address: refused without checking the password."""

    def __init__(self, seconds):
        self.seconds = seconds
        super().__init__(f"too many failed logins for this user or from this address: try again in "
                         f"{max(1, round(seconds))} s")


class LoginThrottle:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._failures = {}   # ("user", name) or ("address", host) -> (time of the last failure, failures)
        self._next = {}       # the same keys -> when the next login for it may be checked
        self._logged = {}     # host -> (when its last line was logged, failures since then not logged)

    def admit(self, user, host):
        """Seconds to wait before checking this login (its turn is taken); LoginThrottled past MAX_WAIT."""
        now = self._clock()
        keys = (("user", user), ("address", host))
        start = max([now] + [self._next.get(key, now) for key in keys])
        if start - now > MAX_WAIT:
            raise LoginThrottled(start - now)
        gap = max(self._delay(key, now) for key in keys)
        if gap:   # the turn after this one, for a login that comes while this one is checked
            for key in keys:
                self._next[key] = max(self._next.get(key, now), start + gap)
        return start - now

    def failed(self, user, host, why):
        """Count a failed login (why: what to log of the first of an interval) and log it as the module says."""
        now = self._clock()
        for key in (("user", user), ("address", host)):
            last, count = self._failures.get(key, (now, 0))
            self._failures[key] = (now, 1 if now - last > FORGET_SECONDS else count + 1)
            self._next[key] = max(self._next.get(key, now), now + self._delay(key, now))
        logged, unlogged = self._logged.get(host, (float("-inf"), 0))
        if now - logged < LOG_INTERVAL:
            self._logged[host] = (logged, unlogged + 1)
        else:
            earlier = f" ({unlogged} more failed since the last line)" if unlogged else ""
            log.warning("failed login from %s: %s%s; further failures from it are counted and logged at most once "
                        "every %g s", host, why, earlier, LOG_INTERVAL)
            self._logged[host] = (now, 0)
        if len(self._failures) > _MAX_KEYS:
            self._forget(now)

    def succeeded(self, user, host):
        for key in (("user", user), ("address", host)):
            self._failures.pop(key, None)
            self._next.pop(key, None)

    def _delay(self, key, now):
        last, count = self._failures.get(key, (now, 0))
        if not count or now - last > FORGET_SECONDS:
            return 0.0
        return min(FIRST_DELAY * 2 ** (count - 1), MAX_DELAY)

    def _forget(self, now):
        """Drop what is past FORGET_SECONDS; if that is not enough, the oldest half."""
        for table in (self._failures, self._logged):   # each: key -> (time, count)
            oldest_first = sorted(table, key=lambda key: table[key][0])
            stale = [key for key in oldest_first if now - table[key][0] > FORGET_SECONDS]
            if len(table) - len(stale) > _MAX_KEYS // 2:
                stale = oldest_first[:len(table) // 2]
            for key in stale:
                del table[key]
        self._next = {key: moment for key, moment in self._next.items() if moment > now}
