"""Channels answer every request exactly once: with its result, with the peer's error, when its
deadline passed before sending, and when sending fails in a way nobody foresaw. The pool is a fake
here: a real peer cannot be made to raise an unforeseen error on demand."""
import threading
import time

from kvstore.channels import PeerChannel
from kvstore.errors import NodeUnavailable


class FakePool:
    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.calls = []

    def call(self, method, items, timeout):
        self.calls.append(list(items))
        return self.behaviour(items)


def submit_and_wait(pool, requests, timeout=5.0):
    answers, done = [], threading.Event()

    def callback(index):
        def answer(error, result):
            answers.append((index, error, result))
            if len(answers) == len(requests):
                done.set()
        return answer
    channel = PeerChannel(7, pool, "replica_read_batch")
    try:
        channel.submit_many([(item, 1, deadline, callback(i)) for i, (item, deadline) in enumerate(requests)])
        assert done.wait(timeout), answers
        time.sleep(0.05)   # a second answer, if any, would land now
        return sorted(answers, key=lambda a: a[0])
    finally:
        channel.stop()


def test_a_group_goes_in_one_call_and_each_request_gets_its_result():
    pool = FakePool(lambda items: [item.upper() for item in items])
    later = time.monotonic() + 5
    answers = submit_and_wait(pool, [(b"a", later), (b"b", later), (b"c", later)])
    assert pool.calls == [[b"a", b"b", b"c"]]
    assert answers == [(0, None, b"A"), (1, None, b"B"), (2, None, b"C")]


def test_a_request_past_its_deadline_is_not_sent():
    pool = FakePool(lambda items: list(items))
    answers = submit_and_wait(pool, [(b"late", time.monotonic() - 1), (b"on-time", time.monotonic() + 5)])
    assert pool.calls == [[b"on-time"]]
    assert isinstance(answers[0][1], NodeUnavailable) and answers[0][1].sent is False
    assert answers[1] == (1, None, b"on-time")


def test_an_unforeseen_failure_still_answers_every_request_once():
    def broken(items):
        raise RuntimeError("a bug")
    answers = submit_and_wait(FakePool(broken), [(b"a", time.monotonic() + 5), (b"b", time.monotonic() + 5)])
    assert [index for index, _, _ in answers] == [0, 1]
    assert all(isinstance(error, NodeUnavailable) and "a bug" in str(error) for _, error, _ in answers)
