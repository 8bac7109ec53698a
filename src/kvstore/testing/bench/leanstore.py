"""The lean store: the least a put at QUORUM costs in a store of this shape, written in the loop floor's
style, to tell what the store's own design costs from what any store must pay.

Four processes, each one selector loop and one syncer thread (loopfloor.SyncedLog), as the durable loop
floor's replicas. Each is a coordinator and a replica, like a node: a put is decoded, stamped (the
larger of the wall clock and the last stamp plus one), and sent as a `replica_write_batch` of one
Mutation to the key's remote replicas (the store's ring: its tokens, owner and the next two); the
coordinator's own copy, when it holds the key, is judged and appended locally. A replica judges the
cell against the one it holds (last write wins), writes the store's own record (`encode_mutation`
framed by `encode_record`: the checksummed commit-log record) with one pwrite, hands it to its
syncer, and once an fdatasync covers it answers and merges it into memory. The coordinator answers
the client a WriteResult once two replicas have acknowledged.

What the store does beside that, and this leaves out: logins, TLS, a key's and value's checks, the
clock judged against the peers', deadlines, hints, batching many writes into one call, failure
detection, the disk worker's queue in place of the syncer's hand-off, and every error path. A
benchmark tool, not a store: it trusts its clients and peers and stops when killed.
"""
import bisect
import selectors
import socket
import time

from thrift.Thrift import TMessageType

from kvstore.testing.bench.loopfloor import Link, SyncedLog, frame, parse, serve_forever
from kvstore.core.cell import Cell, encode_mutation, newer
from kvstore.core.config import even_tokens
from kvstore.storage.records import encode_record
from kvstore_rpc import Internode, KVStore, ttypes

_ARGS = {"put": KVStore.put_args, "describe_ring": KVStore.describe_ring_args,
         "replica_write_batch": Internode.replica_write_batch_args}
_RESULTS = {"replica_write_batch": Internode.replica_write_batch_result}
_RING_ANSWER = KVStore.describe_ring_result(success=[])   # what readiness is asked with
NODES, REPLICAS, NEEDED = 4, 3, 2


class LeanNode:
    def __init__(self, loop, node_id, peers):
        """peers: [(host, port)] of every node, this one's included, in node id order."""
        self._id, self._peers_at, self._links = node_id, peers, {}
        self._loop = loop
        self._tokens = even_tokens(len(peers))   # as the benchmark's clusters (kvstore.testing.localcluster)
        self._log = SyncedLog(loop)
        self._cells, self._last = {}, 0
        self._pending, self._next = {}, 0   # our sequence id -> [client link, its seqid, stamp, acknowledged]

    def on_frame(self, link, payload):
        name, seqid, args = parse(payload, _ARGS)
        if name == "put":
            self._put(link, seqid, args)
        elif name == "replica_write_batch":
            self._replica_write(link, seqid, args.mutations)
        else:
            link.send(frame(name, TMessageType.REPLY, seqid, _RING_ANSWER))

    def _put(self, link, seqid, args):
        self._last = stamp = max(time.time_ns() // 1000, self._last + 1)
        key, cell = args.key, Cell(args.value, stamp, 0)
        self._next += 1
        self._pending[self._next] = [link, seqid, stamp, []]
        owner = bisect.bisect_left(self._tokens, key) % NODES   # the store's ring: the first token >= the key
        replicas = [(owner + k) % NODES for k in range(REPLICAS)]
        mutation = [ttypes.Mutation(key, ttypes.Cell(args.value, stamp, 0))]
        call = frame("replica_write_batch", TMessageType.CALL, self._next,
                     Internode.replica_write_batch_args(mutations=mutation))
        for node_id in replicas:   # the remote replicas first (the local one first measured slower)
            if node_id != self._id:
                self._link(node_id).send(call)
        if self._id in replicas:
            request = self._next
            self._apply(key, cell, lambda: self._acknowledged(request, self._id),
                        lambda held: self._acknowledged(request, self._id))

    def _link(self, node_id):
        link = self._links.get(node_id)
        if link is None:
            sock = socket.create_connection(self._peers_at[node_id])
            link = self._links[node_id] = Link(self._loop, sock,
                                               lambda _, payload, n=node_id: self._answered(n, payload))
        return link

    def _answered(self, node_id, payload):
        _, seqid, _ = parse(payload, _RESULTS)
        self._acknowledged(seqid, node_id)

    def _acknowledged(self, request, node_id):
        pending = self._pending.get(request)
        if pending is None:
            return
        client, seqid, stamp, acknowledged = pending
        acknowledged.append(node_id)
        if len(acknowledged) == NEEDED:
            client.send(frame("put", TMessageType.REPLY, seqid,
                              KVStore.put_result(success=ttypes.WriteResult(stamp, list(acknowledged), []))))
        if len(acknowledged) == REPLICAS:
            del self._pending[request]

    def _replica_write(self, link, seqid, mutations):
        (mutation,) = mutations
        cell = Cell(mutation.cell.value, mutation.cell.timestamp, mutation.cell.expires_at or 0)

        def answer(held):
            return frame("replica_write_batch", TMessageType.REPLY, seqid,
                         Internode.replica_write_batch_result(success=[held]))
        applied = answer(0)   # framed before the disk is waited for, as the floor's replicas do
        self._apply(mutation.key, cell, lambda: link.send(applied), lambda held: link.send(answer(held)))

    def _apply(self, key, cell, durable, not_newer):
        """Judge the cell against the one held: a newer one is logged, durable() called once an fdatasync covers
        it, then merged; otherwise not_newer(0 for the same cell, else the newer one's timestamp), at once."""
        held = self._cells.get(key)
        if held is not None and newer(held, cell) is held:
            not_newer(0 if held == cell else held.timestamp)
            return

        def merge():
            durable()
            if newer(self._cells.get(key), cell) is cell:
                self._cells[key] = cell
        self._log.append(encode_record(encode_mutation(key, cell)), merge)


def serve_lean(node_id, host, peers):
    """Serve node node_id of a lean store whose nodes listen at peers [(host, port)]; runs until killed."""
    loop = selectors.DefaultSelector()
    serve_forever(loop, host, peers[node_id][1], LeanNode(loop, node_id, peers).on_frame)
