"""What a cluster's nodes see of each other, for the tools that change it (./server.sh).

After `crash` a person's next write should already find the node marked down
by its peers (so the answer names the hint kept for it), and after `start` or
`restart` its peers should see it up and have handed it the hints they held.
These waits ask the nodes themselves (describe_ring, and the pending hints in a
dump), each under a deadline; none of them is needed for correctness, only so
that what the tools print next is what is true.
"""
import time

from kvstore.core.errors import AuthenticationFailed, NodeFailed, NodeUnavailable
from kvstore.net.blocking import call_once
from kvstore_rpc import ttypes

ASK_TIMEOUT = 1.0
PROBE_KEY = b"\x00"   # dump(key) answers one key's cell and the node's pending hints: cheap


def _ask(node, method, *args, access=None):
    """method's answer from node's client port, or None when it does not give one (down, or the tool cannot
    log in as an admin). access: {credentials, tls}, as the tool reaches the nodes."""
    try:
        return call_once(node, method, args, ASK_TIMEOUT, **(access or {}))
    except (NodeUnavailable, NodeFailed, AuthenticationFailed, ttypes.Unauthorized):
        return None


def sees_up(observer, node_id, access=None):
    """True or False: whether observer sees node_id up; None when observer does not answer."""
    ring = _ask(observer, "describe_ring", access=access)
    return None if ring is None else next((n.up for n in ring if n.node_id == node_id), None)


def hints_held(observer, node_id, access):
    """How many hints observer holds for node_id (0 when it does not answer)."""
    dump = _ask(observer, "dump", PROBE_KEY, b"", 0, access=access)
    return 0 if dump is None else (dump.pending_hints or {}).get(node_id, 0)


def wait_seen(observers, node_id, up, timeout, access=None):
    """Wait until every observer that answers sees node_id up (or down); the observers that did not in time."""
    deadline = time.monotonic() + timeout
    waiting = list(observers)
    while waiting and time.monotonic() < deadline:
        waiting = [o for o in waiting if sees_up(o, node_id, access) not in (up, None)]
        if waiting:
            time.sleep(0.05)
    return waiting


def wait_handed_off(observers, node_id, timeout, access):
    """Wait until no observer holds hints for node_id; {observer id: hints still held} when time ran out."""
    deadline = time.monotonic() + timeout
    while True:
        held = {o.node_id: n for o in observers if (n := hints_held(o, node_id, access))}
        if not held or time.monotonic() >= deadline:
            return held
        time.sleep(0.05)
