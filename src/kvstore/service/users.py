"""Who may log in, with what role: the users file, its password hashes, and the check a node makes.

The users file (`users` beside the cluster file, mode 0600) has one user a line:

    NAME ROLE scrypt$N$r$p$SALT$HASH

ROLE is read, readwrite or admin, each allowing what the one before it does and
more. A password is stored only as a salted scrypt hash (memory-hard: 16 MiB
and tens of milliseconds a guess), never as itself. `./server.sh user add`
writes the file; a node reads it again when it changes, so a user added or
removed counts from the next login.

The operator's own credentials (the generated admin password) live in a
separate file, `credentials` beside the cluster file (0600), in the shape of
cqlsh's cqlshrc: the tools read it when no user is given.
"""
import configparser
import hashlib
import hmac
import os
import re
import secrets
import stat
import threading
from pathlib import Path

from kvstore.bootstrap import DEFAULT_CLUSTER_FILE
from kvstore.core.errors import AuthenticationFailed, ConfigError

ROLES = ("read", "readwrite", "admin")   # each allows everything the ones before it allow
USERS_FILE = "users"
CREDENTIALS_FILE = "credentials"
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_SCRYPT = {"n": 1 << 14, "r": 8, "p": 1}   # 16 MiB a hash; Python's default memory cap is 32 MiB
_MAX_PASSWORD = 1024
MIN_PASSWORD = 8
_CACHE_LIMIT = 1024


def role_allows(role, needed):
    """True when `role` may make a call that needs `needed`."""
    return ROLES.index(role) >= ROLES.index(needed)


def hash_password(password):
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT, dklen=32)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def check_password(stored, password):
    """True when password is the one `stored` (a hash_password string) was made from."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        mine = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                              dklen=len(digest) // 2, maxmem=64 << 20)
    except ValueError:
        return False
    return hmac.compare_digest(mine.hex(), digest)


_DUMMY = hash_password(secrets.token_hex(16))   # checked against for unknown users, so no timing tells them apart


def users_path(cluster_file):
    return Path(cluster_file).resolve().parent / USERS_FILE


def credentials_path(cluster_file):
    return Path(cluster_file).resolve().parent / CREDENTIALS_FILE


def valid_name(name):
    """True when name is a user name's shape (checked before a name a client sent is logged or echoed)."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def check_name(name):
    if not _NAME.fullmatch(name or ""):
        raise ConfigError(f"a user name is 1 to 64 letters, digits or _.@-, not {name!r}")
    return name


def check_role(role):
    if role not in ROLES:
        raise ConfigError(f"a role is one of {', '.join(ROLES)}, not {role!r}")
    return role


def read_users(path):
    """{name: (role, password hash)} from a users file; ConfigError when it is missing, malformed, or
    readable by anyone but its owner."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no users file at {path}: authentication is on, so nobody could log in. Create it "
                          "with ./server.sh user add NAME --role admin (or start the node with --auth off)") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path} can be read by others (mode {stat.S_IMODE(mode):o}): chmod 600 {path}")
    users = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            name, role, stored = line.split()
            users[check_name(name)] = (check_role(role), stored)
        except (ValueError, ConfigError) as exc:
            raise ConfigError(f"{path} line {number}: expected 'NAME ROLE HASH' ({exc})") from None
    return users


def write_users(path, users):
    """Replace the users file with `users` ({name: (role, hash)}), atomically, mode 0600."""
    lines = ["# kvstore users: NAME ROLE scrypt-hash (managed by ./server.sh user add/remove)"]
    lines += [f"{name} {role} {stored}" for name, (role, stored) in sorted(users.items())]
    _write_private(Path(path), "\n".join(lines) + "\n")


def add_user(path, name, role, password):
    """Add a user, or change an existing one's role and password; ConfigError for a password shorter than
    MIN_PASSWORD, or when it would take away the last admin."""
    check_name(name), check_role(role)
    if not MIN_PASSWORD <= len(password or "") <= _MAX_PASSWORD:
        raise ConfigError(f"a password is {MIN_PASSWORD} to {_MAX_PASSWORD} characters, not {len(password or '')}: "
                          "a short one is guessed quickly")
    users = read_users(path) if Path(path).exists() else {}
    before = dict(users)
    users[name] = (role, hash_password(password))
    _check_an_admin_remains(path, before, users, f"making {name!r} {role}")
    write_users(path, users)


def remove_user(path, name):
    """Remove a user; ConfigError when there is none of that name, or it is the last admin."""
    users = read_users(path)
    before = dict(users)
    if users.pop(name, None) is None:
        raise ConfigError(f"there is no user {name!r} in {path}")
    _check_an_admin_remains(path, before, users, f"removing {name!r}")
    write_users(path, users)


def _check_an_admin_remains(path, before, after, change):
    """ConfigError when a change takes away the last admin the users file had."""
    def has_admin(users):
        return any(role == "admin" for role, _ in users.values())
    if has_admin(before) and not has_admin(after):
        raise ConfigError(f"{change} would leave {path} without an admin, and nobody could dump, compact or manage "
                          "the cluster: add another admin first (./server.sh user add NAME --role admin)")


def write_credentials(path, user, password):
    """The operator's credentials, where the tools look for them (0600), as cqlsh's cqlshrc."""
    lines = ["# kvstore: who the tools (console, inspector, server.sh) log in as when no user is given",
             "[authentication]", f"username = {user}", f"password = {password}"]
    _write_private(Path(path), "\n".join(lines) + "\n")


def read_credentials(path):
    """(user, password) from a credentials file, or None when there is none; ConfigError when it is
    malformed or readable by others."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path} can be read by others (mode {stat.S_IMODE(mode):o}): chmod 600 {path}")
    config = configparser.ConfigParser(interpolation=None)
    config.read(path, encoding="utf-8")
    try:
        return config["authentication"]["username"], config["authentication"]["password"]
    except KeyError:
        raise ConfigError(f"{path}: expected an [authentication] section with username and password") from None


def _write_private(path, text):
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


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
            if len(password) > _MAX_PASSWORD or not check_password(stored, password) or role is None:
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


def find_credentials(cluster_file=None, user=None, ask=None, environ=None):
    """(user, password) a tool logs in with, found as cqlsh finds them, or None (no login: enough only for
    a node with --auth off). A user given (--user): its password from $KVSTORE_PASSWORD, else from the
    credentials file if that names the same user, else ask(prompt) when there is a terminal to ask on.
    No user given: $KVSTORE_USER (and $KVSTORE_PASSWORD, or ask), else the credentials file beside the
    cluster file. A password is never taken from a command line."""
    environ = os.environ if environ is None else environ
    user = user or environ.get("KVSTORE_USER")
    saved = read_credentials(credentials_path(cluster_file or DEFAULT_CLUSTER_FILE))
    if user is None:
        return saved
    if environ.get("KVSTORE_PASSWORD") is not None:
        return user, environ["KVSTORE_PASSWORD"]
    if saved is not None and saved[0] == user:
        return saved
    if ask is None:
        raise ConfigError(f"no password for user {user!r}: set $KVSTORE_PASSWORD, or run on a terminal to be asked")
    return user, ask(f"password for {user}: ")
