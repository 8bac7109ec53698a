"""TLS for the client port and the peer port: the contexts a node and a tool use, and a local CA.

When to use which (the README's security section says the same):
- On one machine, or a network only the cluster's hosts can reach: neither. Peers
  already prove the cluster secret and clients log in; TLS adds CPU per byte.
- Across hosts on a network others share: `--internode-tls` (peers' traffic,
  mutual: each node shows a certificate signed by the cluster's CA and checks
  the other's) and `--tls` for clients (the tools then take `--tls`, and
  `--ca FILE` when the CA is not the local one). The peer handshake and the login
  still happen, inside TLS.

`./server.sh tls` makes a local CA and one certificate for every node's host
(plus 127.0.0.1 and localhost) in DATA_DIR/tls/ with the openssl command; for
hosts of your own, give each node --tls-cert and --tls-key signed by your CA.
"""
import ipaddress
import ssl
import subprocess
import tempfile
from pathlib import Path

from kvstore.core.errors import ConfigError

TLS_DIR = "tls"
CA_FILE, CA_KEY, NODE_CERT, NODE_KEY = "ca.pem", "ca.key", "node.pem", "node.key"


def tls_dir(cluster_file):
    return Path(cluster_file).resolve().parent / TLS_DIR


def server_context(cert, key, ca=None):
    """What a node's TLS port presents; with `ca`, it also requires the caller's certificate signed by it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(context.load_cert_chain, cert, key)
    if ca is not None:
        _load(context.load_verify_locations, ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(ca, cert=None, key=None):
    """What a caller uses: the node's certificate must be signed by `ca` and name the host called;
    cert and key: the caller's own (a node calling a peer over internode TLS)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(context.load_verify_locations, ca)
    if cert is not None:
        _load(context.load_cert_chain, cert, key)
    return context


def _load(method, *paths):
    try:
        method(*map(str, paths))
    except FileNotFoundError as exc:
        raise ConfigError(f"no TLS file at {exc.filename or paths[0]}: make a local CA and certificates with "
                          "./server.sh tls, or give your own") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"cannot use TLS file(s) {', '.join(map(str, paths))}: {exc}") from None


def create_local_ca(directory, hosts, run=subprocess.run):
    """A CA, and one certificate (with its key) for every host in `hosts` and for 127.0.0.1 and localhost,
    in `directory` (keys mode 0600). Uses the openssl command."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = sorted(set(hosts) | {"127.0.0.1", "localhost"})
    alt = ",".join(f"IP:{h}" if _is_ip(h) else f"DNS:{h}" for h in names)
    ca, ca_key = directory / CA_FILE, directory / CA_KEY
    cert, key = directory / NODE_CERT, directory / NODE_KEY
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    with tempfile.TemporaryDirectory() as work:
        csr, ext = Path(work) / "node.csr", Path(work) / "node.ext"
        ext.write_text(f"subjectAltName={alt}\nbasicConstraints=critical,CA:FALSE\n"
                       "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n"
                       "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
        steps = [["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "3650",
                  "-subj", "/CN=kvstore local CA", "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                 ["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=kvstore node"],
                 ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
                  "-out", cert, "-days", "825", "-extfile", ext]]
        for step in steps:
            try:
                done = run([str(part) for part in step], capture_output=True, text=True)
            except FileNotFoundError:
                raise ConfigError("the openssl command is not installed: install it (apt-get install openssl), "
                                  "or give the nodes certificates of your own") from None
            if done.returncode:
                raise ConfigError(f"openssl failed: {done.stderr.strip()}")
    for private in (ca_key, key):
        private.chmod(0o600)
    (directory / "ca.srl").unlink(missing_ok=True)
    return ca, cert, key


def _is_ip(host):
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
