"""Users, roles and passwords as values: a name's shape, the roles in order, and a password's scrypt hash.

Pure: no file is read here (the users file is kvstore.storage.users_file, the node's check of a login
kvstore.service.authenticator). A password is stored only as a salted scrypt hash (memory-hard: 16 MiB and
tens of milliseconds a guess), never as itself.
"""
import hashlib
import hmac
import re
import secrets

from kvstore.core.errors import ConfigError

ROLES = ("read", "readwrite", "admin")   # each allows everything the ones before it allow
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_SCRYPT = {"n": 1 << 14, "r": 8, "p": 1}   # 16 MiB a hash; Python's default memory cap is 32 MiB


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


def check_password_length(password):
    if not MIN_PASSWORD <= len(password or "") <= MAX_PASSWORD:
        raise ConfigError(f"a password is {MIN_PASSWORD} to {MAX_PASSWORD} characters, not {len(password or '')}: "
                          "a short one is guessed quickly")
