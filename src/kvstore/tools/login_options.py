"""How the tools (console, inspector, server.sh, chaos, bench) reach a cluster that checks who calls:
the options they share, and what those options become (credentials to log in with, a TLS context).

    --user NAME   log in as NAME (password: $KVSTORE_PASSWORD, the credentials file, or a prompt)
    --tls         the nodes' client ports speak TLS (nodes started with --tls)
    --ca FILE     the CA that signs them (default: tls/ca.pem beside the cluster file)

With none given, a tool logs in as the operator whose credentials ./server.sh
wrote beside the cluster file (users.find_credentials), as cqlsh reads cqlshrc.
"""
import getpass
import sys

from kvstore.net.tls import CA_FILE, client_context, tls_dir
from kvstore.client.credentials import find_credentials


def add_options(parser):
    parser.add_argument("--user", help="log in as this user (default: $KVSTORE_USER, or the credentials file "
                                       "./server.sh wrote beside the cluster file); the password comes from "
                                       "$KVSTORE_PASSWORD, that file, or a prompt")
    parser.add_argument("--tls", action="store_true", help="connect with TLS (to nodes started with --tls)")
    parser.add_argument("--ca", metavar="FILE", help="the CA for --tls (default: tls/ca.pem beside the cluster file)")


def connect_options(args, cluster_file):
    """{"credentials": ..., "tls": ...} for kvstore.client.Client from the parsed options; ConfigError names
    what is missing."""
    ask = getpass.getpass if sys.stdin.isatty() else None
    return {"credentials": find_credentials(cluster_file, getattr(args, "user", None), ask=ask),
            "tls": tls_context(cluster_file, getattr(args, "ca", None)) if getattr(args, "tls", False) else None}


def tls_context(cluster_file, ca=None):
    return client_context(ca or tls_dir(cluster_file) / CA_FILE)
