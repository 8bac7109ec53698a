"""Clients log in (kvstore.service.gate, kvstore.storage.users_file): every refusal is a typed error naming its
cause, on a connection that stays open; roles bound what a user may call; the users file changes take effect at the next
login; a node refuses to run open to the network."""
import socket
import subprocess
import time

import pytest

from kvstore.tools import processes
from kvstore.core.errors import AuthenticationFailed, ConfigError, Unauthorized
from kvstore.testing.localcluster import FAST_SETTINGS
from kvstore.testing.ports import free_ports
from kvstore.net.blocking import Connection
from kvstore.core.passwords import check_password, hash_password
from kvstore.storage.users_file import add_user, read_users, remove_user, users_path
from kvstore_rpc import ttypes

QUORUM = ttypes.ConsistencyLevel.QUORUM


@pytest.fixture(scope="module")
def users(shared_cluster):
    path = users_path(shared_cluster.cluster_file)
    add_user(path, "bob", "read", "bob-secret")
    add_user(path, "carol", "readwrite", "carol-secret")
    return shared_cluster


def connect(cluster, i=0, credentials=None):
    node = cluster.nodes[i]
    return Connection(node.host, node.port, 2.0, credentials=credentials)


def test_a_call_before_login_is_refused_by_name_and_the_connection_stays_open(users):
    connection = connect(users)
    try:
        with pytest.raises(ttypes.Unauthorized, match="writes need a login first"):
            connection.call("put", (b"k", b"v", QUORUM, 0), 5)
        with pytest.raises(ttypes.Unauthorized, match="reads need a login first"):
            connection.call("get", (b"k", QUORUM, 0), 5)
        with pytest.raises(ttypes.Unauthorized,
                           match=r"the operator's calls \(dump, compact, repair\) need a login first"):
            connection.call("dump", (None, b"", 0), 5)
        assert len(connection.call("describe_ring", (), 5)) == 4   # what probes ask: open to all
        assert connection.login("carol", "carol-secret") == "readwrite"
        connection.call("put", (b"k", b"v", QUORUM, 0), 5)         # the same connection, now logged in
    finally:
        connection.close()


def test_a_wrong_password_is_refused_by_name_and_a_retry_on_the_same_connection_works(users):
    connection = connect(users)
    try:
        with pytest.raises(AuthenticationFailed, match="login failed for user 'carol'"):
            connection.login("carol", "not-it")
        with pytest.raises(AuthenticationFailed, match="login failed for user 'nobody'"):
            connection.login("nobody", "carol-secret")
    finally:
        connection.close()
    connection = connect(users, credentials=("carol", "carol-secret"))
    connection.close()
    assert "login failed for user 'carol'" in users.log(0)


def test_a_read_only_user_reads_but_its_put_names_the_role_it_needs(users):
    with connect(users, 1, ("carol", "carol-secret")) as writer:
        writer.call("put", (b"shared", b"by carol", QUORUM, 0), 5)
    connection = connect(users, 1, ("bob", "bob-secret"))
    try:
        assert connection.call("get", (b"shared", QUORUM, 0), 5).cell.value == b"by carol"
        assert connection.call("scan", (b"", b"", 10, QUORUM), 5).items
        with pytest.raises(ttypes.Unauthorized) as refused:
            connection.call("put", (b"shared", b"by bob", QUORUM, 0), 5)
        assert refused.value.why == "user 'bob' has role read, and writes need role readwrite"
        for method, args in (("remove", (b"shared", QUORUM)), ("multi_put", ([ttypes.KeyValue(b"a", b"b")], QUORUM, 0)),
                             ("expire", (b"shared", 10, QUORUM, 0))):
            with pytest.raises(ttypes.Unauthorized, match=r"user 'bob' has role read, and writes need "
                                                          r"role readwrite\"\)$"):
                connection.call(method, args, 5)
    finally:
        connection.close()
    assert users.cell_on(1, b"shared").value == b"by carol"


def test_admin_calls_need_the_admin_role(users):
    connection = connect(users, 2, ("carol", "carol-secret"))
    try:
        for method, args in (("dump", (None, b"", 0)), ("compact", ())):
            with pytest.raises(ttypes.Unauthorized, match=r"user 'carol' has role readwrite, and the operator's calls "
                                                          r"\(dump, compact, repair\) need role admin\"\)$"):
                connection.call(method, args, 5)
    finally:
        connection.close()
    assert users.call(2, "compact") >= 0   # the cluster's admin may


def test_the_client_library_raises_our_types(users):
    from kvstore.client.client import Client
    nodes = [(n.host, n.port) for n in users.nodes]
    with Client(nodes, credentials=("bob", "bob-secret")) as kv:
        assert kv.get(b"never-written") is None
        assert kv.role == "read"
        with pytest.raises(Unauthorized, match="user 'bob' has role read, and writes need role readwrite"):
            kv.put(b"x", b"y")
    with Client(nodes, credentials=("bob", "wrong")) as kv:
        with pytest.raises(AuthenticationFailed, match="login failed"):
            kv.get(b"x")
    with Client(nodes) as kv:   # no credentials at all
        with pytest.raises(Unauthorized, match="need a login first"):
            kv.get(b"x")


def test_users_added_and_removed_count_from_the_next_login_without_a_restart(users):
    path = users_path(users.cluster_file)
    with pytest.raises(AuthenticationFailed):
        connect(users, credentials=("dave", "dave-secret"))
    add_user(path, "dave", "readwrite", "dave-secret")
    connection = connect(users, credentials=("dave", "dave-secret"))
    connection.close()
    remove_user(path, "dave")
    with pytest.raises(AuthenticationFailed):
        connect(users, credentials=("dave", "dave-secret"))


def test_a_connection_that_never_logs_in_is_closed_within_seconds_and_one_that_did_is_kept(users):
    node = users.nodes[3]
    idle = socket.create_connection((node.host, node.port), timeout=20)
    working = connect(users, 3, ("carol", "carol-secret"))
    try:
        started = time.monotonic()
        assert idle.recv(1) == b""   # the node closed it
        assert time.monotonic() - started < 8.0
        assert not working.peer_closed()
        working.call("get", (b"k", QUORUM, 0), 5)
    finally:
        idle.close()
        working.close()


def test_passwords_are_stored_only_as_salted_scrypt_hashes(users, tmp_path):
    text = users_path(users.cluster_file).read_text()
    assert "bob-secret" not in text and "scrypt$16384$8$1$" in text
    one, two = hash_password("same"), hash_password("same")
    assert one != two and check_password(one, "same") and not check_password(one, "Same")
    opened = tmp_path / "users"
    add_user(opened, "eve", "read", "eve-secret")
    opened.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_users(opened)


def test_a_short_password_and_a_users_file_without_an_admin_are_refused(tmp_path):
    path = tmp_path / "users"
    add_user(path, "root", "admin", "root-secret")
    with pytest.raises(ConfigError, match="a password is 8 to 1024 characters, not 7: a short one is guessed"):
        add_user(path, "eve", "read", "1234567")
    with pytest.raises(ConfigError, match="removing 'root' would leave .* without an admin"):
        remove_user(path, "root")
    with pytest.raises(ConfigError, match="making 'root' read would leave .* without an admin"):
        add_user(path, "root", "read", "root-secret")
    assert read_users(path)["root"][0] == "admin"
    add_user(path, "ops", "admin", "ops-secret")
    remove_user(path, "root")   # another admin remains
    assert set(read_users(path)) == {"ops"}


def _run_node(cluster_dir, *options):
    """A node of a one-node cluster started with options; (exit code, its log) once it exits (or None)."""
    from kvstore.core.config import NodeConfig, make_cluster, write_cluster_file
    from kvstore.testing.localcluster import prepare_access
    cluster_dir.mkdir(parents=True, exist_ok=True)
    port, peer_port = free_ports(2)
    write_cluster_file(cluster_dir / "cluster.txt", [NodeConfig(0, "127.0.0.1", port, make_cluster(1)[0].token,
                                                                peer_port)])
    prepare_access(cluster_dir / "cluster.txt")
    proc = processes.spawn_node(cluster_dir / "cluster.txt", 0, cluster_dir / "node0", FAST_SETTINGS + options)
    try:
        code = proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        code = None
    return code, (cluster_dir / "node0" / processes.LOG_FILE).read_text()


def test_a_node_refuses_to_listen_beyond_loopback_with_authentication_off(tmp_path):
    code, log = _run_node(tmp_path / "open", "--listen", "0.0.0.0", "--auth", "off")
    assert code == 2, log
    assert "refusing to listen on 0.0.0.0 with --auth off" in log and "--insecure" in log


def test_a_node_with_authentication_on_and_no_users_file_says_how_to_make_one(tmp_path):
    directory = tmp_path / "nousers"
    code, log = _run_node(directory, "--users", str(directory / "missing"))
    assert code == 2, log
    assert "no users file" in log and "./server.sh user add" in log


def test_with_authentication_off_anyone_may_call_and_the_node_warns(tmp_path):
    directory = tmp_path / "off"
    directory.mkdir()
    from kvstore.core.config import NodeConfig, make_cluster, write_cluster_file
    from kvstore.testing.localcluster import prepare_access, wait_for
    from kvstore.net.blocking import ping
    port, peer_port = free_ports(2)
    node = NodeConfig(0, "127.0.0.1", port, make_cluster(1)[0].token, peer_port)
    write_cluster_file(directory / "cluster.txt", [node])
    prepare_access(directory / "cluster.txt")
    proc = processes.spawn_node(directory / "cluster.txt", 0, directory / "node0", FAST_SETTINGS + ("--auth", "off"))
    try:
        wait_for(lambda: ping(node.host, node.port, 0.5) is not None, 20, "the node to start")
        connection = Connection(node.host, node.port, 2.0)
        try:
            connection.call("put", (b"k", b"v", ttypes.ConsistencyLevel.ONE, 0), 5)
            assert connection.call("dump", (b"k", b"", 0), 5).cells[0].cell.value == b"v"
        finally:
            connection.close()
    finally:
        proc.kill()
        proc.wait(10)
    assert "authentication is off" in (directory / "node0" / processes.LOG_FILE).read_text()
