"""Who a client or a tool logs in as, found as cqlsh finds it.

The operator's own credentials (the generated admin password) live in `credentials` beside the cluster file
(0600), in the shape of cqlsh's cqlshrc: the tools and the client library read it when no user is given.
"""
import configparser
import os
import stat
from pathlib import Path

from kvstore.core.config import DEFAULT_CLUSTER_FILE
from kvstore.core.errors import ConfigError

CREDENTIALS_FILE = "credentials"


def credentials_path(cluster_file):
    return Path(cluster_file).resolve().parent / CREDENTIALS_FILE


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
