"""Hinted handoff: deliver the hints held for a node once it is seen alive.

One delivery runs per target at a time, in a thread of its own. Hints go in
order, in batches, and leave the hint log only after the target acknowledged
the batch; a failed batch stays and is retried at the next sign of life.
"""
import logging
import threading

from kvstore.errors import NodeUnavailable, StorageError

log = logging.getLogger(__name__)

BATCH = 100


class HintDelivery:
    def __init__(self, hints, replicas, timeout):
        """replicas: {node_id: replica with deliver(mutations, timeout)}."""
        self._hints = hints
        self._replicas = replicas
        self._timeout = timeout
        self._running = set()
        self._lock = threading.Lock()

    def on_alive(self, node_id):
        """Start delivering to node_id if hints are waiting and no delivery is running."""
        if not self._hints.has_pending(node_id):
            return
        with self._lock:
            if node_id in self._running:
                return
            self._running.add(node_id)
        threading.Thread(target=self._deliver, args=(node_id,), name=f"handoff-{node_id}", daemon=True).start()

    def _deliver(self, node_id):
        delivered = 0
        try:
            while True:
                batch = self._hints.pending(node_id)[:BATCH]
                if not batch:
                    break
                self._replicas[node_id].deliver([(h.key, h.cell) for h in batch], self._timeout)
                self._hints.delivered(node_id, batch)
                delivered += len(batch)
        except (NodeUnavailable, StorageError) as exc:
            log.info("hint delivery to node %d paused after %d: %s", node_id, delivered, exc)
        except Exception:
            log.exception("hint delivery to node %d failed", node_id)
        finally:
            with self._lock:
                self._running.discard(node_id)
        if delivered:
            log.info("delivered %d hints to node %d", delivered, node_id)
