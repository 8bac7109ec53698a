"""Who a node lets in and how its ports are wrapped, from its options: the users file or no authentication
(refused on a non-loopback address without --insecure), TLS on the client port, mutual TLS on the peer port."""
import ipaddress
import logging
from dataclasses import dataclass

from kvstore.core.errors import ConfigError
from kvstore.net.tls import CA_FILE, NODE_CERT, NODE_KEY, client_context, server_context, tls_dir
from kvstore.service.authenticator import Authenticator
from kvstore.storage.users_file import users_path

log = logging.getLogger("kvstore.node")


@dataclass(frozen=True)
class Security:
    """Who the node lets in, and how its ports are wrapped."""
    authenticator: object = None   # a users.Authenticator; None: authentication off
    client_tls: object = None      # ssl.SSLContext of the client port, or None
    peer_tls: object = None        # (server context, client context) for the peer port and calls to peers
    max_connections_per_host: int = 0


def security_from(args, listen_host):
    """The node's Security from its options; ConfigError names what is wrong."""
    if args.auth == "off":
        if not _is_loopback(listen_host) and not args.insecure:
            raise ConfigError(f"refusing to listen on {listen_host} with --auth off: anyone who reaches it could "
                              "read and write everything. Turn authentication on, or add --insecure")
        log.warning("authentication is off (--auth off): anyone who reaches the client port may read, write and "
                    "dump everything")
        authenticator = None
    else:
        authenticator = Authenticator(args.users or users_path(args.cluster))
    files = tls_dir(args.cluster)
    cert, key, ca = args.tls_cert or files / NODE_CERT, args.tls_key or files / NODE_KEY, args.ca or files / CA_FILE
    client_tls = server_context(cert, key) if args.tls else None
    peer_tls = (server_context(cert, key, ca), client_context(ca, cert, key)) if args.internode_tls else None
    return Security(authenticator, client_tls, peer_tls, args.max_connections_per_host)


def _is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
