"""One client connection's door: who it is logged in as, and whether it may make the call it makes.

With authentication on (the default) a new connection may call only login and
describe_ring (what probes and readiness checks ask); every other call answers
Unauthorized naming what it needs, and never closes the connection. Once
logged in, each call is checked against the user's role:

    read       get, ttl, multi_get, scan, get_endpoints
    readwrite  and put, remove, expire, multi_put
    admin      and dump, compact, repair, the ring (the inspector's and the operator's calls)

A failed login logs the connection out; failures are slowed down and logged as
kvstore.service.logins says, and a login takes a connection slot as kvstore.service.slots says.
Before login a request may be at most UNAUTHENTICATED_FRAME_BYTES (a login's
size): larger ones are thrown away as they arrive and answered Unauthorized
(kvstore.net.connection). With authentication off, every
connection is admin and login accepts anything (Cassandra's AllowAllAuthenticator).
A password is checked off the node's loop (scrypt takes tens of milliseconds),
on the thread of the `checker` executor the node owns.
"""
import asyncio
import logging

from kvstore.core import errors
from kvstore.service.logins import LoginThrottle, LoginThrottled
from kvstore.service.slots import SlotRefused
from kvstore.core.passwords import role_allows, valid_name
from kvstore_rpc import ttypes

log = logging.getLogger(__name__)

CALL_ROLES = {"get": "read", "ttl": "read", "multi_get": "read", "scan": "read", "get_endpoints": "read",
              "put": "readwrite", "remove": "readwrite", "expire": "readwrite", "multi_put": "readwrite",
              "dump": "admin", "compact": "admin", "repair": "admin", "repair_status": "admin",
              "byte_sample": "admin", "ring_state": "admin", "ring_apply": "admin", "ring_stream": "admin",
              "cleanup": "admin"}
# What each role's calls are, in words that hold for the console's commands and the IDL's methods alike.
CALLS_OF = {"read": "reads", "readwrite": "writes", "admin": "the operator's calls (dump, compact, repair)"}
UNAUTHENTICATED_IDLE_SECONDS = 5.0   # a connection that has not logged in by then, between requests, is closed
UNAUTHENTICATED_FRAME_BYTES = 4096   # the largest request before login: a login (name <= 64, password <= 1024)


class Gate:
    def __init__(self, calls, authenticator, idle_timeout, who, checker=None, throttle=None, slots=None):
        """calls: {method name: the function that serves it} (shared by every connection); authenticator:
        a users.Authenticator, or None when authentication is off; who: the remote HOST:PORT, for the log;
        checker: the executor passwords are checked on; throttle: the port's logins.LoginThrottle; slots: the
        port's slots.ConnectionSlots (None: only the port's own limits)."""
        self._calls = calls
        self._authenticator = authenticator
        self._idle_timeout = idle_timeout
        self._who = who
        self._host = who.rpartition(":")[0]
        self._checker = checker
        self._throttle = throttle or LoginThrottle()
        self._slots = slots
        self._closed = False
        self.user, self.role = (None, None) if authenticator else ("", "admin")
        self.calls = {name: getattr(self, name) for name in ("login", "describe_ring", *CALL_ROLES)}

    @property
    def idle_timeout(self):
        """Seconds this connection may stay silent between requests: a few until it logs in."""
        return self._idle_timeout if self.role else min(self._idle_timeout, UNAUTHENTICATED_IDLE_SECONDS)

    @property
    def logged_in(self):
        return self.role is not None

    @property
    def frame_limit(self):
        """The largest request this connection may send now (None: the port's own limit)."""
        return None if self.role else UNAUTHENTICATED_FRAME_BYTES

    def closed(self):
        """The connection has closed: its slot is free."""
        self._closed = True
        self._log_out()

    async def login(self, user, password):
        if self._authenticator is None:
            self.user = user or ""
            return ttypes.LoginResult(self.user, "admin")
        self._log_out()
        if not valid_name(user):   # checked before it is logged, echoed or looked up
            self._throttle.failed("", self._host, f"a user name of {len(user or '')} characters that is not one")
            raise ttypes.AuthenticationFailed(why=f"login failed: a user name is 1 to 64 letters, digits or _.@- "
                                                  f"(this one has {len(user or '')} characters)")
        try:
            wait = self._throttle.admit(user, self._host)
        except LoginThrottled as exc:
            raise ttypes.AuthenticationFailed(why=f"login failed: {exc}") from None
        if wait:
            await asyncio.sleep(wait)
        try:
            role = await asyncio.get_running_loop().run_in_executor(self._checker, self._authenticator.login,
                                                                     user, password)
        except errors.AuthenticationFailed as exc:
            self._throttle.failed(user, self._host, str(exc))
            raise ttypes.AuthenticationFailed(why=str(exc)) from None
        self._throttle.succeeded(user, self._host)
        if self._closed:
            raise ttypes.AuthenticationFailed(why="the connection closed during its login")
        if self._slots is not None:
            try:
                self._slots.log_in(user, role)
            except SlotRefused as exc:
                log.warning("refusing the login of %r from %s: %s", user, self._who, exc)
                raise ttypes.AuthenticationFailed(why=str(exc)) from None
        self.user, self.role = user, role
        return ttypes.LoginResult(user, role)

    def _log_out(self):
        if self.role is not None and self._authenticator is not None:
            if self._slots is not None:
                self._slots.log_out(self.user)
            self.user, self.role = None, None

    def describe_ring(self):
        return self._calls["describe_ring"]()

    def _check(self, method):
        needed = CALL_ROLES[method]
        if self.role is None:
            raise ttypes.Unauthorized(why=f"{CALLS_OF[needed]} need a login first: authentication is on (log in as a "
                                          f"user whose role is {needed} or above)")
        if not role_allows(self.role, needed):
            raise ttypes.Unauthorized(why=f"user {self.user!r} has role {self.role}, and {CALLS_OF[needed]} need "
                                          f"role {needed}")


def _guarded(method):
    def call(self, *args):
        self._check(method)
        return self._calls[method](*args)
    call.__name__ = method
    return call


for _method in CALL_ROLES:
    setattr(Gate, _method, _guarded(_method))
