"""The users file: who may log in, with what role.

`users` beside the cluster file, mode 0600, one user a line:

    NAME ROLE scrypt$N$r$p$SALT$HASH

ROLE is read, readwrite or admin, each allowing what the one before it does and more (kvstore.core.passwords).
`./server.sh user add` writes the file; a node reads it again when it changes (kvstore.service.authenticator),
so a user added or removed counts from the next login. The last admin is never removed or demoted.
"""
import os
import stat
from pathlib import Path

from kvstore.core.errors import ConfigError
from kvstore.core.passwords import check_name, check_password_length, check_role, hash_password

USERS_FILE = "users"


def users_path(cluster_file):
    return Path(cluster_file).resolve().parent / USERS_FILE


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
    write_private(Path(path), "\n".join(lines) + "\n")


def add_user(path, name, role, password):
    """Add a user, or change an existing one's role and password; ConfigError for a password shorter than
    MIN_PASSWORD, or when it would take away the last admin."""
    check_name(name), check_role(role), check_password_length(password)
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


def write_private(path, text):
    """Replace path with text, atomically and durably, mode 0600 from the first byte."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


