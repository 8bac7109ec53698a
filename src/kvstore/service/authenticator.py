"""A node's check of a login against the users file (kvstore.storage.users_file)."""
import hashlib
import secrets
import threading
from pathlib import Path

from kvstore.core.errors import AuthenticationFailed, ConfigError
from kvstore.core.passwords import MAX_PASSWORD, check_password, hash_password
from kvstore.storage.users_file import read_users

_CACHE_LIMIT = 1024
_DUMMY = hash_password(secrets.token_hex(16))   # checked against for unknown users, so no timing tells them apart


class Authenticator:
    """A node's check of a login against the users file (read again whenever it changes).

    One password is checked at a time: a flood of logins costs the node one core and 16 MiB, and makes
    logins wait, never the calls of connections already logged in. A login that succeeded is remembered
    (by a hash of the password, until the file changes), so clients that reconnect do not pay again."""

    def __init__(self, path):
        self._path = Path(path)
        self._lock = threading.Lock()
        self._stamp = None
        self._users = read_users(self._path)   # ConfigError at start when it is missing or open to others
        self._stamp = self._file_stamp()
        self._verified = {}   # (name, sha256 of the password) -> role

    def login(self, name, password):
        """The user's role; AuthenticationFailed when the name or the password is wrong."""
        name, password = name or "", password or ""
        remembered = (name, hashlib.sha256(password.encode()).digest())
        with self._lock:
            self._reload_if_changed()
            role = self._verified.get(remembered)
            if role is not None:
                return role
            role, stored = self._users.get(name, (None, _DUMMY))
            if len(password) > MAX_PASSWORD or not check_password(stored, password) or role is None:
                raise AuthenticationFailed(f"login failed for user {name[:64]!r}: no such user, or the wrong password")
            if len(self._verified) >= _CACHE_LIMIT:
                self._verified.clear()
            self._verified[remembered] = role
            return role

    def _file_stamp(self):
        try:
            st = self._path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _reload_if_changed(self):
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        try:
            self._users = read_users(self._path)
        except ConfigError:
            self._users = {}   # removed or opened to others: nobody logs in until it is fixed
        self._stamp, self._verified = stamp, {}
