"""Hints survive a restart, leave only when delivered, expire after the window, and are not retried
on every heartbeat at a target that cannot take them."""
import threading

from kvstore.cell import Cell
from kvstore.clock import Clock
from kvstore.errors import StorageError
from kvstore.handoff import HintDelivery
from kvstore.hints import HintStore


def test_hints_are_durable_and_leave_only_when_delivered(tmp_path):
    store = HintStore(tmp_path, window=3600)
    store.load()
    for i in range(5):
        store.add(2, b"k%d" % i, Cell(b"v", i))
    store.add(3, b"other", Cell(b"v", 9))
    store.close()

    again = HintStore(tmp_path, window=3600)
    assert again.load() == 6
    pending = again.pending(2)
    assert [h.key for h in pending] == [b"k0", b"k1", b"k2", b"k3", b"k4"]
    again.delivered(2, pending[:3])
    again.close()

    third = HintStore(tmp_path, window=3600)
    third.load()
    assert [h.key for h in third.pending(2)] == [b"k3", b"k4"]
    assert third.counts() == {2: 2, 3: 1}


def test_hints_older_than_the_window_are_dropped(tmp_path, caplog):
    now = [1000.0]
    store = HintStore(tmp_path, window=60, clock=Clock(wall=lambda: now[0]))
    store.load()
    store.add(1, b"old", Cell(b"v", 1))
    now[0] += 50
    store.add(1, b"new", Cell(b"v", 2))
    now[0] += 30   # "old" is 80 s old, "new" 30 s
    assert [h.key for h in store.pending(1)] == [b"new"]
    assert "dropping 1 hints for node 1 older than the hint window" in caplog.text
    store.close()
    reloaded = HintStore(tmp_path, window=60, clock=Clock(wall=lambda: now[0]))
    reloaded.load()
    assert [h.key for h in reloaded.pending(1)] == [b"new"]


def test_a_target_that_cannot_take_hints_is_retried_after_a_growing_wait(tmp_path):
    store = HintStore(tmp_path, window=3600)
    store.load()
    store.add(2, b"k", Cell(b"v", 1))
    attempts, now, full = [], [100.0], [True]

    class Target:
        def deliver(self, mutations, timeout):
            attempts.append(now[0])
            if full[0]:
                raise StorageError("node 2: disk full")

    delivery = HintDelivery(store, {2: Target()}, timeout=1, clock=lambda: now[0])

    def alive_and_settle():
        delivery.on_alive(2)
        for thread in threading.enumerate():
            if thread.name == "handoff-2":
                thread.join(5)
    alive_and_settle()
    alive_and_settle()                 # the next heartbeat, at once: no new attempt
    assert attempts == [100.0]
    now[0] = 100.6
    alive_and_settle()                 # after 0.5 s: a retry, which fails again
    now[0] = 101.0
    alive_and_settle()                 # within the doubled wait (1 s): none
    assert attempts == [100.0, 100.6]
    full[0] = False
    now[0] = 101.7
    alive_and_settle()
    assert attempts == [100.0, 100.6, 101.7] and not store.has_pending(2)
