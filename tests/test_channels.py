"""Channels over a peer link answer every request exactly once (with its result, with the peer's error, when
its deadline passed before sending, when the peer is down, slow or gone, when the channel stops, and when
answering fails in a way nobody foresaw), and coalesce what is submitted while a batch is in flight. The peer
is a real Thrift server on loopback (the threaded RpcServer) with a handler whose behaviour each test sets;
the channel and its link run on the test's loop."""
import asyncio
import threading
import time

import pytest

from kvstore.cluster.batching import PeerChannel
from kvstore.core.config import NodeConfig, Settings
from kvstore.core.errors import ConnectFailed, NodeFailed, NodeUnavailable
from kvstore.testing.ports import free_ports
from kvstore.net.peer_link import PeerLink
from kvstore.testing.bench.thread_server import RpcServer, ProcessorDoor
from kvstore_rpc import Internode, ttypes
from looptools import on_loop


class Replica:
    """replica_read_batch answers each key upper-cased, after `delay` seconds and once `gate` opens."""

    def __init__(self):
        self.calls = []
        self.delay = 0.0
        self.gate = threading.Event()
        self.gate.set()
        self.called = threading.Event()
        self.failing = False   # raise inside, as a bug in the replica would

    def replica_read_batch(self, keys):
        if self.failing:
            raise RuntimeError("a bug in the replica")
        self.calls.append(list(keys))
        self.called.set()
        assert self.gate.wait(10)
        time.sleep(self.delay)
        return [ttypes.ReadResult(ttypes.Cell(key.upper(), 1)) for key in keys]


def serve(port, handler):
    processor = Internode.Processor(handler)
    server = RpcServer("127.0.0.1", port, lambda who: ProcessorDoor(processor, 3600.0), Settings(), Internode)
    server.bind()
    server.start("test-replica")
    return server


@pytest.fixture
def port():
    return free_ports(1)[0]


@pytest.fixture
def replica(port):
    handler = Replica()
    server = serve(port, handler)
    yield handler
    handler.gate.set()
    server.stop()


class Answers:
    def __init__(self):
        self.got = {}
        self.arrived = asyncio.Event()

    def callback(self, name):
        def answer(error, result):
            assert name not in self.got, f"{name} answered twice"
            self.got[name] = (error, result.cell.value if result else None)
            self.arrived.set()
        return answer

    async def wait_for(self, count, timeout=5.0):
        async with asyncio.timeout(timeout):
            while len(self.got) < count:
                self.arrived.clear()
                await self.arrived.wait()
        await asyncio.sleep(0.05)   # a second answer to any of them would land now
        return self.got


def submit(channel, answers, *keys, deadline=None):
    deadline = deadline or time.monotonic() + 5
    channel.submit_many([(key, len(key), deadline, answers.callback(key)) for key in keys])


async def hold_in_flight(channel, answers, replica, key):
    """Send key and keep its batch in flight: the replica has it and does not answer until its gate opens."""
    replica.gate.clear()
    submit(channel, answers, key)
    assert await asyncio.to_thread(replica.called.wait, 5)


def channel_to(port, link_class=PeerLink):
    link = link_class(NodeConfig(7, "127.0.0.1", 0, b"\x01", port), connect_timeout=1.0)
    return PeerChannel(7, link, "replica_read_batch"), link


@on_loop
async def test_a_group_goes_in_one_call_and_each_request_gets_its_result(port, replica):
    (channel, link), answers = channel_to(port), Answers()
    submit(channel, answers, b"a", b"b", b"c")
    assert await answers.wait_for(3) == {b"a": (None, b"A"), b"b": (None, b"B"), b"c": (None, b"C")}
    assert replica.calls == [[b"a", b"b", b"c"]]
    await link.close()


@on_loop
async def test_requests_submitted_while_a_batch_is_in_flight_go_together_in_the_next(port, replica):
    (channel, link), answers = channel_to(port), Answers()
    await hold_in_flight(channel, answers, replica, b"first")
    submit(channel, answers, b"x")
    submit(channel, answers, b"y")
    replica.gate.set()
    assert await answers.wait_for(3) == {b"first": (None, b"FIRST"), b"x": (None, b"X"), b"y": (None, b"Y")}
    assert replica.calls == [[b"first"], [b"x", b"y"]]
    await link.close()


@on_loop
async def test_a_request_past_its_deadline_is_not_sent(port, replica):
    (channel, link), answers = channel_to(port), Answers()
    submit(channel, answers, b"late", deadline=time.monotonic() - 1)
    submit(channel, answers, b"on-time")
    got = await answers.wait_for(2)
    assert isinstance(got[b"late"][0], NodeUnavailable) and got[b"late"][0].sent is False
    assert got[b"on-time"] == (None, b"ON-TIME")
    assert replica.calls == [[b"on-time"]]
    await link.close()


@on_loop
async def test_a_peer_that_does_not_answer_in_time_fails_the_batch_and_a_new_connection_serves_the_next(
        port, replica):
    (channel, link), answers = channel_to(port), Answers()
    replica.delay = 1.5
    started = time.monotonic()
    submit(channel, answers, b"slow", deadline=started + 0.5)
    error, _ = (await answers.wait_for(1))[b"slow"]
    assert isinstance(error, NodeUnavailable) and error.sent and "in time" in str(error)
    assert time.monotonic() - started < 0.5 + 0.5   # at its deadline: a timer, no polling
    slow_connection = link._protocol
    replica.delay = 0.0
    submit(channel, answers, b"next")
    assert (await answers.wait_for(2))[b"next"] == (None, b"NEXT")
    assert slow_connection is None and link._protocol is not None   # the silent one was dropped
    await link.close()


@on_loop
async def test_a_call_fails_at_its_own_deadline_though_an_earlier_call_has_a_later_one(port, replica):
    # The link keeps one timer, for the earliest deadline of the calls out: a call with a nearer deadline than
    # those already out must bring it forward.
    _, link = channel_to(port)
    replica.delay = 1.5
    first = asyncio.ensure_future(link.call("replica_read_batch", [b"patient"], timeout=3.0))
    assert await asyncio.to_thread(replica.called.wait, 5)
    started = time.monotonic()
    with pytest.raises(NodeUnavailable, match="in time"):
        await link.call("replica_read_batch", [b"hurried"], timeout=0.3)
    assert time.monotonic() - started < 0.3 + 0.5   # at its own deadline, not the first call's
    with pytest.raises(NodeUnavailable):   # the silent connection was dropped: the first call failed with it
        await first
    await link.close()


@on_loop
async def test_a_peer_that_is_down_fails_each_batch_and_is_reached_once_it_is_up(port):
    (channel, link), answers = channel_to(port), Answers()
    submit(channel, answers, b"down")
    error, _ = (await answers.wait_for(1))[b"down"]
    assert isinstance(error, ConnectFailed) and error.sent is False
    server = serve(port, Replica())
    try:
        submit(channel, answers, b"up")
        assert (await answers.wait_for(2))[b"up"] == (None, b"UP")
    finally:
        await link.close()
        server.stop()


@on_loop
async def test_stopping_answers_what_is_in_flight_and_what_comes_after(port, replica):
    (channel, link), answers = channel_to(port), Answers()
    await hold_in_flight(channel, answers, replica, b"in-flight")
    submit(channel, answers, b"queued")
    channel.stop()
    await link.close()
    submit(channel, answers, b"after")
    got = await answers.wait_for(3, timeout=2)
    assert got[b"in-flight"][0].sent is True and got[b"queued"][0].sent is False
    assert got[b"after"][0].sent is False and "stopped" in str(got[b"after"][0])


class BuggyLink(PeerLink):
    def answered(self, protocol, payload):
        raise RuntimeError("a bug")


@on_loop
async def test_an_unforeseen_failure_still_answers_every_request_once(port, replica):
    (channel, link), answers = channel_to(port, BuggyLink), Answers()
    submit(channel, answers, b"a", b"b")
    got = await answers.wait_for(2)
    assert all(isinstance(error, NodeUnavailable) and "a bug" in str(error) for error, _ in got.values())
    await link.close()


@on_loop
async def test_a_peer_that_fails_inside_answers_node_failed_and_its_connection_serves_on(port, replica):
    (channel, link), answers = channel_to(port), Answers()
    replica.failing = True
    submit(channel, answers, b"a")
    error, _ = (await answers.wait_for(1))[b"a"]
    assert isinstance(error, NodeFailed) and "failed inside replica_read_batch" in str(error)   # not "down"
    connection = link._protocol
    replica.failing = False
    submit(channel, answers, b"b")
    assert (await answers.wait_for(2))[b"b"] == (None, b"B") and link._protocol is connection
    await link.close()
