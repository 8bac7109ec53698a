"""Hinted handoff: deliver the hints held for a node once it is seen alive.

One delivery runs per target at a time, as a task of the node's. Hints go in
order, in batches, and leave the hint log only after the target acknowledged
the batch; a failed batch stays and is retried at the next sign of life. A
target that answers but cannot take the writes (its disk is full, or a hint is
stamped further ahead of its clock than it believes, or it fails inside: a
poison hint) is retried after a wait
that doubles from 0.5 s up to 30 s, not on every heartbeat.
"""
import logging
import time

from kvstore.core.errors import InvalidRequest, NodeFailed, NodeUnavailable, StorageError

log = logging.getLogger(__name__)

BATCH = 100
FIRST_BACKOFF, MAX_BACKOFF = 0.5, 30.0


class HintDelivery:
    def __init__(self, hints, replicas, timeout, background, clock=time.monotonic):
        """replicas: {node_id: replica with the coroutine deliver(mutations, timeout)}; background: the node's
        kvstore.core.tasks.Background, which runs the deliveries."""
        self._hints = hints
        self._replicas = replicas
        self._timeout = timeout
        self._background = background
        self._clock = clock
        self._running = set()
        self._backoff = {}   # node_id -> (retry no sooner than, seconds waited last)

    def on_alive(self, node_id):
        """Start delivering to node_id if hints are waiting and no delivery is running."""
        if not self._hints.has_pending(node_id) or self._background.stopping:
            return
        if node_id in self._running or self._clock() < self._backoff.get(node_id, (0, 0))[0]:
            return
        self._running.add(node_id)
        self._background.spawn(self._deliver(node_id), f"handoff-{node_id}")

    async def _deliver(self, node_id):
        delivered = 0
        try:
            while not self._background.stopping:
                batch = await self._hints.pending(node_id, BATCH)
                if not batch:
                    break
                await self._replicas[node_id].deliver([(h.key, h.cell) for h in batch], self._timeout)
                await self._hints.delivered(node_id, batch)
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
            self._backoff.pop(node_id, None)
        finally:
            self._running.discard(node_id)
        if delivered:
            log.info("delivered %d hints to node %d", delivered, node_id)

    def _back_off(self, node_id):
        wait = min(MAX_BACKOFF, self._backoff.get(node_id, (0, FIRST_BACKOFF / 2))[1] * 2)
        self._backoff[node_id] = (self._clock() + wait, wait)
        return wait
