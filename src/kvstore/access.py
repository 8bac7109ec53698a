"""One client connection's door: who it is logged in as, and whether it may make the call it makes.

With authentication on (the default) a new connection may call only login and
describe_ring (what probes and readiness checks ask); every other call answers
Unauthorized naming what it needs, and never closes the connection. Once
logged in, each call is checked against the user's role:

    read       get, ttl, multi_get, scan, get_endpoints
    readwrite  and put, remove, expire, multi_put
    admin      and dump, compact (the inspector's and the operator's calls)

A failed login logs the connection out. With authentication off, every
connection is admin and login accepts anything (Cassandra's AllowAllAuthenticator).
A password is checked off the node's loop (scrypt takes tens of milliseconds),
on the thread of the `checker` executor the node owns.
"""
import asyncio
import logging

from kvstore import errors
from kvstore.users import role_allows
from kvstore_rpc import ttypes

log = logging.getLogger(__name__)

CALL_ROLES = {"get": "read", "ttl": "read", "multi_get": "read", "scan": "read", "get_endpoints": "read",
              "put": "readwrite", "remove": "readwrite", "expire": "readwrite", "multi_put": "readwrite",
              "dump": "admin", "compact": "admin"}
UNAUTHENTICATED_IDLE_SECONDS = 5.0   # a connection that has not logged in by then, between requests, is closed


class Gate:
    def __init__(self, calls, authenticator, idle_timeout, who, checker=None):
        """calls: {method name: the function that serves it} (shared by every connection); authenticator:
        a users.Authenticator, or None when authentication is off; who: the remote address, for the log;
        checker: the executor passwords are checked on."""
        self._calls = calls
        self._authenticator = authenticator
        self._idle_timeout = idle_timeout
        self._who = who
        self._checker = checker
        self.user, self.role = (None, None) if authenticator else ("", "admin")
        self.calls = {name: getattr(self, name) for name in ("login", "describe_ring", *CALL_ROLES)}

    @property
    def idle_timeout(self):
        """Seconds this connection may stay silent between requests: a few until it logs in."""
        return self._idle_timeout if self.role else min(self._idle_timeout, UNAUTHENTICATED_IDLE_SECONDS)

    async def login(self, user, password):
        if self._authenticator is None:
            self.user = user or ""
            return ttypes.LoginResult(self.user, "admin")
        self.user, self.role = None, None
        try:
            role = await asyncio.get_running_loop().run_in_executor(self._checker, self._authenticator.login,
                                                                     user, password)
        except errors.AuthenticationFailed as exc:
            log.warning("%s (from %s)", exc, self._who)
            raise ttypes.AuthenticationFailed(why=f"AuthenticationFailed: {exc}") from None
        self.user, self.role = user, role
        return ttypes.LoginResult(user, role)

    def describe_ring(self):
        return self._calls["describe_ring"]()

    def _check(self, method):
        needed = CALL_ROLES[method]
        if self.role is None:
            raise ttypes.Unauthorized(why=f"Unauthorized: {method} needs a login first: authentication is on (log in "
                                          f"as a user whose role is {needed} or above)")
        if not role_allows(self.role, needed):
            raise ttypes.Unauthorized(why=f"Unauthorized: user {self.user!r} has role {self.role}; "
                                          f"{method} needs {needed}")


def _guarded(method):
    def call(self, *args):
        self._check(method)
        return self._calls[method](*args)
    call.__name__ = method
    return call


for _method in CALL_ROLES:
    setattr(Gate, _method, _guarded(_method))
