"""What ./server.sh does about who may reach a cluster: its secret, its users, its TLS files.

A new cluster gets, beside its cluster file (each 0600):
- cluster.secret: what the nodes prove to each other (kvstore.net.peerauth);
- users: who may log in (kvstore.storage.users_file), at first one user, admin, with a
  generated password;
- credentials: that password, for the operator and the tools on this machine
  (console, inspector, server.sh itself), as cqlsh reads cqlshrc.
`./server.sh user add|list|remove` manages the users; `./server.sh tls` makes a
local CA and a certificate for the nodes (kvstore.net.tls).
"""
import getpass
import secrets
import sys
from pathlib import Path

from kvstore.tools import login_options
from kvstore.core.errors import ConfigError
from kvstore.net.peerauth import create_secret, secret_path
from kvstore.net.tls import create_local_ca, tls_dir
from kvstore.client.credentials import credentials_path, find_credentials, read_credentials
from kvstore.core.passwords import ROLES
from kvstore.storage.users_file import add_user, read_users, remove_user, users_path, write_private

ADMIN = "admin"


def ensure(cluster_file):
    """Give a cluster what it lacks of its secret, its users file and the operator's credentials, saying so."""
    secret = secret_path(cluster_file)
    if not secret.exists():
        create_secret(secret)
        print(f"created {secret}: the secret the nodes prove to each other (mode 0600; across hosts, copy it to "
              "every node)")
    users, saved = users_path(cluster_file), credentials_path(cluster_file)
    if not users.exists():
        create_admin(cluster_file)
        print(f"created {users}: authentication is on; log in as {ADMIN}, whose generated password is in {saved} "
              "(mode 0600)\nthe console, the inspector and server.sh read it from there; add users with "
              "./server.sh user add NAME --role read|readwrite|admin")


def create_admin(cluster_file):
    """A users file holding one admin with a generated password, and the operator's credentials file naming
    them, beside the cluster file; returns the credentials (user, password)."""
    password = secrets.token_urlsafe(18)
    add_user(users_path(cluster_file), ADMIN, ADMIN, password)
    write_credentials(credentials_path(cluster_file), ADMIN, password)
    return ADMIN, password


def access(cluster_file, node_options):
    """How server.sh itself calls its nodes: {credentials, tls} (TLS when the nodes run with --tls)."""
    try:
        credentials = find_credentials(cluster_file)
    except ConfigError:
        credentials = None
    tls = login_options.tls_context(cluster_file, _option(node_options, "--ca")) if "--tls" in node_options else None
    return {"credentials": credentials, "tls": tls}


def _option(options, name):
    for i, word in enumerate(options):
        if word == name and i + 1 < len(options):
            return options[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def add_parsers(sub):
    user = sub.add_parser("user", help="add, list or remove the users who may log in")
    actions = user.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add a user (or change one's role and password); asks for the "
                                         "password, or reads one line from standard input when it is not a terminal")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default="readwrite", help="default: readwrite")
    add.add_argument("--save", action="store_true",
                     help="also save the user and password in the credentials file, for the tools to log in with "
                          "(done anyway when that file already names this user)")
    actions.add_parser("list", help="each user and their role")
    actions.add_parser("remove", help="remove a user").add_argument("name")
    sub.add_parser("tls", help="make a local CA and a certificate for the nodes in DATA_DIR/tls (openssl)")


def cmd_user(cluster, args):
    path = users_path(cluster.cluster_file)
    if args.action == "list":
        users = read_users(path)
        print(f"{'user':<20}role")
        for name, (role, _) in sorted(users.items()):
            print(f"{name:<20}{role}")
        return 0
    saved_path = credentials_path(cluster.cluster_file)
    saved = read_credentials(saved_path)
    if args.action == "remove":
        remove_user(path, args.name)
        print(f"removed user {args.name!r}; connections logged in as them keep their login until they close")
        if saved and saved[0] == args.name:
            print(f"note: {saved_path} logs the tools in as {args.name!r}, who is gone: they will fail to log in. "
                  "Give them another user with --user NAME, or save one there with ./server.sh user add NAME "
                  "--role admin --save")
        return 0
    password = _read_password(args.name)
    add_user(path, args.name, args.role, password)
    print(f"user {args.name!r} has role {args.role}; the nodes read {path} again at the next login")
    if args.save or (saved and saved[0] == args.name):
        write_credentials(saved_path, args.name, password)
        print(f"updated {saved_path}: the tools log in as {args.name!r} with the new password")
    return 0


def _read_password(name):
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(f"password for {name}: ")
    if getpass.getpass("again: ") != first:
        raise ConfigError("the two passwords differ; nothing changed")
    return first


def cmd_tls(cluster, args):
    ca, cert, key = create_local_ca(tls_dir(cluster.cluster_file), [n.host for n in cluster.nodes()])
    hosts = sorted({n.host for n in cluster.nodes()} | {"127.0.0.1", "localhost"})
    print(f"created {ca} (the CA), {cert} and {key} (every node's certificate and key, for "
          f"{', '.join(hosts)}).\n"
          "Every node must use them at once: stop the cluster (python3 terminate_servers.py), start it with "
          "./server.sh start -- --tls --internode-tls, and connect with python3 src/client.py --tls")
    return 0


def write_credentials(path, user, password):
    """The operator's credentials, where the tools look for them (0600), as cqlsh's cqlshrc."""
    lines = ["# kvstore: who the tools (console, inspector, server.sh) log in as when no user is given",
             "[authentication]", f"username = {user}", f"password = {password}"]
    write_private(Path(path), "\n".join(lines) + "\n")
