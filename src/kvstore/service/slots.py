"""Who may hold the client port's connection slots, so that no user, and nobody who has not logged in, can
take them all.

Of a port's --max-connections slots:
- at most --max-unauthenticated-connections are held by connections that have
  not logged in (they are refused at accept past it, and close after 5 s idle);
- --admin-reserved-connections are kept for admins (PostgreSQL's
  superuser_reserved_connections): a login as another role is refused once only
  they are left;
- one user holds at most --max-connections-per-user logged-in connections.
So a flood of connections that never log in, or a user's own, leaves an admin
room to log in. With authentication off every connection is an admin's and
only the port's total and per-address limits count (kvstore.net.server).
"""
from collections import Counter

from kvstore.core.errors import KVStoreError


class SlotRefused(KVStoreError):
    """A login that would take a slot its user may not have; the message names the limit and its option."""


class ConnectionSlots:
    def __init__(self, settings):
        self._max = settings.max_connections
        self.unauthenticated_limit = settings.max_unauthenticated_connections
        self._reserved = settings.admin_reserved_connections
        self._per_user = settings.max_connections_per_user
        self.logged_in = 0
        self._by_user = Counter()

    def anonymous_full(self, accepted):
        """True when the pool of connections not logged in is full, `accepted` being open (logged in or not)."""
        return accepted - self.logged_in >= self.unauthenticated_limit

    @property
    def anonymous_refusal(self):
        """What a connection refused for want of room in that pool is told."""
        return (f"the node is at its limit of {self.unauthenticated_limit} connections that have not logged in "
                "(--max-unauthenticated-connections); log in promptly, or try again later")

    def log_in(self, user, role):
        """Count one connection as `user`'s; SlotRefused when it may not have one more."""
        if self._by_user[user] >= self._per_user:
            raise SlotRefused(f"user {user!r} already holds {self._by_user[user]} connections to this node, its limit "
                              "(--max-connections-per-user): close some first")
        slots = self._max - self.unauthenticated_limit   # for logged-in connections
        if self.logged_in >= slots - (0 if role == "admin" else self._reserved):
            reserved = "" if role == "admin" else f", of which {self._reserved} are kept for admins"
            raise SlotRefused(f"the node's {slots} slots for logged-in connections are taken{reserved} "
                              "(--max-connections, --admin-reserved-connections): try another node, or again later")
        self.logged_in += 1
        self._by_user[user] += 1

    def log_out(self, user):
        """A connection counted as `user`'s logged out, or closed."""
        self.logged_in -= 1
        self._by_user[user] -= 1
        if not self._by_user[user]:
            del self._by_user[user]
