"""Free ports on loopback for test clusters and benchmarks, below Linux's ephemeral range (32768 up), so that
no outgoing connection takes one before its server binds it, or while a stopped node is down."""
import random
import socket

from kvstore.core.config import PEER_PORT_OFFSET
from kvstore.core.errors import KVStoreError


class NoFreePorts(KVStoreError, AssertionError):
    """Not enough free ports in the range asked."""


_HANDED_OUT = set()   # the ports free_ports gave in this process: a server may not have bound one yet


def free_ports(count, low=20000, high=32000):
    """count ports free on loopback, below Linux's ephemeral range (32768 up), so that no outgoing connection
    takes one before its server binds it, or while a stopped node is down; none given twice in this process
    (until most of the range has been)."""
    rng, sockets = random.Random(), []
    if len(_HANDED_OUT) > (high - low) // 2:
        _HANDED_OUT.clear()
    try:
        for _ in range(50 * count):
            if len(sockets) == count:
                break
            port = rng.randrange(low, high)
            if port in _HANDED_OUT:
                continue
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            sockets.append(s)
            _HANDED_OUT.add(port)
        if len(sockets) < count:
            raise NoFreePorts(f"no {count} free ports between {low} and {high}")
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def consecutive_free_ports(count, low=20000, high=32000):
    """The first of `count` consecutive ports free on loopback, with the `count` from it + 100 free too
    (as ./server.sh gives node i the client port base + i and the peer port base + 100 + i). Below
    Linux's ephemeral range (32768 up), so that no outgoing connection takes a stopped node's port."""
    rng = random.Random()
    for _ in range(50):
        base = rng.randrange(low, high - count - PEER_PORT_OFFSET)
        try:
            for port in [*range(base, base + count), *range(base + PEER_PORT_OFFSET, base + PEER_PORT_OFFSET + count)]:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise NoFreePorts(f"no {count} consecutive free ports")
