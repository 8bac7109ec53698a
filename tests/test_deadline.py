"""A connection's deadline: the idle one is counted from the last request, however many came since it was armed
(it is not re-armed for each), a request in progress holds it off, and any other deadline replaces it."""
import asyncio

from kvstore.net.idle_timer import ConnectionDeadline

from looptools import on_loop


async def _pace(loop, times, every, action):
    """action() `times` times, `every` seconds apart: a connection finishing requests."""
    for _ in range(times):
        action()
        done = loop.create_future()
        loop.call_later(every, done.set_result, None)
        await done


@on_loop
async def test_the_idle_deadline_counts_from_the_last_request():
    loop = asyncio.get_running_loop()
    deadline, fired = ConnectionDeadline(loop), asyncio.Event()
    await _pace(loop, 8, 0.05, lambda: deadline.idle(0.2, fired.set))   # 0.4 s of requests, 0.05 s apart
    assert not fired.is_set()   # its first timer was due at 0.2 s: it waited again for the rest
    last = loop.time()
    deadline.idle(0.2, fired.set)
    await asyncio.wait_for(fired.wait(), 5)
    assert loop.time() - last >= 0.19


@on_loop
async def test_a_request_in_progress_holds_the_idle_deadline_off():
    loop = asyncio.get_running_loop()
    deadline, fired = ConnectionDeadline(loop), asyncio.Event()
    deadline.idle(0.05, fired.set)
    deadline.busy()
    await _pace(loop, 1, 0.3, lambda: None)
    assert not fired.is_set()
    deadline.idle(0.05, fired.set)   # the request ended
    await asyncio.wait_for(fired.wait(), 5)


@on_loop
async def test_a_shorter_idle_deadline_replaces_a_longer_one():
    # A client that logs out gets the short unauthenticated idle timeout at once.
    loop = asyncio.get_running_loop()
    deadline, fired = ConnectionDeadline(loop), asyncio.Event()
    deadline.idle(60, fired.set)
    deadline.idle(0.05, fired.set)
    await asyncio.wait_for(fired.wait(), 5)


@on_loop
async def test_another_deadline_replaces_the_idle_one():
    loop = asyncio.get_running_loop()
    deadline, idle, stalled = ConnectionDeadline(loop), asyncio.Event(), asyncio.Event()
    deadline.idle(0.05, idle.set)
    deadline.set(0.1, stalled.set)   # a frame began to arrive
    await asyncio.wait_for(stalled.wait(), 5)
    assert not idle.is_set()
    stalled.clear()
    deadline.set(0.05, stalled.set)
    deadline.busy()   # the frame arrived whole: its deadline is gone
    await _pace(loop, 1, 0.2, lambda: None)
    assert not stalled.is_set()
