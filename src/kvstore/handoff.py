"""Hinted handoff: deliver the hints held for a node once it is seen alive.

One delivery runs per target at a time, in a thread of its own. Hints go in
order, in batches, and leave the hint log only after the target acknowledged
the batch; a failed batch stays and is retried at the next sign of life. A
target that answers but cannot take the writes (its disk is full, or a hint is
stamped further ahead of its clock than it believes, or it fails inside: a
poison hint) is retried after a wait
that doubles from 0.5 s up to 30 s, not on every heartbeat.
"""
import logging
import threading
import time

from kvstore.errors import InvalidRequest, NodeFailed, NodeUnavailable, StorageError

log = logging.getLogger(__name__)

BATCH = 100
FIRST_BACKOFF, MAX_BACKOFF = 0.5, 30.0


class HintDelivery:
    def __init__(self, hints, replicas, timeout, clock=time.monotonic):
        """replicas: {node_id: replica with deliver(mutations, timeout)}."""
        self._hints = hints
        self._replicas = replicas
        self._timeout = timeout
        self._clock = clock
        self._running = set()
        self._threads = []   # every delivery thread started; stop() joins them
        self._stopping = threading.Event()
        self._backoff = {}   # node_id -> (retry no sooner than, seconds waited last)
        self._lock = threading.Lock()

    def on_alive(self, node_id):
        """Start delivering to node_id if hints are waiting and no delivery is running."""
        if not self._hints.has_pending(node_id):
            return
        with self._lock:
            if node_id in self._running or self._clock() < self._backoff.get(node_id, (0, 0))[0]:
                return
            if self._stopping.is_set():
                return
            self._running.add(node_id)
            thread = threading.Thread(target=self._deliver, args=(node_id,), name=f"handoff-{node_id}", daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def stop(self, timeout):
        """Start no delivery, and join those under way (each stops after its batch in flight)."""
        self._stopping.set()
        with self._lock:
            threads = list(self._threads)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _deliver(self, node_id):
        delivered = 0
        try:
            while not self._stopping.is_set():
                batch = self._hints.pending(node_id, BATCH)
                if not batch:
                    break
                self._replicas[node_id].deliver([(h.key, h.cell) for h in batch], self._timeout)
                self._hints.delivered(node_id, batch)
                delivered += len(batch)
        except NodeUnavailable as exc:
            log.info("hint delivery to node %d paused after %d: %s", node_id, delivered, exc)
        except StorageError as exc:
            wait = self._back_off(node_id)
            log.info("hint delivery to node %d paused after %d: %s; next try in %.1f s", node_id, delivered, exc, wait)
        except (InvalidRequest, NodeFailed) as exc:   # it answered, refusing or failing: at once again won't help
            wait = self._back_off(node_id)
            log.warning("hint delivery to node %d paused after %d: %s; next try in %.1f s", node_id, delivered, exc,
                        wait)
        except Exception:
            self._back_off(node_id)
            log.exception("hint delivery to node %d failed", node_id)
        else:
            with self._lock:
                self._backoff.pop(node_id, None)
        finally:
            with self._lock:
                self._running.discard(node_id)
        if delivered:
            log.info("delivered %d hints to node %d", delivered, node_id)

    def _back_off(self, node_id):
        with self._lock:
            wait = min(MAX_BACKOFF, self._backoff.get(node_id, (0, FIRST_BACKOFF / 2))[1] * 2)
            self._backoff[node_id] = (self._clock() + wait, wait)
            return wait
