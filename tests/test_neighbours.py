"""What another user of the machine can try against a node, and the bound each meets: its log, its files, its
frame memory, its connection slots, and its passwords. Each case as a hostile neighbour would try it, through
real nodes on loopback (other sources are other addresses of 127.0.0.0/8)."""
import re
import socket
import stat
import threading
import time

import pytest

from kvstore.tools import processes
from kvstore.core.errors import AuthenticationFailed, NodeRefused
from kvstore.testing.localcluster import FAST_SETTINGS, Cluster, wait_for
from kvstore.net.blocking import Connection
from kvstore.storage.users_file import add_user, users_path
from kvstore_rpc import ttypes
from rawframes import frame, log_in

QUORUM = ttypes.ConsistencyLevel.QUORUM
LOG_BYTES = 20_000
REQUEST_MEMORY = 32 << 20
SLOTS = ("--max-connections", "40", "--max-unauthenticated-connections", "10", "--admin-reserved-connections", "4",
         "--max-connections-per-user", "8")


@pytest.fixture(scope="module")
def neighbours(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("neighbours"),
                extra_args=FAST_SETTINGS + ("--request-memory", str(REQUEST_MEMORY), "--read-timeout", "4"),
                node_args={0: ("--log-max-bytes", str(LOG_BYTES), "--log-backups", "2"), 1: SLOTS}).start()
    path = users_path(c.cluster_file)
    for n in range(5):
        add_user(path, f"reader{n}", "read", "reader-secret")
    add_user(path, "victim", "readwrite", "victim-secret")
    yield c
    c.close()


def log_size(cluster, i):
    return (cluster.node_dir(i) / processes.LOG_FILE).stat().st_size


def whole_log(cluster, i):
    return (cluster.node_dir(i) / processes.LOG_FILE).read_text()


def logged_in_socket(node, credentials, source="127.0.0.1"):
    sock = socket.create_connection((node.host, node.port), timeout=20, source_address=(source, 0))
    assert log_in(sock, credentials) == "admin"
    return sock


def test_a_huge_user_name_costs_the_log_one_short_line_and_is_never_echoed(neighbours):
    node = neighbours.nodes[2]
    before = log_size(neighbours, 2)
    with Connection(node.host, node.port, 2.0, source="127.0.0.2") as connection:
        for _ in range(3):   # 10 MB each: thrown away as they arrive, before any of it is believed
            with pytest.raises(ttypes.AuthenticationFailed) as refused:
                connection.call("login", ("u" * 10_000_000, "x"), 10)
            assert re.fullmatch(r"a request of 100000\d\d bytes before login: a connection that has not logged in "
                                r"may send at most 4096 bytes \(log in first\)", refused.value.why), refused.value.why
        with pytest.raises(ttypes.AuthenticationFailed) as refused:   # under the frame cap, over the name's
            connection.call("login", ("u" * 3000, "x"), 10)
        assert refused.value.why == ("login failed: a user name is 1 to 64 letters, digits or _.@- (this one has "
                                     "3000 characters)")
        assert connection.login(*neighbours.credentials) == "admin"   # the same connection goes on
    assert log_size(neighbours, 2) - before < 2000
    assert "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuu" not in whole_log(neighbours, 2)


def test_the_log_is_rotated_by_size_whatever_clients_make_it_say(neighbours):
    node, directory = neighbours.nodes[0], neighbours.node_dir(0)
    sources = [f"127.0.{third}.{last}" for third in (1, 5) for last in range(2, 255)]
    for source in sources:   # one malformed login from each of 506 addresses: one WARNING line each
        with Connection(node.host, node.port, 2.0, source=source) as connection:
            with pytest.raises(ttypes.AuthenticationFailed):
                connection.call("login", ("not a name", "x"), 5)
    assert "failed login from 127.0.5.254" in (directory / "node.log").read_text()
    kept = sorted(p.name for p in directory.glob("node.log*"))
    assert kept == ["node.log", "node.log.1", "node.log.2"], kept
    assert all((directory / name).stat().st_size <= LOG_BYTES for name in kept)
    assert all(stat.S_IMODE((directory / name).stat().st_mode) == 0o600 for name in kept)


def test_a_node_keeps_its_files_from_other_users_and_says_when_they_are_not(neighbours):
    directory = neighbours.node_dir(3)
    for path in [directory, *directory.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path} has mode {mode:o}"
    neighbours.stop(3)
    directory.chmod(0o755)
    (directory / "commit.log").chmod(0o644)
    neighbours.restart(3)
    log = whole_log(neighbours, 3)
    assert f"{directory} can be read by other users of this machine ({directory} (mode 755), " in log
    assert f"{directory / 'commit.log'} (mode 644)" in log and f"fix it with chmod -R go-rwx {directory}" in log
    directory.chmod(0o700)
    (directory / "commit.log").chmod(0o600)


def _half_send(node, size, sent, source, login=None):
    """Announce a frame of `size` bytes (after logging in, with login) and send half of it; then hold it."""
    sock = (logged_in_socket(node, login, source) if login else
            socket.create_connection((node.host, node.port), timeout=20, source_address=(source, 0)))
    sock.sendall(size.to_bytes(4, "big") + frame("put", b"k", b"v", QUORUM, 0, 0)[4:20])
    sock.sendall(b"\x00" * (size // 2))
    sent.append(sock)


def test_connections_that_never_logged_in_cannot_take_the_frame_memory_of_those_that_did(neighbours):
    node = neighbours.nodes[2]
    sent = []
    try:
        threads = [threading.Thread(target=_half_send, args=(node, 15 << 20, sent, f"127.0.2.{n + 2}"))
                   for n in range(8)]   # 60 MiB announced, nearly twice the port's frame memory
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(sent) == 8
        with neighbours.client(2) as kv:   # an admin's 12 MiB put is served at once
            started = time.monotonic()
            kv.put(b"big-after-strangers", b"b" * (12 << 20), level="QUORUM")
            assert time.monotonic() - started < 5
        # Logged-in connections may hold it: the request that finds no room is answered, typed, naming the limit.
        for _ in range(2):
            _half_send(node, 15 << 20, sent, "127.0.0.1", login=neighbours.credentials)
        with Connection(node.host, node.port, 2.0, credentials=neighbours.credentials) as connection:
            started = time.monotonic()
            with pytest.raises(ttypes.Unavailable, match=r"this node's memory for large requests being read "
                                                         r"\(--request-memory, 33554432 bytes\) is held by other "
                                                         r"requests: this one \(\d+ bytes\) was not read"):
                connection.call("put", (b"no-room", b"n" * (12 << 20), QUORUM, 0), 10)
            assert time.monotonic() - started < 4   # the read timeout
            connection.call("put", (b"no-room", b"small", QUORUM, 0), 5)   # the same connection goes on
    finally:
        for sock in sent:
            sock.close()


def test_slots_are_kept_for_logged_in_users_and_admins_and_no_user_takes_them_all(neighbours):
    node = neighbours.nodes[1]
    held = []
    try:
        with Connection(node.host, node.port, 2.0, credentials=neighbours.credentials) as admin:
            for _ in range(30):   # connections that never log in fill their pool, and no more
                held.append(socket.create_connection((node.host, node.port), timeout=5,
                                                     source_address=("127.0.3.2", 0)))
            wait_for(lambda: sum(1 for s in held if _closed(s)) >= 20, 10, "refusals")
            assert sum(1 for s in held if not _closed(s)) == 10
            admin.call("put", (b"slots", b"still served", QUORUM, 0), 5)   # a logged-in connection goes on
            with pytest.raises(NodeRefused, match="its limit of 10 connections that have not logged in "
                                                  r"\(--max-unauthenticated-connections\)"):
                Connection(node.host, node.port, 2.0, credentials=neighbours.credentials, source="127.0.3.2")
            # From an address that holds fewer of them, one is closed to make room: the flood locks nobody out.
            with Connection(node.host, node.port, 2.0, credentials=neighbours.credentials) as newcomer:
                assert newcomer.call("get", (b"slots", QUORUM, 0), 5).cell.value == b"still served"
            assert sum(1 for s in held if not _closed(s)) == 9
        for sock in held:
            sock.close()
        held.clear()
        wait_for(lambda: _can_log_in(node, neighbours.credentials), 10, "the strangers' slots to free")
        # One user holds at most 8; users that are not admins at most 40 - 10 - 4 = 26 together.
        for n in range(4):
            for _ in range(8 if n < 3 else 2):
                held.append(Connection(node.host, node.port, 2.0, credentials=(f"reader{n}", "reader-secret")))
        with pytest.raises(AuthenticationFailed, match=r"user 'reader0' already holds 8 connections to this node, "
                                                       r"its limit \(--max-connections-per-user\)"):
            Connection(node.host, node.port, 2.0, credentials=("reader0", "reader-secret"))
        with pytest.raises(AuthenticationFailed, match=r"slots for logged-in connections are taken, of which 4 are "
                                                       r"kept for admins"):
            Connection(node.host, node.port, 2.0, credentials=("reader4", "reader-secret"))
        for _ in range(4):   # an admin still logs in
            held.append(Connection(node.host, node.port, 2.0, credentials=neighbours.credentials))
        held[-1].call("get", (b"slots", QUORUM, 0), 5)
    finally:
        for item in held:
            item.close()


def _closed(sock):
    sock.setblocking(False)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


def _can_log_in(node, credentials):
    try:
        Connection(node.host, node.port, 2.0, credentials=credentials).close()
        return True
    except NodeRefused:
        return False


def test_password_guesses_are_slowed_per_user_and_logged_once_per_interval(neighbours):
    node = neighbours.nodes[3]
    guesses = []
    with Connection(node.host, node.port, 2.0, source="127.0.4.2") as guesser:
        for n in range(6):
            started = time.monotonic()
            with pytest.raises(AuthenticationFailed, match="^login failed for user 'victim': no such user, or the "
                                                           "wrong password$"):
                guesser.login("victim", f"guess-{n}", timeout=15)
            guesses.append(time.monotonic() - started)
    # Each failure doubles the wait before the next guess is checked: 0.1, 0.2, 0.4, 0.8, 1.6 s.
    assert guesses[5] > 1.5 and guesses[4] > 0.7 and sum(guesses) > 3.0, guesses
    # From other addresses and many connections at once, the user's own line still spaces the guesses.
    outcomes, started = [], time.monotonic()

    def guess(n):
        try:
            with Connection(node.host, node.port, 2.0, source=f"127.0.4.{n + 3}", credentials=("victim", f"g{n}"),
                            login_timeout=15):
                outcomes.append("in")
        except AuthenticationFailed as exc:
            outcomes.append(str(exc))
    threads = [threading.Thread(target=guess, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    checked = sum(1 for o in outcomes if o.startswith("login failed for user"))
    assert len(outcomes) == 20 and "in" not in outcomes
    assert checked <= 4 and checked / (time.monotonic() - started) < 1.0, outcomes
    assert all("too many failed logins for this user or from this address" in o for o in outcomes
               if not o.startswith("login failed for user"))
    log = whole_log(neighbours, 3)
    assert log.count("failed login from 127.0.4.2:") == 1   # six failures, one line
    # The user's own password still works once the guessing stops (at most the longest wait).
    wait_for(lambda: _logs_in(node, ("victim", "victim-secret")), 15, "the victim's login")


def _logs_in(node, credentials):
    try:
        Connection(node.host, node.port, 2.0, credentials=credentials, login_timeout=15).close()
        return True
    except AuthenticationFailed:
        return False
