"""The cluster: how one node serves a request for the whole ring.

The coordinator and its collaborators (the fan-out to replicas, the write path, read repair, the scan), the
quorum wait of one request, the replicas (this node's store, or a peer behind its batching channels), the
failure detector, and hint hand-off.

May import: core, storage, net.
"""
